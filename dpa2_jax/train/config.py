"""A training run's configuration, in DeePMD-kit's input JSON schema.

One schema for both front ends: a DeePMD-kit ``input.json`` (``model``, ``learning_rate``, ``loss``,
``training``) and our ``configs/*.py`` files, whose ``get_config()`` returns the same sections as an
``ml_collections.ConfigDict`` (so every field can be overridden on the command line). Option
names and defaults are DeePMD-kit 3.2.0's; unknown keys are errors naming the key and the nearest
valid one. System paths are relative to the input file.

Multi-task inputs (DeePMD-kit's ``doc/train/multi-task-training.md``) become one model with a
head per task:

    model.shared_dict   named parts: a type map (a list) and the descriptor (a dict)
    model.model_dict    per task: {"type_map": KEY or list, "descriptor": KEY, "fitting_net": {}}
    loss_dict           per task: a loss section (default: the ``ener`` loss's defaults)
    training.data_dict  per task: {"training_data": ..., "validation_data": ...}
    training.model_prob per task: a weight, normalised; default proportional to the number of
                        training systems (DeePMD-kit's ``resolve_model_prob``)

Every task shares the one descriptor; the tasks' type maps are merged into one by element
symbol, in order of first appearance. A single-task input is one task named ``default``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ml_collections.config_flags import config_path

from dpa2_jax.data.stats import bias_prior_vector
from dpa2_jax.errors import ConfigError
from dpa2_jax.io.deepmd_config import model_config
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.options import check_field_types, dataclass_kwargs, nearest_hint
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
class TaskConfig:
    """One task: the head it trains, its loss, its data and its sampling probability."""

    name: str
    loss: EnergyLossConfig
    training_data: DataConfig
    validation_data: DataConfig | None = None
    prob: float = 1.0


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The ``training`` section (its data sections live in the tasks)."""

    numb_steps: int
    seed: int | None = None
    disp_file: str = "lcurve.out"
    disp_freq: int = 1000
    save_freq: int = 1000
    max_ckpt_keep: int = 5
    gradient_max_norm: float = 0.0
    freeze_descriptor: bool = False  # fine-tuning: train the heads only
    descriptor_lr_scale: float = 1.0  # fine-tuning: the descriptor's learning rate / the head's

    def __post_init__(self):
        check_field_types(self, "training")
        for name, least in (("numb_steps", 0), ("disp_freq", 1), ("save_freq", 1),
                            ("max_ckpt_keep", 1)):  # fmt: skip
            if getattr(self, name) < least:
                raise ConfigError(f"training.{name}: expected an integer >= {least}, got "
                                  f"{getattr(self, name)}")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs, parsed and checked. ``tasks``: one per head, in the
    model's head order."""

    model: ModelConfig
    learning_rate: LearningRateConfig
    training: TrainingConfig
    tasks: tuple[TaskConfig, ...]
    data_stat_nbatch: int = 10
    bias_prior: dict | None = None  # {element: eV}: model.bias_prior (data.stats.follow_prior)
    source: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)

    @property
    def multi_task(self) -> bool:
        return len(self.tasks) > 1

    def task(self, name: str) -> TaskConfig:
        return {t.name: t for t in self.tasks}[name]


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
    sections = {"model", "learning_rate", "loss", "loss_dict", "training"}
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
    bias_prior = model.pop("bias_prior", None)
    for key in ("data_stat_protect", "_comment"):
        model.pop(key, None)
    training = dict(d["training"])
    if "stop_batch" in training:  # DeePMD's older name
        training.setdefault("numb_steps", training.pop("stop_batch"))
    _check_training_keys(training)
    if "numb_steps" not in training:
        raise ConfigError("training.numb_steps: missing (the number of optimizer steps)")
    if "model_dict" in model:
        cfg, tasks = _multi_task(model, d, training, base_dir)
    else:
        for key in ("data_dict", "model_prob"):
            if key in training:
                raise ConfigError(f"training.{key}: only for multi-task inputs (model.model_dict)")
        if "loss_dict" in d:
            raise ConfigError("loss_dict: only for multi-task inputs (model.model_dict)")
        cfg = model_config(model)
        tasks = (_task(cfg.head_names[0], d.get("loss", {}), training, base_dir, "training"),)
    if bias_prior is not None:  # checked now: an element outside the type map is named
        try:
            bias_prior_vector(cfg.type_map, bias_prior)
        except ConfigError as err:
            raise ConfigError(f"model.{err}") from err
    if model_descriptor_frozen(d["model"]):  # DeePMD's descriptor "trainable": false
        training.setdefault("freeze_descriptor", True)
    for key in _DATA_KEYS:
        training.pop(key, None)
    return RunConfig(
        model=cfg,
        learning_rate=LearningRateConfig(
            **_fields(LearningRateConfig, d.get("learning_rate", {}), "learning_rate")
        ),  # fmt: skip
        training=TrainingConfig(**_fields(TrainingConfig, training, "training")),
        tasks=tasks,
        data_stat_nbatch=data_stat_nbatch,
        bias_prior=bias_prior,
        source=d,
    )


_DATA_KEYS = {"training_data", "validation_data", "data_dict", "model_prob"}


def _check_training_keys(training: dict) -> None:
    """ConfigError for the first unknown key of the training section, with the nearest one
    (before any missing key is reported: a misspelling is the likelier cause)."""
    known = {f.name for f in dataclasses.fields(TrainingConfig)} | _DATA_KEYS
    unknown = sorted(set(training) - known - _IGNORED)
    if unknown:
        raise ConfigError(f"training: unknown key {unknown[0]!r}{nearest_hint(unknown[0], known)}")


def model_descriptor_frozen(model: dict) -> bool:
    """True when the model section's (shared) descriptor says ``"trainable": false``."""
    descriptors = [model.get("descriptor")]
    descriptors += [v for v in model.get("shared_dict", {}).values() if isinstance(v, dict)]
    return any(isinstance(x, dict) and x.get("trainable") is False for x in descriptors)


def _task(name: str, loss: dict, data: dict, base_dir: str, where: str, prob: float = 1.0):
    loss = dict(loss)
    if loss.pop("type", "ener") != "ener":
        raise ConfigError(f"{where} loss.type={loss.get('type')!r}: only 'ener' is supported")
    training_data = _data(data.get("training_data"), f"{where}.training_data", base_dir)
    if training_data is None:
        raise ConfigError(f"{where}.training_data: missing (systems to train on)")
    return TaskConfig(
        name=name,
        loss=EnergyLossConfig(**_fields(EnergyLossConfig, loss, f"{where} loss")),
        training_data=training_data,
        validation_data=_data(data.get("validation_data"), f"{where}.validation_data", base_dir),
        prob=prob,
    )


def _multi_task(model: dict, d: dict, training: dict, base_dir: str):
    """(ModelConfig with a head per task, tasks) from DeePMD's multi-task sections."""
    shared = dict(model.pop("shared_dict", {}))
    tasks_in = model.pop("model_dict")
    extra = sorted(set(model) - {"type_map"})
    if extra:
        raise ConfigError(f"model.{extra[0]}: a multi-task model section holds only shared_dict "
                          "and model_dict")  # fmt: skip
    if not isinstance(tasks_in, dict) or not tasks_in:
        raise ConfigError("model.model_dict: give at least one task")
    fittings, type_map = _task_models(tasks_in, shared)
    cfg = _merged_model(fittings, type_map)
    return cfg, _multi_task_data(d, training, list(tasks_in), base_dir)


def _shared(shared: dict, value, what: str, task: str):
    """``value``, or the shared_dict part it names ("KEY" or "KEY:LEVEL", level 0 only)."""
    if not isinstance(value, str):
        return value
    key = value.split(":")[0]  # "name:level": DeePMD's shared level; 0 is all we share
    if key not in shared:
        raise ConfigError(f"model.model_dict.{task}.{what}: {value!r} is not a key of "
                          f"shared_dict {sorted(shared)}")  # fmt: skip
    if ":" in value and value.split(":")[1] not in ("", "0"):
        raise ConfigError(f"model.model_dict.{task}.{what}: {value!r}: only shared "
                          "level 0 (share everything) is supported")  # fmt: skip
    return shared[key]


def _task_models(tasks_in: dict, shared: dict) -> tuple[dict[str, dict], list[str]]:
    """Each task's model section with the shared descriptor filled in (type map left out), and
    the merged type map (element symbols in order of first appearance)."""
    type_map: list[str] = []
    descriptors, fittings = [], {}
    for name, sub in tasks_in.items():
        sub = dict(sub)
        sub.pop("data_stat_nbatch", None)
        sub.pop("data_stat_protect", None)
        if isinstance(sub.get("fitting_net"), str):
            raise ConfigError(f"model.model_dict.{name}.fitting_net: {sub['fitting_net']!r}: "
                              "fitting nets shared between tasks are not supported yet; give "
                              "each task its own fitting_net")  # fmt: skip
        tm = _shared(shared, sub.get("type_map"), "type_map", name)
        if not tm:
            raise ConfigError(f"model.model_dict.{name}.type_map: missing")
        type_map += [e for e in tm if e not in type_map]
        desc = _shared(shared, sub.get("descriptor"), "descriptor", name)
        if not isinstance(sub.get("descriptor"), str):
            raise ConfigError(f"model.model_dict.{name}.descriptor: name the shared descriptor "
                              "(a key of shared_dict); every task shares one")  # fmt: skip
        descriptors.append(sub["descriptor"].split(":")[0])
        fittings[name] = {**sub, "type_map": None, "descriptor": desc}
    if len(set(descriptors)) > 1:
        raise ConfigError(f"model.model_dict: the tasks name different descriptors "
                          f"{sorted(set(descriptors))}; every task shares one")  # fmt: skip
    return fittings, type_map


def _merged_model(fittings: dict[str, dict], type_map: list[str]) -> ModelConfig:
    """One ModelConfig on the merged type map with a head per task."""
    heads = []
    cfg = None
    for name, sub in fittings.items():
        try:
            one = model_config({**sub, "type_map": type_map}, head=name)
        except ConfigError as err:
            raise ConfigError(f"model.model_dict.{name}: {err}") from err
        if cfg is not None and (one.atom_exclude_types, one.pair_exclude_types) != (
            cfg.atom_exclude_types,
            cfg.pair_exclude_types,
        ):
            raise ConfigError(f"model.model_dict.{name}: atom/pair_exclude_types differ between "
                              "tasks")  # fmt: skip
        cfg = cfg or one
        heads += list(one.heads)
    return dataclasses.replace(cfg, heads=tuple(heads))


def _multi_task_data(d: dict, training: dict, names: list[str], base_dir: str):
    """The tasks (loss, data, probability) of loss_dict, training.data_dict and model_prob."""
    losses = d.get("loss_dict", {})
    data_dict = training.get("data_dict")
    if not isinstance(data_dict, dict):
        raise ConfigError("training.data_dict: missing (per task: training_data and "
                          "validation_data)")  # fmt: skip
    for what, given in (("loss_dict", losses), ("training.data_dict", data_dict),
                        ("training.model_prob", training.get("model_prob") or {})):  # fmt: skip
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ConfigError(f"{what}: {unknown[0]!r} is not a task of model.model_dict "
                              f"{names}{nearest_hint(unknown[0], names)}")  # fmt: skip
    missing = [n for n in names if n not in data_dict]
    if missing:
        raise ConfigError(f"training.data_dict: task {missing[0]!r} has no data (give its "
                          "training_data)")  # fmt: skip
    tasks = [
        _task(n, losses.get(n, {}), data_dict[n], base_dir, f"training.data_dict.{n}")
        for n in names
    ]
    probs = task_probabilities(training.get("model_prob"), tasks)
    return tuple(dataclasses.replace(t, prob=p) for t, p in zip(tasks, probs))


def task_probabilities(given: dict | None, tasks) -> list[float]:
    """Normalised task probabilities: ``model_prob`` (every task named) or, when absent, in
    proportion to each task's number of training systems (DeePMD-kit's rule)."""
    if given:
        missing = [t.name for t in tasks if t.name not in given]
        if missing:
            raise ConfigError(f"training.model_prob: no probability for task {missing[0]!r}")
        weights = [given[t.name] for t in tasks]
        if any(not isinstance(w, int | float) or w < 0 for w in weights):
            raise ConfigError(f"training.model_prob: {given}: weights must be numbers >= 0")
    else:
        weights = [len(t.training_data.systems) for t in tasks]
    total = float(sum(weights))
    if not total > 0:
        raise ConfigError(f"training.model_prob: {given}: the weights must sum to a positive "
                          "number")  # fmt: skip
    return [w / total for w in weights]


def read_input(path: str | os.PathLike, overrides: Sequence[str] = ()) -> RunConfig:
    """RunConfig from a DeePMD ``input.json`` or a ``configs/*.py`` file (``get_config()``),
    with ``--config.a.b=value`` overrides applied (``.py`` and ``.json`` alike)."""
    path = os.fspath(path)
    d = config_dict(path, overrides)
    try:
        return run_config(d, os.path.dirname(os.path.abspath(path)))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def config_dict(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict:
    """The plain dict of an input ``.json`` or a ``configs/*.py`` file (its ``get_config()``),
    with ``KEY.PATH=VALUE`` overrides applied; not yet checked."""
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
    return d


def _load_py_config(path: str):
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


def config_overrides(command: str, extra: list[str]) -> list[str]:
    """``KEY.PATH=VALUE`` of each ``--config.KEY.PATH=VALUE`` command-line item."""
    overrides = []
    for item in extra:
        if not item.startswith("--config."):
            raise ConfigError(f"{command}: unknown option {item!r} (overrides look like "
                              "--config.training.numb_steps=2000)")  # fmt: skip
        overrides.append(item[len("--config.") :])
    return overrides


def _override(d: dict, item: str) -> None:
    """Applies ``PATH=VALUE`` to ``d``: PATH as ml_collections reads a config path (``a.b.c``,
    ``a.b["c-d"]``, ``a.b[0]``), VALUE parsed as JSON, else kept as a string. A missing last
    key is added (``run_config`` names unknown keys, with a suggestion); a missing section is
    an error here."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected --config.KEY.PATH=VALUE")
    key, text = item.split("=", 1)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    try:
        parts = config_path.split(key)
        config_path.set_value(key, d, value, accept_new_attributes=True)
    except ValueError as err:
        raise ConfigError(f"override {item!r}: {key!r} is not a config path (a.b.c, "
                          'a.b["c-d"], a.b[0])') from err  # fmt: skip
    except (KeyError, IndexError, TypeError) as err:
        missing = err.args[0] if err.args else None
        if missing in parts[:-1]:
            where = ".".join(str(p) for p in parts[: parts.index(missing) + 1])
            raise ConfigError(f"override {item!r}: no section {where!r} in the config") from err
        raise ConfigError(f"override {item!r}: {missing}") from err
