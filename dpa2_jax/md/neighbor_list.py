"""A JAX-MD Dense neighbor list for periodic boxes, built one chunk of atoms at a time.

JAX-MD 0.2.29's cell-list list lays out every atom's candidates from its 27 neighboring cells
at once ([N, 27 x cell capacity] indices, displacements and distances): at 98,304 atoms of
water (cutoff 6.2 A) that is about 38 KB per atom inside every MD step, and allocating the
list takes 7.8 GB. This list gives the same pairs (every j != i with a minimum-image
distance below ``cutoff``, strictly) through JAX-MD's own types (``partition.NeighborList``,
``NeighborListFns``: ``allocate``, ``update``, ``nbr.update``, ``did_buffer_overflow``), but
takes the candidates of ``chunk`` atoms at a time, so memory grows by the list itself, about
0.6 KB per atom.

Cells: the box is split into n_d = floor(w_d / cutoff) slabs per lattice direction (w_d the
perpendicular width), so that a pair within the cutoff lies in neighboring cells; a direction
with fewer than three slabs gets one (all its atoms are candidates), so small boxes work too.
Atoms are sorted into a [cells, capacity] buffer (capacity: the fullest cell times the
capacity multiplier at allocation). Coordinates: fractional in [0, 1)^3 (JAX-MD's
``periodic_general`` default) or Angstrom; the box is JAX-MD's (columns are lattice vectors;
a ``box=`` keyword at update time replaces it, as NPT passes it).

Errors, as JAX-MD reports them: more neighbors than the list holds sets
NEIGHBOR_LIST_OVERFLOW; a cell fuller than its capacity, or a box shrunk so that a cell is
narrower than the cutoff, sets CELL_LIST_OVERFLOW (and CELL_SIZE_TOO_SMALL): either makes
``did_buffer_overflow`` true, and a new ``allocate`` (with the current box) fixes it. The list
is rebuilt only when an atom has moved more than ``dr_threshold / 2`` since the last build.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import partition

from dpa2_jax.nn.chunking import NodeChunks
from dpa2_jax.typing import Array

PEC = partition.PartitionErrorCode
DEFAULT_CHUNK = 1024


def _box_matrix(box) -> Array:
    """JAX-MD's box (scalar, [3] or [3, 3] with columns the lattice vectors) as [3, 3]."""
    box = jnp.asarray(box)
    if box.ndim == 0 or box.size == 1:
        return jnp.eye(3, dtype=box.dtype) * box.reshape(())
    return jnp.diag(box) if box.ndim == 1 else box


def _widths(box: np.ndarray) -> np.ndarray:
    """Perpendicular widths [3] of a [3, 3] box whose columns are the lattice vectors."""
    return 1.0 / np.linalg.norm(np.linalg.inv(box), axis=1)


def cells_per_side(box, cutoff: float) -> tuple[int, int, int]:
    """Slabs per lattice direction (host-side, concrete box): floor(w_d / cutoff), or 1 where
    that is below 3 (neighboring cells would repeat)."""
    n = np.floor(_widths(np.asarray(_box_matrix(box), np.float64)) / cutoff).astype(int)
    return tuple(int(k) if k >= 3 else 1 for k in n)


def _fractional(R, box, fractional: bool):
    """Positions in fractional coordinates, wrapped into [0, 1)."""
    u = R if fractional else R @ jnp.linalg.inv(box).T
    return jnp.mod(u, 1.0)


def _cell_of(u, grid: tuple[int, int, int]):
    """Cell index [N, 3] of fractional positions u [N, 3] in [0, 1)."""
    n = jnp.asarray(grid)
    return jnp.clip(jnp.floor(u * n).astype(jnp.int32), 0, n - 1)


def _flat(cell, grid: tuple[int, int, int]):
    """Flat cell id of cell indices [..., 3]."""
    return (cell[..., 0] * grid[1] + cell[..., 1]) * grid[2] + cell[..., 2]


def _neighbor_cells(grid: tuple[int, int, int]) -> np.ndarray:
    """The offsets [k, 3] of a cell's neighboring cells (itself included), -1..1 per direction
    with at least three cells, 0 elsewhere."""
    ranges = [(-1, 0, 1) if n >= 3 else (0,) for n in grid]
    return np.array(list(itertools.product(*ranges)), np.int32)


def _cell_buffer(u, grid, capacity: int):
    """Atoms sorted into cells: ([cells, capacity] atom indices, N where empty; whether a cell
    holds more than ``capacity`` atoms)."""
    n_atoms = u.shape[0]
    flat = _flat(_cell_of(u, grid), grid)  # [N]
    order = jnp.argsort(flat, stable=True)
    sorted_ids = flat[order]
    n_cells = int(np.prod(grid))
    start = jnp.searchsorted(sorted_ids, jnp.arange(n_cells), side="left")
    rank = jnp.arange(n_atoms) - start[sorted_ids]
    buffer = jnp.full((n_cells, capacity), n_atoms, jnp.int32)
    buffer = buffer.at[sorted_ids, rank].set(order.astype(jnp.int32), mode="drop")
    return buffer, jnp.max(rank) >= capacity


def _chunk_neighbors(atoms, u, box, buffer, grid, cutoff_sq, occupancy: int):
    """Neighbors of a chunk of atoms: ([chunk, occupancy] indices, N where empty; [chunk]
    neighbor counts). atoms: [chunk] indices (N for padding rows)."""
    n_atoms = u.shape[0]
    u_pad = jnp.concatenate([u, jnp.zeros((1, 3), u.dtype)])  # row N: padding
    ui = u_pad[atoms]  # [c, 3]
    offsets = jnp.asarray(_neighbor_cells(grid))  # [k, 3]
    cells = jnp.mod(_cell_of(ui, grid)[:, None, :] + offsets, jnp.asarray(grid))  # [c, k, 3]
    cand = buffer[_flat(cells, grid)].reshape(atoms.shape[0], -1)  # [c, k * capacity]
    du = u_pad[cand] - ui[:, None, :]
    du = jnp.mod(du + 0.5, 1.0) - 0.5  # minimum image, as JAX-MD's periodic displacement
    dr = du @ box.T
    d2 = jnp.sum(dr * dr, axis=-1)
    keep = (cand < n_atoms) & (cand != atoms[:, None]) & (d2 < cutoff_sq) & (atoms < n_atoms)[:, None]
    count = jnp.sum(keep, axis=1)
    slot = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, occupancy)
    rows = jnp.arange(atoms.shape[0])[:, None]
    idx = jnp.full((atoms.shape[0], occupancy), n_atoms, jnp.int32)
    return idx.at[rows, slot].set(cand.astype(jnp.int32), mode="drop"), count


def _all_neighbors(u, box, grid, capacity, cutoff_sq, occupancy, chunk):
    """([N, occupancy] neighbor indices, [N] counts, cell overflow) of every atom, ``chunk``
    atoms at a time."""
    n_atoms = u.shape[0]
    buffer, cell_overflow = _cell_buffer(u, grid, capacity)
    chunks = NodeChunks.of(n_atoms, chunk)
    atoms = jnp.pad(jnp.arange(n_atoms, dtype=jnp.int32), (0, chunks.count * chunks.size - n_atoms),
                    constant_values=n_atoms).reshape(chunks.count, chunks.size)  # fmt: skip

    def one(a):
        return _chunk_neighbors(a, u, box, buffer, grid, cutoff_sq, occupancy)

    idx, count = jax.lax.map(one, atoms)
    return chunks.merge(idx), chunks.merge(count), cell_overflow


def lean_neighbor_list(
    box,
    cutoff: float,
    dr_threshold: float = 0.0,
    capacity_multiplier: float = 1.25,
    *,
    fractional_coordinates: bool = True,
    chunk: int = DEFAULT_CHUNK,
) -> partition.NeighborListFns:
    """JAX-MD ``NeighborListFns`` (Dense format, self excluded) for a periodic ``box``.

    Args:
      box: JAX-MD box (scalar, [3] or upper-triangular [3, 3], columns the lattice vectors),
        concrete; every perpendicular width must exceed twice ``cutoff + dr_threshold``
        (``jax_md.neighbor_fn`` checks it).
      cutoff: the model's cutoff, Angstrom; pairs closer than cutoff + dr_threshold are listed.
      dr_threshold: JAX-MD's skin, Angstrom.
      capacity_multiplier: spare room over the allocating positions' fullest cell and most
        neighbors.
      fractional_coordinates: positions in [0, 1)^3 (True) or Angstrom.
      chunk: atoms whose candidates are laid out at once.
    """
    cutoff = float(cutoff + dr_threshold)
    threshold_sq = (dr_threshold / 2.0) ** 2
    default_box = np.asarray(_box_matrix(np.asarray(box, np.float64)))

    def build(R, box, grid, capacity, occupancy, error):
        """(idx, error) of a fresh build at R."""
        u = _fractional(R, box, fractional_coordinates)
        idx, count, cell_overflow = _all_neighbors(
            u, box, grid, capacity, cutoff * cutoff, occupancy, chunk
        )
        error = error.update(PEC.CELL_LIST_OVERFLOW, cell_overflow)
        return idx, error.update(PEC.NEIGHBOR_LIST_OVERFLOW, jnp.max(count) > occupancy)

    build_jit = jax.jit(build, static_argnums=(2, 3, 4))

    def moved_too_far(R, reference, box):
        """Whether an atom moved more than dr_threshold / 2 (minimum image) since ``reference``."""
        du = _fractional(R, box, fractional_coordinates) - _fractional(
            reference, box, fractional_coordinates
        )
        dr = (jnp.mod(du + 0.5, 1.0) - 0.5) @ box.T
        return jnp.any(jnp.sum(dr * dr, axis=-1) > threshold_sq)

    def update(R, nbrs, **kwargs):
        box = _box_matrix(kwargs.get("box", default_box)).astype(R.dtype)
        grid = tuple(int(round(1.0 / s)) for s in nbrs.cell_size)
        error = nbrs.error
        if "box" in kwargs:  # NPT: the cells must still be at least cutoff wide
            n = jnp.asarray(grid)
            widths = 1.0 / jnp.linalg.norm(jnp.linalg.inv(box), axis=1)
            narrow = jnp.any((widths / n < cutoff) & (n >= 3))
            error = error.update(PEC.CELL_SIZE_TOO_SMALL | PEC.CELL_LIST_OVERFLOW, narrow)

        def rebuild(_):
            idx, err = build(R, box, grid, nbrs.cell_list_capacity, nbrs.max_occupancy, error)
            return dataclasses.replace(nbrs, idx=idx, reference_position=R, error=err)

        if threshold_sq == 0.0:
            return rebuild(None)
        kept = dataclasses.replace(nbrs, error=error)
        far = moved_too_far(R, nbrs.reference_position, box)
        return jax.lax.cond(far, rebuild, lambda _: kept, None)

    def allocate(R, extra_capacity: int = 0, **kwargs):
        box = np.asarray(_box_matrix(np.asarray(kwargs.get("box", default_box), np.float64)))
        grid = cells_per_side(box, cutoff)
        R = jnp.asarray(R)
        box_j = jnp.asarray(box, R.dtype)
        u = _fractional(R, box_j, fractional_coordinates)
        cells = jnp.bincount(_flat(_cell_of(u, grid), grid), length=int(np.prod(grid)))
        capacity = max(1, int(int(jnp.max(cells)) * capacity_multiplier))
        counts = _count_fn(grid, capacity, cutoff, chunk)(u, box_j)
        occupancy = int(int(jnp.max(counts)) * capacity_multiplier + extra_capacity)
        occupancy = max(1, min(occupancy, R.shape[0] - 1))
        empty = partition.PartitionError(jnp.zeros((), jnp.uint8))
        idx, error = build_jit(R, box_j, grid, capacity, occupancy, empty)
        return partition.NeighborList(
            idx, R, error, capacity, occupancy, partition.NeighborListFormat.Dense,
            tuple(1.0 / n for n in grid), None, update,
        )  # fmt: skip

    return partition.NeighborListFns(allocate, update)


@functools.lru_cache(maxsize=16)
def _count_fn(grid, capacity: int, cutoff: float, chunk: int):
    """Jitted ``u, box -> [N]`` neighbor counts (for choosing the list's capacity)."""

    def count(u, box):
        return _all_neighbors(u, box, grid, capacity, cutoff * cutoff, 1, chunk)[1]

    return jax.jit(count)
