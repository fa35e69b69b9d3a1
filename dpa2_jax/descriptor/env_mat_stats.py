"""Environment-matrix statistics: the davg/dstd a descriptor block normalises with (host side,
numpy float64). A family's ``statistics`` names its blocks (``block_statistics``).

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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from dpa2_jax.data.stats import MIN_STD
from dpa2_jax.data.system import Frame
from dpa2_jax.descriptor.env_mat import switch_function
from dpa2_jax.errors import DataError
from dpa2_jax.graph.neighbors import neighbor_list

EMPTY_STD = 1e-1  # std of a type with no centers in the data (StatItem's default)


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
    frames: Iterable[Frame], ntypes: int, set_davg_zero: bool = True, **block
) -> tuple[np.ndarray, np.ndarray]:
    """DeePMD-kit's davg and dstd of one block (module docstring).

    Args: ``block`` as the keyword arguments of ``environment_moments`` (rcut, rcut_smth, sel,
      protection, exclude_types, type_sel); set_davg_zero keeps davg at zero.

    Returns:
      davg, dstd: [ntypes, sel, 4] float64.
    """
    moments = environment_moments(frames, ntypes, **block)
    return moments_statistics(moments, block["sel"], set_davg_zero)


def block_statistics(
    blocks: dict[str, dict], frames: Sequence[Frame], ntypes: int
) -> dict[str, dict[str, np.ndarray]]:
    """{block: {"davg", "dstd"}} ([ntypes, sel, 4] each) for every block of a family's
    ``statistics_blocks`` (name -> keyword arguments of ``environment_statistics``)."""
    out = {}
    for name, block in blocks.items():
        davg, dstd = environment_statistics(frames, ntypes, **block)
        out[name] = {"davg": davg, "dstd": dstd}
    return out
