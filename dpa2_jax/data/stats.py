"""Data statistics that set a model's normalisation before training (host side, numpy float64).

Environment matrix (DeePMD-kit 3.2.0 ``EnvMatStatSe``, dpmodel/utils/env_mat_stat.py, as the
mixed-type blocks of DPA-1/DPA-2 use it). Each block searches its own ``sel`` nearest
neighbors within its own ``rcut``; with R = s(r) (1/(r+p), r_ij/(r+p)^2) and R = 0 in an
empty slot or for an excluded pair (both still counted), pooled over every slot of every center
of type t:

    davg[t, :, 0]  = <R_0>                 davg[t, :, 1:] = 0
    dstd[t, :, 0]  = std(R_0)              dstd[t, :, 1:] = std(R_1, R_2, R_3 pooled)
    std(x)         = max(sqrt(max(<x^2> - <x>^2, 0)), 1e-2)

A type with no centers in the data gets davg 0 and dstd 0.1 (``StatItem``'s defaults). With
``set_davg_zero`` DeePMD leaves the mean as initialised, zero for a new model: we return zeros.

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

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from dpa2_jax.data.dataset import fitting_parameters
from dpa2_jax.data.system import System
from dpa2_jax.data.type_map import map_types
from dpa2_jax.descriptor import family_of
from dpa2_jax.descriptor.env_mat import switch_function
from dpa2_jax.errors import ConfigError, DataError
from dpa2_jax.graph.neighbors import neighbor_list
from dpa2_jax.typing import Params

MIN_STD = 1e-2  # StatItem.compute_std's protection: a smaller std is raised to this
EMPTY_STD = 1e-1  # std of a type with no centers in the data (StatItem's default)
DATA_STAT_NBATCH = 10  # DeePMD's default ``data_stat_nbatch``

Frame = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # coords [na, 3], types [na], cell


def environment_moments(
    frames: Iterable[Frame],
    ntypes: int,
    rcut: float,
    rcut_smth: float,
    sel: int,
    protection: float = 0.0,
    exclude_types: Sequence[tuple[int, int]] = (),
    type_sel: Sequence[int] | None = None,
) -> np.ndarray:
    """Count, sum and sum of squares of the environment matrix per center type.

    Moments of several data sets add (DeePMD merges multi-task statistics as
    ``base + link * prob``), so statistics are taken from them last (``moments_statistics``).

    Args:
      frames: (coords [na, 3] Angstrom, atom_types [na] model type indices, cell [3, 3] with
        lattice vectors as rows or None) per frame.
      ntypes: number of model types.
      rcut, rcut_smth: the block's cutoff and switch start [Angstrom].
      sel: the block's neighbor slots per center.
      protection: DeePMD's env_protection p in 1/(r+p).
      exclude_types: (type, type) pairs, either order, whose entries are zeroed.
      type_sel: per neighbor type, the most neighbors kept (se_e2_a's per-type lists, taken
        from the nearest ``sel`` = sum(type_sel)); the dropped ones count as empty slots.

    Returns:
      [ntypes, 2, 3]: for the radial and the (pooled) angular components, (number of entries,
      sum, sum of squares).
    """
    moments = np.zeros((ntypes, 2, 3))
    excluded = np.zeros((ntypes, ntypes), bool)
    for a, b in exclude_types:
        excluded[a, b] = excluded[b, a] = True
    for i, (coords, atom_types, cell) in enumerate(frames):
        coords = np.asarray(coords, np.float64)
        types = np.asarray(atom_types)
        if types.shape != coords.shape[:1] or np.any((types < 0) | (types >= ntypes)):
            raise DataError(
                f"frame {i}: atom_types must be [{coords.shape[0]}] indices in [0, {ntypes}), "
                f"got shape {types.shape}, values {np.unique(types).tolist()}"
            )
        cell = None if cell is None else np.asarray(cell, np.float64).reshape(3, 3)
        nl = neighbor_list(coords, cell, rcut, sel)
        diff = coords[nl.neighbors] - coords[nl.centers]  # [n_edge, 3] r_ij
        if cell is not None:
            diff += nl.shifts @ cell
        center, neighbor = types[nl.centers], types[nl.neighbors]  # [n_edge]
        inv = 1.0 / (nl.distances + protection)
        radial = switch_function(nl.distances, rcut_smth, rcut) * inv * ~excluded[center, neighbor]
        if type_sel is not None:
            radial = radial * _within_type_sel(nl.centers, neighbor, nl.distances, type_sel)
        angular = diff * (radial * inv)[:, None]  # [n_edge, 3] s r_ij / (r+p)^2
        slots = np.bincount(types, minlength=ntypes) * sel  # [ntypes] slots per center type
        moments[:, 0, 0] += slots
        moments[:, 0, 1] += np.bincount(center, radial, ntypes)
        moments[:, 0, 2] += np.bincount(center, radial**2, ntypes)
        moments[:, 1, 0] += 3 * slots
        moments[:, 1, 1] += np.bincount(center, angular.sum(-1), ntypes)
        moments[:, 1, 2] += np.bincount(center, (angular**2).sum(-1), ntypes)
    return moments


def _within_type_sel(centers, neighbor_types, distances, type_sel) -> np.ndarray:
    """[n_edge] True for the ``type_sel[t]`` nearest neighbors of type t of each center."""
    order = np.lexsort((distances, neighbor_types, centers))  # center, type, then distance
    key = (centers * len(type_sel) + neighbor_types)[order]
    rank = np.arange(len(key)) - np.searchsorted(key, key, side="left")
    keep = np.empty(len(key), bool)
    keep[order] = rank < np.asarray(type_sel)[neighbor_types[order]]
    return keep


def moments_statistics(
    moments: np.ndarray, sel: int, set_davg_zero: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(davg, dstd) [ntypes, sel, 4] from ``environment_moments`` (module docstring)."""
    number, total, squares = moments[..., 0], moments[..., 1], moments[..., 2]  # [ntypes, 2]
    seen = number > 0
    n = np.where(seen, number, 1.0)
    mean = np.where(seen, total / n, 0.0)
    std = np.sqrt(np.clip(squares / n - mean * mean, 0.0, None))
    std = np.where(seen, np.where(np.abs(std) < MIN_STD, MIN_STD, std), EMPTY_STD)
    ntypes = moments.shape[0]
    davg = np.zeros((ntypes, sel, 4))
    if not set_davg_zero:
        davg[:, :, 0] = mean[:, 0, None]
    dstd = np.repeat(std[:, None, [0, 1, 1, 1]], sel, axis=1)  # [ntypes, sel, 4]
    return davg, dstd


def environment_statistics(
    frames: Iterable[Frame],
    ntypes: int,
    rcut: float,
    rcut_smth: float,
    sel: int,
    protection: float = 0.0,
    set_davg_zero: bool = True,
    exclude_types: Sequence[tuple[int, int]] = (),
    type_sel: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """DeePMD-kit's davg and dstd of one block (module docstring).

    Args: as ``environment_moments``; set_davg_zero keeps davg at zero.

    Returns:
      davg, dstd: [ntypes, sel, 4] float64.
    """
    moments = environment_moments(
        frames, ntypes, rcut, rcut_smth, sel, protection, exclude_types, type_sel
    )
    return moments_statistics(moments, sel, set_davg_zero)


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


def _frames(systems: Sequence[System]) -> Iterable[Frame]:
    for s in systems:
        for f in range(s.nframes):
            yield s.coords[f], s.atom_types, None if s.cells is None else s.cells[f]


def compute_statistics(
    cfg: Any,
    systems: Sequence[System],
    max_frames: int = DATA_STAT_NBATCH,
    rcond: float | None = None,
    rng: np.random.Generator | None = None,
    head: str | None = None,
) -> dict[str, Any]:
    """Environment statistics of every descriptor block and the energy bias of a model.

    Args:
      cfg: a ``ModelConfig``; its descriptor family's ``statistics_blocks`` names the blocks.
      systems: labelled systems; their types are mapped onto ``cfg.type_map`` by symbol.
      max_frames: frames taken per system (DeePMD's ``data_stat_nbatch``).
      rcond: see ``energy_bias``.
      rng: draws the frames at random when given; otherwise the first ``max_frames``.
      head: the fitting head whose fparam/aparam statistics are taken (None: the only one).

    Returns:
      {"descriptor": {block: {"davg", "dstd"}} ([ntypes, sel, 4] each),
       "out_bias": [ntypes] eV}, and for a fitting with numb_fparam or numb_aparam
      "fitting": {"fparam_avg", "fparam_inv_std" [numb_fparam]; "aparam_avg",
      "aparam_inv_std" [numb_aparam]} (those it has).
    """
    blocks_of = family_of(cfg.descriptor).statistics_blocks
    if blocks_of is None:
        raise ConfigError(f"descriptor family {cfg.descriptor.family!r} has no statistics")
    if not systems:
        raise DataError("compute_statistics: no systems given")
    ntypes = len(cfg.type_map)
    systems = [
        sample_frames(
            s if s.type_map == cfg.type_map else map_types(s, cfg.type_map), max_frames, rng
        )
        for s in systems
    ]
    descriptor = {}
    for name, block in blocks_of(cfg.descriptor).items():
        davg, dstd = environment_statistics(_frames(systems), ntypes, **block)
        descriptor[name] = {"davg": davg, "dstd": dstd}
    labelled = [s for s in systems if s.energies is not None]
    if not labelled:
        raise DataError(
            "compute_statistics: no system has energies; the energy bias needs energy.npy "
            f"(systems: {[s.path for s in systems]})"
        )
    energies = np.concatenate([s.energies for s in labelled])  # [n_frame]
    counts = np.concatenate(
        [np.tile(np.bincount(s.atom_types, minlength=ntypes), (s.nframes, 1)) for s in labelled]
    )  # [n_frame, ntypes]
    bias = energy_bias(energies, counts, rcond, cfg.atom_exclude_types)
    out = {"descriptor": descriptor, "out_bias": bias}
    fitting = fitting_input_statistics(systems, cfg.fitting(cfg.resolve_head(head)))
    if fitting:
        out["fitting"] = fitting
    return out


def task_statistics(
    cfg: Any, tasks: dict[str, tuple[Sequence[System], int]], rcond: float | None = None
) -> dict[str, Any]:
    """Statistics of a multi-task model: {"descriptor": ..., "heads": {name: {"out_bias", and
    "fitting" where it has fparam/aparam}}}.

    Args:
      cfg: the ``ModelConfig``, one head per task.
      tasks: per head, (its training systems, frames taken per system).

    The shared descriptor's moments are summed over every task's frames (DeePMD-kit 3.2.0's
    ``share_params`` adds the linked descriptors' statistics to the base one unweighted); the
    energy bias and fitting-input statistics are each head's own. One task: exactly
    ``compute_statistics``.
    """
    heads, sampled = {}, []
    for name, (systems, max_frames) in tasks.items():
        stats = compute_statistics(cfg, systems, max_frames, rcond, head=name)
        heads[name] = {k: v for k, v in stats.items() if k != "descriptor"}
        sampled += [
            sample_frames(s if s.type_map == cfg.type_map else map_types(s, cfg.type_map), max_frames,
                    None)
            for s in systems
        ]  # fmt: skip
        descriptor = stats["descriptor"]
    if len(tasks) > 1:
        descriptor = {
            name: dict(zip(("davg", "dstd"), environment_statistics(
                _frames(sampled), len(cfg.type_map), **block)))
            for name, block in family_of(cfg.descriptor).statistics_blocks(cfg.descriptor).items()
        }  # fmt: skip
    return {"descriptor": descriptor, "heads": heads}


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


def _like(value: np.ndarray, old: Any, where: str) -> np.ndarray:
    if tuple(np.shape(value)) != tuple(np.shape(old)):
        raise ConfigError(f"{where}: statistics of shape {np.shape(value)}, params {np.shape(old)}")
    return np.asarray(value, dtype=old.dtype)


def apply_statistics(
    params: Params, cfg: Any, stats: dict[str, Any], head: str | None = None
) -> Params:
    """A new params tree with ``stats`` (from ``compute_statistics``) written in: davg/dstd of
    each descriptor block, ``heads[head]["out_bias"]``, which plays DeePMD's model-level
    ``out_bias``, and the fitting's fparam/aparam avg and inv_std when ``stats`` has them. Leaves keep their dtypes; ``params`` is not modified."""
    head = cfg.resolve_head(head)
    descriptor = dict(params["descriptor"])
    for name, block in stats["descriptor"].items():
        old = descriptor[name]
        descriptor[name] = {
            **old,
            "davg": _like(block["davg"], old["davg"], f"descriptor.{name}.davg"),
            "dstd": _like(block["dstd"], old["dstd"], f"descriptor.{name}.dstd"),
        }
    heads = dict(params["heads"])
    old = heads[head]["out_bias"]
    heads[head] = {**heads[head], "out_bias": _like(stats["out_bias"], old, f"{head}.out_bias")}
    if stats.get("fitting"):  # fparam/aparam normalisation of the head's fitting
        fitting = dict(heads[head]["fitting"])
        for key, value in stats["fitting"].items():
            fitting[key] = _like(value, fitting[key], f"{head}.fitting.{key}")
        heads[head] = {**heads[head], "fitting": fitting}
    return {**params, "descriptor": descriptor, "heads": heads}
