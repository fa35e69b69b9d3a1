"""Data statistics that set a model's normalisation before training (host side, numpy float64).

Energy bias (``compute_stats_from_redu`` in utils/out_stat.py, called by DeePMD's
``BaseAtomicModel.change_out_bias`` in "set-by-statistic" mode): the least-squares solution of
E_f = sum_t n_ft b_t by ``numpy.linalg.lstsq`` (minimum norm, cut-off ``rcond``). A type absent
from the data, or in ``atom_exclude_types`` (its counts are zeroed), has a zero column and so
gets b_t = 0; preset biases are subtracted first and written back afterwards.

Fitting inputs (DeePMD-kit 3.2.0 ``GeneralFitting.compute_input_stats``, for fittings with
numb_fparam / numb_aparam), per component over the sampled frames (fparam) or over every atom
of them (aparam):

    fparam_avg = <f>        fparam_inv_std = 1 / std(f)     (std as above: raised to 1e-2)

A system without fparam.npy counts with the fitting's ``default_fparam`` (as DeePMD's data
requirement fills it); without it, and always for a missing aparam.npy, a DataError.

Frames: DeePMD's ``data_stat_nbatch`` (default 10) batches per system; with the usual ``auto``
batch size a batch of a system of 32 atoms or more is one frame, so ``max_frames`` per system
plays that role.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dpa2_jax.data.dataset import fitting_parameters
from dpa2_jax.data.system import System
from dpa2_jax.errors import ConfigError, DataError

MIN_STD = 1e-2  # StatItem.compute_std's protection: a smaller std is raised to this
DATA_STAT_NBATCH = 10  # DeePMD's default ``data_stat_nbatch``


def energy_bias(
    energies: np.ndarray,
    type_counts: np.ndarray,
    rcond: float | None = None,
    atom_exclude_types: Sequence[int] = (),
    preset: Sequence[float | None] | None = None,
) -> np.ndarray:
    """Per-type energy bias by least squares on atom counts (module docstring).

    Args:
      energies: [n_frame] total energies [eV].
      type_counts: [n_frame, ntypes] atoms of each type per frame.
      rcond: cut-off ratio of small singular values (``numpy.linalg.lstsq``; DeePMD's
        ``rcond``, None by default).
      atom_exclude_types: types whose counts are zeroed (DeePMD's model option).
      preset: per type a fixed bias [eV] or None (DeePMD's ``preset_out_bias``).

    Returns:
      [ntypes] bias [eV].
    """
    counts = np.array(type_counts, dtype=np.float64)
    energy = np.array(energies, dtype=np.float64).reshape(-1, 1)  # [n_frame, 1]
    if counts.ndim != 2 or counts.shape[0] != energy.shape[0]:
        raise DataError(
            f"energy_bias: type_counts must be [n_frame={energy.shape[0]}, ntypes], "
            f"got {counts.shape}"
        )
    counts[:, list(atom_exclude_types)] = 0.0
    fixed = np.zeros(counts.shape[1], bool)
    values = np.zeros(counts.shape[1])
    if preset is not None:
        if len(preset) != counts.shape[1]:
            raise ConfigError(f"preset bias {preset}: expected one entry per type")
        fixed = np.array([p is not None for p in preset])
        values = np.array([0.0 if p is None else float(p) for p in preset])
        energy = energy - counts[:, fixed] @ values[fixed, None]
        counts[:, fixed] = 0.0
    bias = np.linalg.lstsq(counts, energy, rcond=rcond)[0][:, 0]  # [ntypes]
    bias[fixed] = values[fixed]
    return bias


def sample_frames(system: System, max_frames: int, rng: np.random.Generator | None) -> System:
    """At most ``max_frames`` frames: the first ones, or drawn without replacement by ``rng``."""
    n = min(max_frames, system.nframes)
    if rng is None:
        return system.select_frames(slice(0, n))
    return system.select_frames(np.sort(rng.choice(system.nframes, n, replace=False)))


def fitting_input_statistics(systems: Sequence[System], fitting: Any) -> dict[str, np.ndarray]:
    """fparam/aparam mean and inverse std of the systems' frames (module docstring); {} for a
    fitting without numb_fparam and numb_aparam."""
    if not (fitting.numb_fparam or fitting.numb_aparam):
        return {}
    params = [fitting_parameters(s, fitting) for s in systems]
    out = {}
    for k, (name, n) in enumerate(
        (("fparam", fitting.numb_fparam), ("aparam", fitting.numb_aparam))
    ):
        if not n:
            continue
        values = np.concatenate([np.reshape(p[k], (-1, n)) for p in params])  # [n_sample, n]
        mean = values.mean(axis=0)
        std = np.sqrt(np.clip((values**2).mean(axis=0) - mean * mean, 0.0, None))
        std = np.where(np.abs(std) < MIN_STD, MIN_STD, std)
        out[f"{name}_avg"], out[f"{name}_inv_std"] = mean, 1.0 / std
    return out
