"""Neighbor search on the host: every center's `sel` nearest neighbors within `rcut`.

The pairs come from `vesin` (a cell-list search that handles cells smaller than twice the cutoff,
triclinic cells and positions outside the cell); this module only validates the input, recomputes
distances in our convention, sorts, and keeps the `sel` nearest per center.

Selection rule, matching DeePMD-kit's mixed-type `build_neighbor_list` (dpmodel/utils/nlist.py,
used by DPA-1 and DPA-2): for a center i, the candidates are all pairs (j, shift) with
|r_ij| <= rcut (r_ij as defined in graph.py), except the center itself at zero shift. Other
periodic images of the center are neighbors, and a cell smaller than 2 rcut contributes several
images of the same atom. Candidates are sorted by distance and the first `sel` are kept. DeePMD
masks `rr > rcut`, so a neighbor at exactly `rcut` is kept, as here. Two distinct atoms at zero
distance are rejected (DataError) rather than passed on to a descriptor that divides by |r_ij|.

Ties: the order is made deterministic by sorting on (distance, neighbor index, shift) with exact
float64 comparison. Distances equal only up to rounding (symmetric crystals) are ordered by their
float64 values, so which of two symmetry-equivalent neighbors is dropped when they straddle the
`sel` boundary is implementation-defined (DeePMD's own `argsort` makes its choice arbitrary too).
"""

import dataclasses
import logging
import warnings
from collections.abc import Iterable

import numpy as np
import vesin

from dpa2_jax.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

# vesin searches a little beyond rcut so pairs at exactly rcut by our own float64 distance are not
# lost to rounding differences in its distance; the exact cut is ours.
_SEARCH_MARGIN = 1e-6  # Angstrom
EVERY_NEIGHBOR = 2**31 - 1  # a sel that cuts no neighbor list (and warns of no overflow)

_sel_warning_issued = False


@dataclasses.dataclass(frozen=True)
class NeighborList:
    """Directed center -> neighbor pairs, sorted by (center, distance), at most `sel` per center.

    Attributes:
        centers: [n_edge] int32, index of the center atom i.
        neighbors: [n_edge] int32, index of the neighbor atom j.
        shifts: [n_edge, 3] int32, periodic image of j in units of cell vectors (rows of cell).
        distances: [n_edge] float64, |positions[j] - positions[i] + shifts @ cell| in Angstrom.
        slot: [n_edge] int32, rank of the edge in its center's distance-ordered list, 0..sel-1.
        max_neighbors: largest number of neighbors within rcut of any center, before the cut to sel.
    """

    centers: np.ndarray
    neighbors: np.ndarray
    shifts: np.ndarray
    distances: np.ndarray
    slot: np.ndarray
    max_neighbors: int

    @property
    def n_edge(self) -> int:
        """Number of edges kept."""
        return int(self.centers.shape[0])


def neighbor_list(
    positions: np.ndarray, cell: np.ndarray | None, rcut: float, sel: int
) -> NeighborList:
    """Finds, for every atom, its `sel` nearest neighbors within `rcut` (see module docstring).

    Args:
        positions: [n_node, 3] Cartesian positions in Angstrom; they need not lie inside the cell.
        cell: [3, 3] cell whose rows are lattice vectors (Angstrom), periodic in all three
            directions; None for a non-periodic system (all shifts are zero).
        rcut: cutoff radius in Angstrom; a neighbor at exactly `rcut` is kept.
        sel: maximum number of neighbors kept per center (the nearest ones).

    Returns:
        The neighbor list, sorted by (center, distance, neighbor, shift).

    Raises:
        DataError: positions not [n, 3] or not finite, cell not [3, 3], not finite or singular,
            or two distinct atoms (or images) at zero distance.
        ConfigError: rcut not a positive finite number, or sel not a positive integer.
    """
    positions = _check_positions(positions)
    cell = _check_cell(cell)
    _check_cutoff(rcut, sel)
    centers, neighbors, shifts, distances = _search(positions, cell, rcut)
    order = _sort_order(centers, distances, neighbors, shifts, rcut)
    centers, neighbors = np.take(centers, order), np.take(neighbors, order)
    shifts, distances = np.take(shifts, order, axis=0), np.take(distances, order)

    counts = np.bincount(centers, minlength=positions.shape[0])  # [n_node]
    first = np.cumsum(counts) - counts  # [n_node] index of each center's first edge
    slot = (np.arange(centers.shape[0]) - first[centers]).astype(np.int32)  # [n_edge]
    max_neighbors = int(counts.max()) if counts.size else 0
    if max_neighbors > sel:
        _warn_sel_overflow(max_neighbors, int(np.sum(counts > sel)), sel, rcut)
        keep = slot < sel
        centers, neighbors, shifts = centers[keep], neighbors[keep], shifts[keep]
        distances, slot = distances[keep], slot[keep]
    return NeighborList(
        centers=centers,
        neighbors=neighbors,
        shifts=shifts,
        distances=distances,
        slot=slot,
        max_neighbors=max_neighbors,
    )


def _search(
    positions: np.ndarray, cell: np.ndarray | None, rcut: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All pairs within rcut from vesin, unsorted, with distances recomputed in our convention."""
    periodic = cell is not None
    box = cell if periodic else np.zeros((3, 3))
    search = vesin.NeighborList(cutoff=rcut + _SEARCH_MARGIN, full_list=True)
    # copy=False: views into `search`, copied by the casts below while `search` is alive.
    i, j, shifts = search.compute(
        points=positions, box=box, periodic=periodic, quantities="ijS", copy=False
    )
    i, j = i.astype(np.int32), j.astype(np.int32)  # [n_pair]
    shifts = np.array(shifts, dtype=np.int32).reshape(-1, 3)  # [n_pair, 3]
    del search
    # np.take gathers rows several times faster than fancy indexing on large arrays.
    vectors = np.take(positions, j, axis=0)  # [n_pair, 3]
    vectors -= np.take(positions, i, axis=0)
    if periodic and shifts.size:
        vectors += _shift_vectors(shifts, cell)
    distances = np.sqrt(np.einsum("ex,ex->e", vectors, vectors))  # [n_pair]
    # The center itself at zero shift is the only pair allowed at distance 0 and is dropped.
    zero = distances == 0.0
    keep = distances <= rcut
    if np.any(zero):
        z = np.flatnonzero(zero)
        is_self = (i[z] == j[z]) & ~np.any(shifts[z] != 0, axis=1)
        if not np.all(is_self):
            e = int(z[~is_self][0])
            raise DataError(
                f"positions: atoms {i[e]} and {j[e]} (image {shifts[e].tolist()}) coincide "
                "(distance 0); duplicated atoms make the descriptor infinite"
            )
        keep[z] = False
    if not np.all(keep):
        i, j, shifts, distances = i[keep], j[keep], shifts[keep], distances[keep]
    return i, j, shifts, distances


def _shift_vectors(shifts: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """shifts @ cell, [n_pair, 3], looked up in a table of the few distinct shifts.

    Millions of rows through a (3 x 3) matmul are several times slower than this lookup.
    """
    low = int(shifts.min())
    width = int(shifts.max()) - low + 1
    if width**3 > shifts.shape[0]:
        return shifts.astype(np.float64) @ cell
    code = ((shifts[:, 0] - low) * width + (shifts[:, 1] - low)) * width + (shifts[:, 2] - low)
    grid = np.arange(low, low + width, dtype=np.float64)
    table = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3) @ cell
    return np.take(table, code, axis=0)  # [n_pair, 3]


def _sort_order(
    centers: np.ndarray,
    distances: np.ndarray,
    neighbors: np.ndarray,
    shifts: np.ndarray,
    rcut: float,
) -> np.ndarray:
    """Permutation sorting edges by (center, distance, neighbor, shift), exactly.

    One float argsort on `center * 2 rcut + distance` does almost all the work: rounding is
    monotone, so this key orders centers exactly and distances up to ties of the rounded key.
    Only runs of equal keys (exact ties, or distances within one ulp of the key) are then
    re-sorted on the full key, which is cheaper than a lexsort of everything.
    """
    key = centers * (2.0 * rcut) + distances  # [n_edge]
    order = np.argsort(key)
    sorted_key = key[order]
    tie = sorted_key[1:] == sorted_key[:-1]  # [n_edge - 1]
    if np.any(tie):
        in_run = np.flatnonzero(np.concatenate([tie, [False]]) | np.concatenate([[False], tie]))
        sub = order[in_run]
        sub_order = np.lexsort(
            (
                shifts[sub, 2],
                shifts[sub, 1],
                shifts[sub, 0],
                neighbors[sub],
                distances[sub],
                centers[sub],
            )
        )
        order[in_run] = sub[sub_order]
    return order


def _warn_sel_overflow(max_neighbors: int, n_over: int, sel: int, rcut: float) -> None:
    """Warns, once per process, that some centers lost their farthest neighbors to `sel`."""
    global _sel_warning_issued
    logger.debug("%d centers have more than sel=%d neighbors (max %d)", n_over, sel, max_neighbors)
    if _sel_warning_issued:
        return
    _sel_warning_issued = True
    warnings.warn(
        f"{n_over} atoms have more than sel={sel} neighbors within rcut={rcut} A (max seen "
        f"{max_neighbors}); only the {sel} nearest are kept, as DeePMD-kit does. Raise sel if "
        "this is not intended. (Warned once per process.)",
        stacklevel=3,
    )


def _check_positions(positions: np.ndarray) -> np.ndarray:
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise DataError(f"positions: expected shape [n_atoms, 3], got {positions.shape}")
    bad = ~np.all(np.isfinite(positions), axis=1)
    if np.any(bad):
        raise DataError(
            f"positions: {int(bad.sum())} atoms have NaN or infinite coordinates "
            f"(first: atom {int(np.flatnonzero(bad)[0])})"
        )
    return positions


def _check_cell(cell: np.ndarray | None) -> np.ndarray | None:
    if cell is None:
        return None
    cell = np.ascontiguousarray(cell, dtype=np.float64)
    if cell.shape == (9,):
        cell = cell.reshape(3, 3)
    if cell.shape != (3, 3):
        raise DataError(f"cell: expected shape [3, 3] (rows are lattice vectors), got {cell.shape}")
    if not np.all(np.isfinite(cell)):
        raise DataError(f"cell: contains NaN or infinite values: {cell.tolist()}")
    lengths = np.linalg.norm(cell, axis=1)
    volume = abs(np.linalg.det(cell))
    if np.any(lengths == 0.0) or volume <= 1e-10 * np.prod(lengths):
        raise DataError(
            f"cell: singular (volume {volume:.3g} A^3, rows {cell.tolist()}); "
            "pass cell=None for a non-periodic system"
        )
    return cell


def _check_cutoff(rcut: float, sel: int) -> None:
    if not (np.isfinite(rcut) and rcut > 0):
        raise ConfigError(f"rcut: expected a positive cutoff in Angstrom, got {rcut!r}")
    if isinstance(sel, bool) or not isinstance(sel, (int, np.integer)) or sel <= 0:
        raise ConfigError(f"sel: expected a positive integer, got {sel!r}")


def min_neighbor_distance(frames: Iterable[tuple], rcut: float) -> float:
    """The closest pair distance [Angstrom] over the frames (DeePMD's ``min_nbor_dist``, from
    ``dp neighbor-stat``), periodic images included; pairs farther than ``rcut`` are not seen.

    Args:
      frames: (coords [na, 3] Angstrom, atom_types [na], cell [3, 3] (rows the lattice
        vectors) or None) per frame.
    """
    best = np.inf
    for coords, _, cell in frames:
        nl = neighbor_list(np.asarray(coords, np.float64), cell, rcut, EVERY_NEIGHBOR)
        if nl.n_edge:
            best = min(best, float(nl.distances.min()))
    if not np.isfinite(best):
        raise DataError(f"min_neighbor_distance: no pair of atoms within rcut={rcut} A")
    return best
