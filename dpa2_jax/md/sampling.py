"""An MD run observed every K steps: energies, temperature, largest force and, if asked,
positions and cells (``simulate.run_chunks`` underneath).

    series = observe_run(sim, seed=0, n_steps=1000, every=10)
    series.total / n_atoms        # eV/atom at steps 0, 10, ..., 1000
    series.max_force              # eV/A, the largest |F_i| of each observed step

A run that stops (non-finite energy, a neighbor list that still overflows) ends the series
where it stopped, with ``failure`` saying why, when ``stop_on_failure`` is set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from dpa2_jax.errors import NeighborOverflowError


@dataclasses.dataclass(frozen=True)
class Series:
    """Observations of one run at ``steps`` [n]: potential and kinetic energy [n] (eV),
    temperature [n] (K), largest per-atom force norm [n] (eV/A); positions [n, N, 3] (A) and
    cells [n, 3, 3] (A, rows lattice vectors; None in free space) when kept; ``failure``:
    why the run stopped early, or None."""

    steps: np.ndarray
    potential: np.ndarray
    kinetic: np.ndarray
    temperature: np.ndarray
    max_force: np.ndarray
    positions: np.ndarray | None = None
    cells: np.ndarray | None = None
    failure: str | None = None

    @property
    def total(self) -> np.ndarray:
        """Total energy [n], eV."""
        return self.potential + self.kinetic


def _series(rows: list[dict], keep_positions: bool, periodic: bool, failure) -> Series:
    """A Series from per-step rows (step, potential, kinetic, temperature, max_force, x, cell)."""
    col = {k: np.asarray([r[k] for r in rows], np.float64)
           for k in ("potential", "kinetic", "temperature", "max_force")}  # fmt: skip
    steps = np.asarray([r["step"] for r in rows], np.int64)
    positions = cells = None
    if keep_positions:
        positions = np.stack([r["x"] for r in rows]) if rows else np.zeros((0, 0, 3))
        if periodic:
            cells = np.stack([r["cell"] for r in rows]) if rows else np.zeros((0, 3, 3))
    return Series(steps, col["potential"], col["kinetic"], col["temperature"], col["max_force"],
                  positions, cells, failure)  # fmt: skip


def observe_run(
    sim,
    seed: int,
    n_steps: int,
    every: int,
    keep_positions: bool = False,
    stop_on_failure: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Series:
    """Runs ``sim`` (``simulate.build_simulation``) from ``sim.init(seed)`` for ``n_steps``
    steps and observes it at step 0 and every ``every`` steps (and the last).

    Args:
      keep_positions: also keep real positions and cells of each observed step.
      stop_on_failure: a ``NeighborOverflowError`` of ``run_chunks`` (non-finite energy or a
        list that keeps overflowing) ends the series with ``failure`` set instead of raising.
      progress: called with the number of steps done since its last call.
    """
    from dpa2_jax.md import simulate

    state, nbr = sim.init(seed)
    rows, done, failure = [], 0, None
    try:
        for step, state, nbr, obs in simulate.run_chunks(sim, state, nbr, n_steps, every):
            force = np.linalg.norm(np.asarray(obs["forces"], np.float64), axis=-1).max()
            row = {"step": step, "potential": float(obs["energy"]),
                   "kinetic": float(obs["kinetic"]), "temperature": float(obs["temperature"]),
                   "max_force": float(force)}  # fmt: skip
            if keep_positions:
                row["x"] = simulate.positions_of(sim, state, obs)
                row["cell"] = np.asarray(obs["cell"], np.float64) if sim.periodic else None
            rows.append(row)
            if progress is not None:
                progress(step - done)
            done = step
    except NeighborOverflowError as err:
        if not stop_on_failure:
            raise
        failure = str(err)
    return _series(rows, keep_positions, sim.periodic, failure)
