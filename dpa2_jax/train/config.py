"""A training run's configuration, in DeePMD-kit's input JSON schema.

One schema for both front ends: a DeePMD-kit ``input.json`` (``model``, ``learning_rate``, ``loss``,
``training``) and our ``configs/*.py`` files, whose ``get_config()`` returns the same sections as an
``ml_collections.ConfigDict`` (so every field can be overridden on the command line). Option
names and defaults are DeePMD-kit 3.2.0's; unknown keys are errors naming the key and the nearest
valid one. System paths are relative to the input file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from dpa2_jax.errors import ConfigError
from dpa2_jax.io.deepmd_config import model_config
from dpa2_jax.io.deepmd_layers import dataclass_kwargs, nearest_hint
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.train.loss import EnergyLossConfig
from dpa2_jax.train.schedules import LearningRateConfig

_IGNORED = {"_comment", "save_ckpt", "disp_training", "time_training", "profiling",
            "profiling_file", "tensorboard", "tensorboard_log_dir", "tensorboard_freq",
            "enable_profiler", "opt_type", "stat_file"}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """``training_data`` / ``validation_data``: systems (paths) and how to batch them."""

    systems: tuple[str, ...]
    batch_size: Any = "auto"
    sys_probs: tuple[float, ...] | None = None
    auto_prob: str = "prob_sys_size"
    numb_btch: int = 1  # validation batches per display (validation_data only)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The ``training`` section."""

    training_data: DataConfig
    numb_steps: int
    validation_data: DataConfig | None = None
    seed: int | None = None
    disp_file: str = "lcurve.out"
    disp_freq: int = 1000
    save_freq: int = 1000
    max_ckpt_keep: int = 5
    gradient_max_norm: float = 0.0


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs, parsed and checked."""

    model: ModelConfig
    learning_rate: LearningRateConfig
    loss: EnergyLossConfig
    training: TrainingConfig
    data_stat_nbatch: int = 10
    source: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)


def _fields(cls, section: dict, what: str) -> dict:
    """Keyword arguments of ``cls`` from ``section``, DeePMD's no-op keys dropped."""
    return dataclass_kwargs(cls, {k: v for k, v in section.items() if k not in _IGNORED}, what)


def _data(section: dict | None, what: str, base_dir: str) -> DataConfig | None:
    if section is None:
        return None
    section = dict(section)
    systems = section.get("systems")
    if isinstance(systems, str):
        systems = [systems]
    if not systems:
        raise ConfigError(f"{what}.systems: give at least one system path")
    section["systems"] = [os.path.normpath(os.path.join(base_dir, s)) for s in systems]
    if isinstance(section.get("batch_size"), list):
        section["batch_size"] = tuple(section["batch_size"])
    return DataConfig(**_fields(DataConfig, section, what))


def run_config(d: dict, base_dir: str = ".") -> RunConfig:
    """RunConfig from DeePMD's input sections (a dict); paths relative to ``base_dir``."""
    d = dict(d)
    sections = {"model", "learning_rate", "loss", "training"}
    unknown = sorted(set(d) - sections - {"_comment"})
    if unknown:
        raise ConfigError(
            f"input: unknown section {unknown[0]!r}{nearest_hint(unknown[0], sections)}"
        )
    for name in ("model", "training"):
        if name not in d:
            raise ConfigError(f"input: the {name!r} section is missing")
    model = dict(d["model"])
    data_stat_nbatch = int(model.pop("data_stat_nbatch", 10))
    for key in ("data_stat_protect", "_comment"):
        model.pop(key, None)
    loss = dict(d.get("loss", {}))
    if loss.pop("type", "ener") != "ener":
        raise ConfigError(f"loss.type={d['loss']['type']!r}: only 'ener' is supported")
    training = dict(d["training"])
    if "stop_batch" in training:  # DeePMD's older name
        training.setdefault("numb_steps", training.pop("stop_batch"))
    if "numb_steps" not in training:
        raise ConfigError("training.numb_steps: missing (the number of optimizer steps)")
    training["training_data"] = _data(training.get("training_data"), "training_data", base_dir)
    if training["training_data"] is None:
        raise ConfigError("training.training_data: missing (systems to train on)")
    training["validation_data"] = _data(
        training.get("validation_data"), "validation_data", base_dir
    )
    return RunConfig(
        model=model_config(model),
        learning_rate=LearningRateConfig(
            **_fields(LearningRateConfig, d.get("learning_rate", {}), "learning_rate")
        ),  # fmt: skip
        loss=EnergyLossConfig(**_fields(EnergyLossConfig, loss, "loss")),
        training=TrainingConfig(**_fields(TrainingConfig, training, "training")),
        data_stat_nbatch=data_stat_nbatch,
        source=d,
    )


def read_input(path: str | os.PathLike, overrides: list[str] = ()) -> RunConfig:
    """RunConfig from a DeePMD ``input.json`` or a ``configs/*.py`` file (``get_config()``),
    with ``--config.a.b=value`` overrides applied (``.py`` and ``.json`` alike)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such input file")
    if path.endswith(".json"):
        try:
            with open(path) as f:
                d = json.load(f)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON: {err}") from err
    elif path.endswith(".py"):
        d = _load_py_config(path).to_dict()
    else:
        raise ConfigError(f"{path}: expected a DeePMD input .json or a configs/*.py file")
    for item in overrides:
        _override(d, item)
    try:
        return run_config(d, os.path.dirname(os.path.abspath(path)))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def _load_py_config(path: str):
    import importlib.util
    import sys

    # configs/*.py import their siblings as `configs.NAME`: put the folder above on the path.
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    sys.path.insert(0, root)
    try:
        spec = importlib.util.spec_from_file_location("dpa2_jax_user_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(root)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config()")
    return module.get_config()


def _override(d: dict, item: str) -> None:
    """Applies ``a.b.c=value`` (value parsed as JSON, else kept as a string) to ``d``."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected --config.KEY.PATH=VALUE")
    key, text = item.split("=", 1)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    *parents, last = key.split(".")
    node = d
    for k, part in enumerate(parents):
        if not isinstance(node.get(part), dict):
            where = ".".join(parents[: k + 1])
            raise ConfigError(f"override {item!r}: no section {where!r} in the config")
        node = node[part]
    node[last] = value  # unknown keys are caught by run_config, with a suggestion
