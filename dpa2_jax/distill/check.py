"""The teacher's check before exploring: is its own MD stable where exploration will take it?

    each exploration structure -> NVE, initial velocities at the highest exploration
      temperature, ``steps`` steps observed every ``every`` -> one record:
        drift      |mean total energy over the last ``window`` steps - over the first| / N
        excursion  max |total energy - its value at step 0| / N            (eV/atom)
        max_force  largest per-atom |F_i| of any observed step             (eV/A)
        max_temperature                                                    (K)
      -> WORKDIR/check/<run>.log (the observations), check/summary.json when all pass

A teacher whose MD runs away (non-finite numbers, largest force or temperature above the
limits, drift above ``max_drift``) stops the pipeline with an ``UnstableDynamicsError`` naming
the structure, the temperature and the quantity over its limit: a student fitted to the
frames of such a run learns the teacher's artefacts, not its physics (docs/distillation.md).
Exploration keeps only frames within the same force and temperature limits
(``explore.limits_mask``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import numpy as np

from dpa2_jax.distill.config import CheckConfig
from dpa2_jax.distill.explore import run_name
from dpa2_jax.errors import UnstableDynamicsError
from dpa2_jax.md.output import read_structure
from dpa2_jax.md.sampling import Series, observe_run

logger = logging.getLogger(__name__)
ADVICE = (
    "A student can only learn a teacher whose surface is smooth where its MD goes. Use a "
    "teacher that is stable in MD (trained longer or on more data; examples/water_md/model.dp "
    "is one for water), or a smaller check.timestep and explore.timestep; if the limit is too "
    "strict for this system, raise it in the config's check section"
)


def record(series: Series, n_atoms: int, window: int) -> dict:
    """The check's numbers of one run (module docstring): drift and excursion (eV/atom),
    largest force (eV/A) and temperature (K) with the steps where they occurred, the last
    observed step, whether everything was finite, and why the run stopped early (or None)."""
    e = series.total / n_atoms  # [n] eV/atom
    steps = series.steps
    if len(steps) == 0:  # stopped before its first observation
        return {"drift_eV_per_atom": np.nan, "excursion_eV_per_atom": np.nan,
                "max_force_eV_A": np.nan, "max_force_step": 0, "max_temperature_K": np.nan,
                "max_temperature_step": 0, "last_step": 0, "finite": False,
                "failure": series.failure}  # fmt: skip
    finite = series.failure is None and bool(
        np.isfinite(e).all() and np.isfinite(series.max_force).all()
    )
    first = e[steps <= steps[0] + window]
    last = e[steps >= steps[-1] - window]
    with np.errstate(invalid="ignore"):
        k_force = int(np.argmax(np.nan_to_num(series.max_force, nan=np.inf)))
        k_temp = int(np.argmax(np.nan_to_num(series.temperature, nan=np.inf)))
        return {
            "drift_eV_per_atom": float(abs(last.mean() - first.mean())),
            "excursion_eV_per_atom": float(np.max(np.abs(e - e[0]))),
            "max_force_eV_A": float(series.max_force[k_force]),
            "max_force_step": int(steps[k_force]),
            "max_temperature_K": float(series.temperature[k_temp]),
            "max_temperature_step": int(steps[k_temp]),
            "last_step": int(steps[-1]),
            "finite": finite,
            "failure": series.failure,
        }  # fmt: skip


def violations(rec: dict, cfg: CheckConfig, temperature: float) -> list[str]:
    """What in a ``record`` (run at initial ``temperature`` K) is over its limit, one phrase
    each (empty: the run passes)."""
    out = []
    if not rec["finite"]:
        why = rec["failure"] or "non-finite energy or forces"
        out.append(f"the run stopped after step {rec['last_step']} ({why})")
    if not rec["max_force_eV_A"] <= cfg.max_force:
        out.append(f"largest force {rec['max_force_eV_A']:.4g} eV/A at step "
                   f"{rec['max_force_step']} > check.max_force {cfg.max_force:g} eV/A")  # fmt: skip
    t_limit = cfg.temperature_limit(temperature)
    if not rec["max_temperature_K"] <= t_limit:
        which = ("check.max_temperature" if t_limit == cfg.max_temperature else
                 f"check.max_temperature_factor {cfg.max_temperature_factor:g} x {temperature:g} K")  # fmt: skip
        out.append(f"temperature {rec['max_temperature_K']:.4g} K at step "
                   f"{rec['max_temperature_step']} > {t_limit:g} K ({which})")  # fmt: skip
    if not rec["drift_eV_per_atom"] <= cfg.max_drift:
        out.append(f"energy drift {rec['drift_eV_per_atom']:.3g} eV/atom > check.max_drift "
                   f"{cfg.max_drift:g} eV/atom")  # fmt: skip
    return out


def write_log(series: Series, path: str) -> None:
    """The run's observations as a text table (step, time, energies, temperature, force)."""
    table = np.column_stack([series.steps, series.potential, series.kinetic, series.total,
                             series.temperature, series.max_force])  # fmt: skip
    header = "step potential_eV kinetic_eV total_eV temperature_K max_force_eV_A"
    np.savetxt(path, table, fmt=["%8d"] + ["%.10g"] * 5, header=header)


def check_teacher(
    pot, structures: Sequence[str], temperature: float, cfg: CheckConfig, outdir: str,
    head: str | None = None, progress: Callable[[int], None] | None = None,
) -> list[dict]:  # fmt: skip
    """One NVE run per structure (module docstring); returns their records.

    Raises:
      UnstableDynamicsError: at the first run over a limit, naming the structure, the
        temperature and each quantity over its limit.
    """
    from dpa2_jax.md import simulate

    os.makedirs(outdir, exist_ok=True)
    md = simulate.MDConfig(ensemble="nve", temperature=temperature, timestep=cfg.timestep)
    records = []
    for i, structure in enumerate(structures):
        atoms = read_structure(structure)
        sim = simulate.build_simulation(pot, atoms, md, head=head)
        series = observe_run(sim, cfg.seed + 1000 * i, cfg.steps, cfg.every,
                             stop_on_failure=True, progress=progress)  # fmt: skip
        log = os.path.join(outdir, f"{run_name(i, temperature)}.log")
        write_log(series, log)
        rec = {"structure": structure, "temperature_K": temperature, "atoms": len(atoms),
               "steps": cfg.steps, "timestep_fs": cfg.timestep, "log": log,
               **record(series, len(atoms), cfg.window)}  # fmt: skip
        bad = violations(rec, cfg, temperature)
        logger.info("check: %s at %g K: drift %.3g eV/atom, largest force %.3g eV/A, highest "
                    "temperature %.4g K%s", structure, temperature, rec["drift_eV_per_atom"],
                    rec["max_force_eV_A"], rec["max_temperature_K"],
                    f"; OVER LIMITS: {'; '.join(bad)}" if bad else "")  # fmt: skip
        if bad:
            raise UnstableDynamicsError(
                f"check: the teacher's NVE run from {structure} (initial velocities at "
                f"{temperature:g} K, {cfg.timestep:g} fs steps) ran away: {'; '.join(bad)}. "
                f"{ADVICE}. Its observations: {log}"
            )
        records.append(rec)
    return records
