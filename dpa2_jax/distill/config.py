"""A distillation run's configuration: one ``configs/*.py`` whose ``get_config()`` has the
sections ``teacher``, ``check``, ``explore``, ``label``, ``student`` and ``report``
(``configs/distill_water.py`` documents every key). Paths are relative to the config file.

    teacher   model (a .dp file, model directory or training workdir), head
    check     steps, timestep (fs), every, window (steps), seed, max_drift (eV/atom),
              max_force (eV/A), max_temperature (K), max_temperature_factor
    explore   structures, temperatures (K), ensemble, thermostat, timestep (fs), steps, every,
              tau_t (fs), seed, perturb {copies, strain, displacement (A)},
              committee {models, head, lo, hi (eV/A)}
    label     validation_fraction, seed
    student   DeePMD training input sections (model, learning_rate, loss, training); the
              pipeline fills in training.training_data / validation_data
    report    dft_systems, speed_structure, repeats,
              rdf {structure, temperature (K), timestep (fs), equilibration, steps, every,
                   thermostat, tau_t (fs), seed, pairs, r_max (A), bin_width (A), compare (A),
                   noise_seeds}
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
class CheckConfig:
    """The teacher's check before exploring (``check.py``): ``steps`` of NVE (0: no check) from
    each exploration structure with initial velocities at the highest exploration temperature,
    observed every ``every`` steps; the drift compares the mean total energy of the first and
    last ``window`` steps. The limits on largest force and temperature also select
    exploration's frames (``limits_mask``)."""

    steps: int = 1000
    timestep: float = 0.5  # fs
    every: int = 10
    window: int = 100  # steps
    seed: int = 0
    max_drift: float = 1e-3  # eV/atom
    max_force: float = 12.0  # eV/A, largest |F_i|
    max_temperature: float = 1e9  # K
    max_temperature_factor: float = 1.5  # times the target temperature

    def temperature_limit(self, target: float) -> float:
        """Highest temperature allowed (K) in a run whose target is ``target`` K."""
        return min(self.max_temperature, self.max_temperature_factor * target)


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
class RdfConfig:
    """The report's physics check (``report.py``): NVT MD of teacher and student from the same
    start (``structure``; default the report's speed_structure) with the same seed,
    ``equilibration`` steps then ``steps`` (0: no check) sampled every ``every``; radial
    distribution functions of ``pairs`` of element symbols up to ``r_max`` (capped at half the
    cell's shortest height) in bins of ``bin_width``; their largest difference over
    ``compare`` (A). ``noise_seeds`` more teacher runs (seeds seed + 1, ...) give the same
    difference between the teacher and itself: the comparison's statistical noise."""

    structure: str | None = None
    temperature: float = 300.0  # K
    timestep: float = 0.5  # fs
    equilibration: int = 1000  # steps
    steps: int = 4000
    every: int = 10
    thermostat: str = "langevin"
    tau_t: float = 100.0  # fs
    seed: int = 0
    pairs: tuple[tuple[str, str], ...] = (("O", "O"), ("O", "H"))
    r_max: float = 6.5  # A
    bin_width: float = 0.05  # A
    compare: tuple[float, float] = (2.0, 6.0)  # A
    noise_seeds: int = 0


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """Labelled systems to test against (DFT), the structure timed for the speedup (default:
    the first explored structure), the number of timed calls (median) and the radial
    distribution check (``rdf``)."""

    dft_systems: tuple[str, ...] = ()
    speed_structure: str | None = None
    repeats: int = 5
    rdf: RdfConfig = RdfConfig()


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    teacher: str
    head: str | None
    explore: ExploreConfig
    label: LabelConfig
    student: dict  # DeePMD training input sections, system paths filled in by the pipeline
    report: ReportConfig
    check: CheckConfig = CheckConfig()
    source: str = ""  # the config file, for messages


def _path(base: str, p: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(p)))


def _section(d: dict, name: str, cls, where: str) -> dict:
    section = dict(d.get(name) or {})
    return dataclass_kwargs(cls, section, f"{where}: {name}")


def distill_config(d: dict, base_dir: str, where: str = "config") -> DistillConfig:
    """DistillConfig from a dict of the six sections (``check``, ``label`` and ``report``
    optional); paths relative to ``base_dir``."""
    sections = {"teacher", "check", "explore", "label", "student", "report"}
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
    student = dict(d["student"])
    for key in ("model", "training"):
        if key not in student:
            raise ConfigError(f"{where}: student.{key} is missing (DeePMD training sections)")
    return DistillConfig(
        teacher=_path(base_dir, teacher["model"]), head=teacher.get("head") or None,
        explore=explore, label=label, student=student,
        report=_report_config(d, base_dir, where), check=_check_config(d, where), source=where,
    )  # fmt: skip


def _check_config(d: dict, where: str) -> CheckConfig:
    """The ``check`` section, validated."""
    check = CheckConfig(**_section(d, "check", CheckConfig, where))
    spacing = 1 <= check.every <= check.window <= check.steps
    if check.steps < 0 or (check.steps > 0 and not spacing):
        raise ConfigError(f"{where}: check.steps {check.steps}, check.every {check.every} and "
                          f"check.window {check.window}: need steps >= 0 (0: no check) and "
                          "1 <= every <= window <= steps")  # fmt: skip
    limits = {k: getattr(check, k) for k in ("max_drift", "max_force", "max_temperature",
                                             "max_temperature_factor", "timestep")}  # fmt: skip
    bad = [k for k, v in limits.items() if not v > 0]
    if bad:
        raise ConfigError(f"{where}: check.{bad[0]} {limits[bad[0]]}: expected a positive number")
    return check


def _rdf_config(rep: dict, base_dir: str, where: str) -> RdfConfig:
    """The ``report.rdf`` section, validated: pairs of two symbols, a range of two radii."""
    rdf = _section(rep, "rdf", RdfConfig, f"{where}: report")
    if rdf.get("structure"):
        rdf["structure"] = _path(base_dir, rdf["structure"])
    rdf["pairs"] = tuple(tuple(p) for p in rdf.get("pairs", RdfConfig.pairs))
    if not rdf["pairs"] or any(len(p) != 2 for p in rdf["pairs"]):
        raise ConfigError(f"{where}: report.rdf.pairs {[list(p) for p in rdf['pairs']]}: "
                          'expected pairs of element symbols, e.g. [["O", "O"], ["O", "H"]]')  # fmt: skip
    rdf["compare"] = tuple(float(r) for r in rdf.get("compare", RdfConfig.compare))
    out = RdfConfig(**rdf)
    if len(out.compare) != 2 or not 0 <= out.compare[0] < out.compare[1] <= out.r_max:
        raise ConfigError(f"{where}: report.rdf.compare {list(out.compare)}: expected [r0, r1] "
                          f"A with 0 <= r0 < r1 <= r_max ({out.r_max})")  # fmt: skip
    if (out.steps < 0 or out.equilibration < 0 or out.every < 1 or out.bin_width <= 0
            or out.noise_seeds < 0):  # fmt: skip
        raise ConfigError(f"{where}: report.rdf: steps {out.steps}, equilibration "
                          f"{out.equilibration}, every {out.every}, bin_width {out.bin_width}, "
                          f"noise_seeds {out.noise_seeds}: need steps, equilibration, "
                          "noise_seeds >= 0, every >= 1 and bin_width > 0")  # fmt: skip
    return out


def _report_config(d: dict, base_dir: str, where: str) -> ReportConfig:
    """The ``report`` section: paths resolved, ``rdf`` validated."""
    rep = _section(d, "report", ReportConfig, where)
    rep["dft_systems"] = tuple(_path(base_dir, s) for s in rep.get("dft_systems", ()))
    if rep.get("speed_structure"):
        rep["speed_structure"] = _path(base_dir, rep["speed_structure"])
    rep["rdf"] = _rdf_config(rep, base_dir, where)
    return ReportConfig(**rep)


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
