"""Exploration: teacher MD through JAX-MD (``md/simulate.py``), then optional random
perturbation and committee selection of the sampled frames.

    structure x temperature -> NVT/NPT/NVE run -> a frame every ``every`` steps
      -> kept if its largest force and temperature are within the check's limits
      -> + ``copies`` randomly strained and displaced copies of each
      -> kept if lo <= max_devi_f < hi over a committee (``model/deviation.py``), if any
      -> one unlabelled DeePMD npy system per run: WORKDIR/explore/<run>/, and its numbers
         (frames sampled, dropped, kept; largest force and temperature) in <run>.json

Each run's folder is written to a temporary name and renamed when complete, so an
interrupted stage redoes only the runs it had not finished.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from dpa2_jax.data.npy_system import write_npy_system
from dpa2_jax.data.system import System
from dpa2_jax.distill.config import CheckConfig, CommitteeConfig, ExploreConfig, PerturbConfig
from dpa2_jax.md.output import read_structure
from dpa2_jax.md.sampling import observe_run
from dpa2_jax.model import deviation

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Frames:
    """Sampled frames of one run: positions [n_frame, n_atom, 3] A, cells [n_frame, 3, 3] A
    (rows lattice vectors) or None, symbols [n_atom], MD step of each frame [n_frame]."""

    coords: np.ndarray
    cells: np.ndarray | None
    symbols: tuple[str, ...]
    steps: np.ndarray

    def select(self, keep: np.ndarray) -> Frames:
        cells = None if self.cells is None else self.cells[keep]
        return Frames(self.coords[keep], cells, self.symbols, self.steps[keep])


def run_name(structure_index: int, temperature: float) -> str:
    """Folder name of one run, e.g. ``s0_300K``."""
    return f"s{structure_index}_{temperature:g}K"


def perturb(frames: Frames, cfg: PerturbConfig, rng: np.random.Generator) -> Frames:
    """The frames followed by ``cfg.copies`` perturbed copies of each: cell -> cell (I + eps)
    with eps symmetric, entries uniform in [-strain, strain], atoms moved with the cell
    (fractional coordinates kept) and then displaced uniformly in [-displacement,
    displacement] A per component. Non-periodic frames get displacements only."""
    if cfg.copies <= 0:
        return frames
    n = len(frames.steps)
    reps = np.repeat(np.arange(n), cfg.copies)  # [n * copies]
    coords = frames.coords[reps].copy()  # [m, n_atom, 3]
    cells = None
    if frames.cells is not None:
        eps = rng.uniform(-cfg.strain, cfg.strain, size=(len(reps), 3, 3))
        deform = np.eye(3) + 0.5 * (eps + eps.transpose(0, 2, 1))  # [m, 3, 3]
        cells = frames.cells[reps] @ deform  # rows deformed: a' = a (I + eps)
        coords = coords @ deform  # same map for positions: fractional coordinates kept
    coords += rng.uniform(-cfg.displacement, cfg.displacement, size=coords.shape)
    return Frames(
        np.concatenate([frames.coords, coords]),
        None if cells is None else np.concatenate([frames.cells, cells]),
        frames.symbols,
        np.concatenate([frames.steps, frames.steps[reps]]),
    )


def select_by_deviation(max_devi_f: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Boolean mask [n_frame] of the frames with lo <= max_devi_f < hi (eV/A)."""
    max_devi_f = np.asarray(max_devi_f)
    return (max_devi_f >= lo) & (max_devi_f < hi)


def limits_mask(
    max_force: np.ndarray, temperature: np.ndarray, force_limit: float, temperature_limit: float
) -> np.ndarray:
    """Boolean mask [n_frame] of the frames whose largest force (eV/A) and instantaneous
    temperature (K) are within the limits (<=); non-finite values are outside."""
    max_force, temperature = np.asarray(max_force), np.asarray(temperature)
    return (max_force <= force_limit) & (temperature <= temperature_limit)


def committee_deviation(pots: Sequence, frames: Frames, head: str | None) -> np.ndarray:
    """The ``model_devi.out`` table [n_frame, 8] of a committee on ``frames``."""
    pred = deviation.ensemble_predictions(pots, frames.coords, frames.cells, frames.symbols, head)
    table = deviation.model_deviation(pred["energy"], pred["forces"], pred["virial"])
    table[:, 0] = frames.steps
    return table


def teacher_md(pot, atoms, cfg: ExploreConfig, head: str | None):
    """The teacher's MD from ``atoms`` (``md.simulate.Simulation``), compiled once for every
    temperature (``with_temperature``)."""
    from dpa2_jax.md import simulate

    md = simulate.MDConfig(ensemble=cfg.ensemble, temperature=cfg.temperatures[0],
                           timestep=cfg.timestep, thermostat=cfg.thermostat, tau_t=cfg.tau_t)  # fmt: skip
    return simulate.build_simulation(pot, atoms, md, head=head)


def sample_md(
    sim, cfg: ExploreConfig, seed: int, progress: Callable[[int], None] | None = None
) -> tuple[Frames, dict[str, np.ndarray]]:
    """Runs ``sim`` (``teacher_md``, at its temperature) and keeps a frame every ``cfg.every``
    steps (steps every, 2 every, ..., and the last); returns them with each frame's largest
    per-atom force norm (``max_force`` [n_frame] eV/A) and instantaneous ``temperature``
    [n_frame] (K)."""
    series = observe_run(sim, seed, cfg.steps, cfg.every, keep_positions=True, progress=progress)
    after = series.steps > 0  # step 0 is the starting structure
    cells = series.cells[after] if sim.periodic else None
    frames = Frames(series.positions[after], cells, sim.symbols, series.steps[after])
    return frames, {"max_force": series.max_force[after],
                    "temperature": series.temperature[after]}  # fmt: skip


def within_limits(
    frames: Frames, stats: dict, limits: CheckConfig | None, temperature: float
) -> tuple[Frames, dict]:
    """The frames within ``limits`` (largest force <= max_force, temperature <= the limit for
    a run at ``temperature`` K; all of them without limits) and the counts dropped: by force,
    by temperature and in all."""
    if limits is None:
        return frames, {"dropped": 0, "dropped_force": 0, "dropped_temperature": 0}
    t_limit = limits.temperature_limit(temperature)
    keep = limits_mask(stats["max_force"], stats["temperature"], limits.max_force, t_limit)
    counts = {
        "dropped": int((~keep).sum()),
        "dropped_force": int((~(stats["max_force"] <= limits.max_force)).sum()),
        "dropped_temperature": int((~(stats["temperature"] <= t_limit)).sum()),
    }
    if counts["dropped"]:
        logger.warning("explore: %d of %d frames at %g K dropped outside the limits (%d with a "
                       "force above %g eV/A, %d above %g K): the teacher's MD leaves the region "
                       "where it is smooth", counts["dropped"], len(keep), temperature,
                       counts["dropped_force"], limits.max_force, counts["dropped_temperature"],
                       t_limit)  # fmt: skip
    return frames.select(keep), counts


def write_frames(frames: Frames, type_map: Sequence[str], path: str) -> str:
    """Writes unlabelled frames as a DeePMD npy system (types index ``type_map``) and their MD
    steps as ``steps.raw``; written under a temporary name, then renamed."""
    tmp = path + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    types = np.array([list(type_map).index(s) for s in frames.symbols], np.int32)
    system = System(path=path, type_map=tuple(type_map), atom_types=types,
                    coords=frames.coords, cells=frames.cells)  # fmt: skip
    write_npy_system(system, tmp)
    np.savetxt(os.path.join(tmp, "steps.raw"), frames.steps, fmt="%d")
    os.replace(tmp, path)
    return path


def explore(
    pot, cfg: ExploreConfig, outdir: str, head: str | None = None, committee: Sequence = (),
    progress: Callable[[int], None] | None = None, limits: CheckConfig | None = None,
) -> list[dict]:  # fmt: skip
    """Runs every (structure, temperature) whose folder under ``outdir`` is missing; returns
    one summary per run (name, folder, MD frames, those dropped outside ``limits``, frames
    after perturbation and kept, skipped)."""
    os.makedirs(outdir, exist_ok=True)
    warnings.filterwarnings("ignore", "scatter inputs have incompatible types", FutureWarning)
    summary = []
    for i, structure in enumerate(cfg.structures):
        atoms = read_structure(structure)
        base = None  # built when a run of this structure is still to do
        for j, temperature in enumerate(cfg.temperatures):
            name = run_name(i, temperature)
            path = os.path.join(outdir, name)
            seed = cfg.seed + 1000 * i + j
            if os.path.isdir(path):
                logger.info("explore: %s exists, skipped", path)
                if progress is not None:
                    progress(cfg.steps)
                summary.append({**_read_entry(path), "name": name, "path": path, "skipped": True})
                continue
            base = base or teacher_md(pot, atoms, cfg, head)
            frames, stats = sample_md(base.with_temperature(temperature), cfg, seed, progress)
            inside, dropped = within_limits(frames, stats, limits, temperature)
            sampled = perturb(inside, cfg.perturb, np.random.default_rng(seed))
            kept = _select(sampled, committee, cfg.committee, path)
            entry = {"name": name, "path": path, "structure": structure,
                     "temperature": temperature, "md_frames": len(frames.steps), **dropped,
                     "max_force_eV_A": float(stats["max_force"].max()),
                     "max_temperature_K": float(stats["temperature"].max()),
                     "sampled": len(sampled.steps), "kept": len(kept.steps), "skipped": False}  # fmt: skip
            _write_entry(path, entry)  # before the folder: a folder marks the run as done
            if len(kept.steps):
                write_frames(kept, pot.type_map, path)
            else:  # remember the run as done, with no frame to label
                os.makedirs(path)
            summary.append(entry)
            logger.info("explore: %s: %d MD frames, %d dropped outside the limits, %d after "
                        "perturbation, %d kept", name, entry["md_frames"], entry["dropped"],
                        entry["sampled"], entry["kept"])  # fmt: skip
    return summary


def _write_entry(path: str, entry: dict) -> None:
    """A run's summary as PATH.json, so that a resumed stage still reports it."""
    with open(path + ".json", "w") as f:
        json.dump(entry, f, indent=1)


def _read_entry(path: str) -> dict:
    """The summary a finished run left in PATH.json ({} if none)."""
    if not os.path.isfile(path + ".json"):
        return {}
    with open(path + ".json") as f:
        return json.load(f)


def _select(frames: Frames, committee: Sequence, cfg: CommitteeConfig, path: str) -> Frames:
    """Frames kept by the committee (all of them without one); writes PATH.model_devi.out."""
    if not committee:
        return frames
    table = committee_deviation(committee, frames, cfg.head)
    deviation.write_model_devi(path + ".model_devi.out", table, title=path)
    return frames.select(select_by_deviation(table[:, 4], cfg.lo, cfg.hi))
