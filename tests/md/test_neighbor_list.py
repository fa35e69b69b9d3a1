"""md/neighbor_list.py: the chunked Dense list holds exactly JAX-MD's pairs (cell and
single-slab layouts, orthorhombic and triclinic boxes, fractional and real coordinates, after
allocation and after a jitted update), rebuilds only past half the skin, and flags overflow
(too many neighbors, a too-full cell, a box shrunk below the cells) so that a new allocation
fixes it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax_md")

import jax
import jax.numpy as jnp
from jax_md import partition, space

from dpa2_jax.md import box_from_cell
from dpa2_jax.md.neighbor_list import cells_per_side, lean_neighbor_list

from test_jax_md import _sheared, water  # noqa: F401  (fixture)

pytestmark = pytest.mark.filterwarnings(
    "ignore:scatter inputs have incompatible types:FutureWarning"
)
SKIN = 0.5


def _pairs(nbr, n_atoms: int) -> list[set[int]]:
    idx = np.asarray(nbr.idx)
    return [set(row[row < n_atoms].tolist()) for row in idx]


def _lists(x, cell, cutoff: float, fractional: bool, chunk: int = 64):
    """(R, box, JAX-MD's list, ours) of positions x [N, 3] A in ``cell``."""
    box = box_from_cell(cell)
    R = np.mod(x @ np.linalg.inv(cell), 1.0)
    R = jnp.asarray(R if fractional else R @ cell)
    displacement, _ = space.periodic_general(box, fractional_coordinates=fractional)
    theirs = partition.neighbor_list(displacement, box, cutoff, SKIN,
                                     fractional_coordinates=fractional).allocate(R)  # fmt: skip
    ours = lean_neighbor_list(box, cutoff, SKIN, fractional_coordinates=fractional,
                              chunk=chunk).allocate(R)  # fmt: skip
    return R, box, theirs, ours


@pytest.mark.parametrize(
    "cutoff, slabs, shape, fractional",
    [(3.0, 3, "orthorhombic", True), (3.0, 3, "triclinic", False), (4.0, 1, "triclinic", True)],
)
def test_same_pairs_as_jax_md(water, cutoff, slabs, shape, fractional):  # noqa: F811
    x, _, cell = water if shape == "orthorhombic" else _sheared(water)
    assert cells_per_side(box_from_cell(cell), cutoff + SKIN) == (slabs,) * 3
    R, box, theirs, ours = _lists(x, cell, cutoff, fractional)
    n = len(x)
    assert ours.format is partition.NeighborListFormat.Dense and not ours.did_buffer_overflow
    assert ours.max_occupancy == theirs.max_occupancy
    assert _pairs(ours, n) == _pairs(theirs, n)
    step = 0.02 * (1.0 if fractional else np.linalg.norm(cell, axis=1).mean())  # about 0.25 A
    moved = R + step * jax.random.normal(jax.random.key(0), R.shape)  # past SKIN / 2 for some
    update = jax.jit(lambda R, nbr: nbr.update(R))
    ours2, theirs2 = update(moved, ours), update(moved, theirs)
    assert not ours2.did_buffer_overflow
    assert _pairs(ours2, n) == _pairs(theirs2, n) != _pairs(ours, n)


def test_rebuilds_only_past_half_the_skin(water):  # noqa: F811
    x, _, cell = water
    R, _, _, ours = _lists(x, cell, 3.0, True)
    side = cell[0, 0]
    small = R.at[0, 0].add(0.2 * SKIN / side)  # 0.1 A: kept
    kept = jax.jit(lambda R, nbr: nbr.update(R))(small, ours)
    np.testing.assert_array_equal(kept.reference_position, R)
    large = R.at[0, 0].add(0.6 * SKIN / side)  # 0.3 A: rebuilt
    rebuilt = jax.jit(lambda R, nbr: nbr.update(R))(large, ours)
    np.testing.assert_array_equal(rebuilt.reference_position, large)


def test_overflow_is_flagged_and_reallocation_fixes_it(water):  # noqa: F811
    x, _, cell = water
    R, box, _, ours = _lists(x, cell, 3.0, True)
    dense = 0.5 + 0.8 * (R - 0.5)  # the same atoms in 80 % of the box's width: crowded
    nbr = jax.jit(lambda R, nbr: nbr.update(R))(dense, ours)
    assert nbr.did_buffer_overflow
    fns = lean_neighbor_list(box, 3.0, SKIN)
    again = fns.allocate(dense)
    assert not again.did_buffer_overflow and again.max_occupancy > ours.max_occupancy
    shrunk = jax.jit(lambda R, nbr, b: nbr.update(R, box=b))(R, ours, jnp.asarray(box) * 0.8)  # cells 3.3 A
    assert shrunk.did_buffer_overflow and shrunk.cell_size_too_small
    assert not fns.allocate(R, box=box * 0.8).did_buffer_overflow
