"""A distillation run's configuration: one ``configs/*.py`` whose ``get_config()`` has the
sections ``teacher``, ``explore``, ``label``, ``student`` and ``report``
(``configs/distill_water.py`` documents every key). Paths are relative to the config file.

    teacher   model (a .dp file, model directory or training workdir), head
    explore   structures, temperatures (K), ensemble, thermostat, timestep (fs), steps, every,
              tau_t (fs), seed, perturb {copies, strain, displacement (A)},
              committee {models, head, lo, hi (eV/A)}
    label     validation_fraction, seed
    student   DeePMD training input sections (model, learning_rate, loss, training); the
              pipeline fills in training.training_data / validation_data
    report    dft_systems, speed_structure, repeats
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

from dpa2_jax.errors import ConfigError
from dpa2_jax.options import dataclass_kwargs, nearest_hint
from dpa2_jax.train.config import config_dict


@dataclasses.dataclass(frozen=True)
class PerturbConfig:
    """Random copies of each sampled frame: cell deformed by I + eps (eps symmetric, entries
    uniform in [-strain, strain]) and atoms displaced uniformly in [-displacement, displacement]
    Angstrom per component."""

    copies: int = 0
    strain: float = 0.03
    displacement: float = 0.1  # Angstrom


@dataclasses.dataclass(frozen=True)
class CommitteeConfig:
    """Selection by model deviation: with two or more models, keep the frames whose
    max_devi_f (eV/A) lies in [lo, hi)."""

    models: tuple[str, ...] = ()
    head: str | None = None
    lo: float = 0.0
    hi: float = math.inf


@dataclasses.dataclass(frozen=True)
class ExploreConfig:
    """Teacher MD (``md/simulate.py``): one run per structure and temperature, a frame kept
    every ``every`` steps (step 0, the starting structure, is not kept)."""

    structures: tuple[str, ...]
    temperatures: tuple[float, ...] = (300.0,)  # K
    ensemble: str = "nvt"
    thermostat: str = "langevin"
    timestep: float = 0.5  # fs
    steps: int = 1000
    every: int = 10
    tau_t: float = 100.0  # fs
    seed: int = 0
    perturb: PerturbConfig = PerturbConfig()
    committee: CommitteeConfig = CommitteeConfig()


@dataclasses.dataclass(frozen=True)
class LabelConfig:
    """Held-out share of each explored system's frames (at least one frame when positive)."""

    validation_fraction: float = 0.2
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """Labelled systems to test against (DFT), the structure timed for the speedup (default:
    the first explored structure) and the number of timed calls (median)."""

    dft_systems: tuple[str, ...] = ()
    speed_structure: str | None = None
    repeats: int = 5


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    teacher: str
    head: str | None
    explore: ExploreConfig
    label: LabelConfig
    student: dict  # DeePMD training input sections, system paths filled in by the pipeline
    report: ReportConfig
    source: str = ""  # the config file, for messages


def _path(base: str, p: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(p)))


def _section(d: dict, name: str, cls, where: str) -> dict:
    section = dict(d.get(name) or {})
    return dataclass_kwargs(cls, section, f"{where}: {name}")


def distill_config(d: dict, base_dir: str, where: str = "config") -> DistillConfig:
    """DistillConfig from a dict of the five sections; paths relative to ``base_dir``."""
    sections = {"teacher", "explore", "label", "student", "report"}
    unknown = sorted(set(d) - sections)
    if unknown:
        raise ConfigError(f"{where}: unknown section {unknown[0]!r}"
                          f"{nearest_hint(unknown[0], sections)}")  # fmt: skip
    for name in ("teacher", "explore", "student"):
        if not d.get(name):
            raise ConfigError(f"{where}: the {name!r} section is missing")
    teacher = dict(d["teacher"])
    if "model" not in teacher:
        raise ConfigError(f"{where}: teacher.model is missing (a .dp file, model directory "
                          "or training workdir)")  # fmt: skip
    bad = sorted(set(teacher) - {"model", "head"})
    if bad:
        raise ConfigError(f"{where}: teacher: unknown key {bad[0]!r} (expected model, head)")
    ex = _section(d, "explore", ExploreConfig, where)
    if not ex.get("structures"):
        raise ConfigError(f"{where}: explore.structures: give at least one structure")
    ex["structures"] = tuple(_path(base_dir, s) for s in ex["structures"])
    ex["temperatures"] = tuple(float(t) for t in ex.get("temperatures", (300.0,)))
    ex["perturb"] = PerturbConfig(**_section(ex, "perturb", PerturbConfig, f"{where}: explore"))
    committee = _section(ex, "committee", CommitteeConfig, f"{where}: explore")
    committee["models"] = tuple(_path(base_dir, m) for m in committee.get("models", ()))
    committee["head"] = committee.get("head") or None
    ex["committee"] = CommitteeConfig(**committee)
    explore = ExploreConfig(**ex)
    if explore.steps < 1 or explore.every < 1 or explore.every > explore.steps:
        raise ConfigError(f"{where}: explore.steps {explore.steps} and explore.every "
                          f"{explore.every}: need 1 <= every <= steps")  # fmt: skip
    if len(explore.committee.models) == 1:
        raise ConfigError(f"{where}: explore.committee.models: give two or more models (or "
                          f"none), got {list(explore.committee.models)}")  # fmt: skip
    label = LabelConfig(**_section(d, "label", LabelConfig, where))
    if not 0.0 <= label.validation_fraction < 1.0:
        raise ConfigError(f"{where}: label.validation_fraction {label.validation_fraction}: "
                          "expected 0 <= value < 1")  # fmt: skip
    rep = _section(d, "report", ReportConfig, where)
    rep["dft_systems"] = tuple(_path(base_dir, s) for s in rep.get("dft_systems", ()))
    if rep.get("speed_structure"):
        rep["speed_structure"] = _path(base_dir, rep["speed_structure"])
    student = dict(d["student"])
    for key in ("model", "training"):
        if key not in student:
            raise ConfigError(f"{where}: student.{key} is missing (DeePMD training sections)")
    return DistillConfig(
        teacher=_path(base_dir, teacher["model"]), head=teacher.get("head") or None,
        explore=explore, label=label, student=student, report=ReportConfig(**rep),
        source=where,
    )  # fmt: skip


def read_distill_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> DistillConfig:
    """DistillConfig of a ``configs/*.py`` file (``get_config()``), with ``KEY.PATH=VALUE``
    overrides applied (``--config.explore.steps=2000`` on the command line)."""
    path = os.fspath(path)
    if not os.path.isfile(path) or not path.endswith(".py"):
        raise ConfigError(f"{path}: no such config file (expected a configs/*.py file)")
    d = config_dict(path, overrides)
    return distill_config(d, os.path.dirname(os.path.abspath(path)), where=path)


def student_input(cfg: DistillConfig, train: list[str], valid: list[str]) -> dict[str, Any]:
    """The student's training input: ``cfg.student`` with the labelled systems filled in
    (absolute paths; batch sizes from student.training's ``batch_size``, default 1)."""
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg.student.items()}
    training = d["training"]
    batch = training.pop("batch_size", 1)
    training["training_data"] = {"systems": list(train), "batch_size": batch}
    if valid:
        training["validation_data"] = {"systems": list(valid), "batch_size": batch,
                                       "numb_btch": 1}  # fmt: skip
    return d
