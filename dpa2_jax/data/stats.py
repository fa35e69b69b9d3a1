"""Data statistics that set a model's normalisation before training (host side, numpy float64).

Energy bias (``compute_stats_from_redu`` in utils/out_stat.py, called by DeePMD's
``BaseAtomicModel.change_out_bias`` in "set-by-statistic" mode): the least-squares solution of
E_f = sum_t n_ft b_t by ``numpy.linalg.lstsq`` (minimum norm, cut-off ``rcond``). A type absent
from the data, or in ``atom_exclude_types`` (its counts are zeroed), has a zero column and so
gets b_t = 0; preset biases are subtracted first and written back afterwards.

Underdetermined biases: when the frames have too few compositions (one composition: only
sum_t n_t b_t is known), the counts' null space N (``undetermined_directions``) is a set of
bias directions the data cannot see. DeePMD-kit keeps lstsq's minimum-norm point, which splits
the energy in proportion to the atom counts. Given a prior p (per-type energies, e.g.
isolated-atom references, the pretrained model's biases, or for types without one the data's
energy per atom shared evenly), the bias becomes b + N N^T (p - b) (``follow_prior``): the
determined combinations, and so every fitted energy, stay lstsq's; the undetermined part is
p's. Either way a warning names the elements involved and the prior used.

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

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from dpa2_jax.data.dataset import fitting_parameters
from dpa2_jax.data.system import System
from dpa2_jax.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

MIN_STD = 1e-2  # StatItem.compute_std's protection: a smaller std is raised to this
DATA_STAT_NBATCH = 10  # DeePMD's default ``data_stat_nbatch``


def energy_bias(
    energies: np.ndarray,
    type_counts: np.ndarray,
    rcond: float | None = None,
    atom_exclude_types: Sequence[int] = (),
    preset: Sequence[float | None] | None = None,
    prior: Sequence[float | None] | None = None,
    type_names: Sequence[str] | None = None,
    prior_note: str = "",
) -> np.ndarray:
    """Per-type energy bias by least squares on atom counts (module docstring).

    Args:
      energies: [n_frame] total energies [eV].
      type_counts: [n_frame, ntypes] atoms of each type per frame.
      rcond: cut-off ratio of small singular values (``numpy.linalg.lstsq``; DeePMD's
        ``rcond``, None by default).
      atom_exclude_types: types whose counts are zeroed (DeePMD's model option).
      preset: per type a fixed bias [eV] or None (DeePMD's ``preset_out_bias``).
      prior: per type the bias [eV] to follow where the data do not determine it, or None
        (that type shares the energy left per atom); None for all: DeePMD's minimum norm.
        See ``follow_prior``.
      type_names: the types' element names, for the warning.
      prior_note: what the prior means, appended to the warning.

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
    names = list(type_names) if type_names is not None else [str(t) for t in range(len(bias))]
    bias = follow_prior(bias, counts, energy[:, 0], prior, rcond, names, prior_note)
    bias[fixed] = values[fixed]
    return bias


def undetermined_directions(counts: np.ndarray, rcond: float | None = None) -> np.ndarray:
    """[ntypes, k] orthonormal basis of the bias directions that ``counts`` [n_frame, ntypes]
    leaves undetermined (its null space among the types present; singular values cut as
    ``numpy.linalg.lstsq`` cuts them); k = 0 when the fit is full rank."""
    present = np.flatnonzero(np.abs(counts).sum(axis=0) > 0)
    if present.size == 0:
        return np.zeros((counts.shape[1], 0))
    _, s, vt = np.linalg.svd(counts[:, present])  # vt: [n_present, n_present]
    cut = (np.finfo(np.float64).eps * max(counts.shape) if rcond is None else rcond) * s[0]
    rank = int(np.sum(s > cut))
    null = np.zeros((counts.shape[1], present.size - rank))
    null[present] = vt[rank:].T
    return null


def follow_prior(
    bias: np.ndarray,
    counts: np.ndarray,
    energy: np.ndarray,
    prior: Sequence[float | None] | None,
    rcond: float | None,
    names: Sequence[str],
    note: str = "",
) -> np.ndarray:
    """``bias`` [ntypes] (a least-squares fit of ``energy`` [n_frame] on ``counts``) moved
    along the undetermined directions N (``undetermined_directions``) to the point nearest
    ``prior``: bias + N N^T (prior - bias). Every combination the data determine, and so every
    fitted energy, is unchanged. A type whose prior is None gets the energy per atom that the
    data leave after the other types' priors (least squares over frames): one shared value,
    so such types are split evenly per atom. ``prior`` None: DeePMD's minimum norm kept.
    Logs a warning naming the undetermined elements and the prior used."""
    null = undetermined_directions(counts, rcond)  # [ntypes, k]
    if null.shape[1] == 0:
        return bias
    involved = [names[t] for t in np.flatnonzero(np.abs(null).sum(axis=1) > 1e-8)]
    if prior is None:
        logger.warning("energy bias: the data cannot separate the biases of %s (%d direction(s) "
                       "undetermined: too few compositions); kept the minimum-norm split "
                       "(DeePMD-kit's); give a prior (bias_prior) to choose it", involved,
                       null.shape[1])  # fmt: skip
        return bias
    if len(prior) != len(bias):
        raise ConfigError(f"bias prior {list(prior)}: expected one entry per type {list(names)}")
    given = np.array([p is not None for p in prior])
    target = np.array([np.nan if p is None else float(p) for p in prior])
    shared = counts[:, ~given].sum(axis=1)  # [n_frame] atoms without a stated prior
    if np.any(~given):
        left = energy - counts[:, given] @ target[given]
        target[~given] = shared @ left / max(shared @ shared, 1e-300)
    moved = bias + null @ (null.T @ (target - bias))
    present = np.abs(counts).sum(axis=0) > 0
    stated = {names[t]: round(float(target[t]), 4) for t in np.flatnonzero(given & present)}
    sharing = np.flatnonzero(~given & present)
    rest = (f"; {[names[t] for t in sharing]} (no prior) share the energy left per atom, "
            f"{target[sharing[0]]:.4f} eV" if sharing.size else "")  # fmt: skip
    logger.warning("energy bias: the data cannot separate the biases of %s (%d direction(s) "
                   "undetermined: too few compositions); fixed from the prior %s eV%s%s",
                   involved, null.shape[1], stated, note, rest)  # fmt: skip
    return moved


def bias_prior_vector(
    type_map: Sequence[str], bias_prior: dict[str, float] | None
) -> list[float | None]:
    """Per type of ``type_map`` the prior bias [eV] that ``bias_prior`` ({element: eV}) gives,
    or None; ConfigError for an element outside the type map or a value that is no number."""
    bias_prior = bias_prior or {}
    if not isinstance(bias_prior, dict):
        raise ConfigError(f"bias_prior {bias_prior!r}: give {{element: energy in eV}}")
    for element, value in bias_prior.items():
        if element not in type_map:
            raise ConfigError(f"bias_prior: element {element!r} is not in the type map "
                              f"{list(type_map)}")  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"bias_prior[{element!r}] = {value!r}: give an energy in eV")
    return [None if e not in bias_prior else float(bias_prior[e]) for e in type_map]


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
