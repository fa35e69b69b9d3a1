"""JAX-MD front end (md/jax_md.py): the same energies, forces (``quantity.force``) and stresses
(``quantity.stress``) as ``Potential.evaluate`` to 1e-10 in float64, for a molecule in free space,
192-atom water in its orthorhombic box and in a sheared (triclinic) box, every neighbor-list
format; overflow and too-small cells give errors or NaN, never wrong numbers; NVE conserves
energy inside one compiled ``fori_loop``; a compact descriptor layout gives the full layout's
numbers (``evaluate``'s, 1e-10), and NaN once an atom has more neighbors than it lays out.

Model: tests/reference/base.dp (DeePMD-kit's tiny DPA-2, rcut 4 A, sel 30: on water frame 0
ten atoms have more than 30 neighbors, so the nearest-``sel`` truncation is exercised).
"""

from __future__ import annotations

import pathlib
from functools import partial
import warnings

import numpy as np
import pytest

pytest.importorskip("jax_md")

import jax
import jax.numpy as jnp
from jax_md import partition, quantity, simulate, space

import dpa2_jax
from dpa2_jax.descriptor import Layout, family_of
from dpa2_jax.md import box_from_cell, energy_fn, neighbor_fn
from dpa2_jax.md.jax_md import md_layout

REFERENCE = pathlib.Path(__file__).resolve().parents[1] / "reference"
TOL = {"rtol": 1e-10, "atol": 1e-10}
# JAX-MD 0.2.29's own neighbor-list code scatters int64 into int32 under x64
pytestmark = pytest.mark.filterwarnings(
    "ignore:scatter inputs have incompatible types:FutureWarning"
)


@pytest.fixture(scope="module")
def pot():
    with warnings.catch_warnings():  # the x64 notice of dpa2_jax.load
        warnings.simplefilter("ignore", UserWarning)
        return dpa2_jax.load(REFERENCE / "base.dp")


@pytest.fixture(scope="module")
def molecule():
    d = np.load(REFERENCE / "base__molecule.npz")
    return d["coords"][0], d["atom_types"]


@pytest.fixture(scope="module")
def water():
    d = np.load(REFERENCE / "base__water.npz")
    return d["coords"][0], d["atom_types"], d["cells"][0]


def _sheared(water):
    """Water frame 0 mapped by its fractional coordinates into a sheared, triclinic cell."""
    x, types, cell = water
    frac = np.mod(x @ np.linalg.inv(cell), 1.0)
    side = cell[0, 0]
    tri = np.array([[side, 0.0, 0.0], [2.0, side, 0.0], [-1.5, 1.0, side]])
    return frac @ tri, types, tri


def _efs(E):
    """(energy, forces, stress) of E, jitted once (stress needs the box as a keyword)."""

    @jax.jit
    def efs(R, nbr, box):
        return (
            E(R, neighbor=nbr),
            quantity.force(E)(R, neighbor=nbr),
            quantity.stress(E, R, box, neighbor=nbr),
        )

    return efs


def _check(pot, x, types, cell, energy, forces, stress=None):
    ref = pot.evaluate(x, cell, types)
    np.testing.assert_allclose(float(energy), ref["energy"][0], **TOL)
    np.testing.assert_allclose(np.asarray(forces), ref["forces"][0], **TOL)
    if stress is not None:  # JAX-MD's stress is -dE/d(strain) / V = virial / V = -ASE stress
        np.testing.assert_allclose(np.asarray(stress), -ref["stress"][0], **TOL)


@pytest.mark.parametrize(
    "fmt",
    # Sparse and no list at all take the same edge path as OrderedSparse and Dense
    ["Dense", "OrderedSparse"]
    + [pytest.param(f, marks=pytest.mark.slow) for f in ("Sparse", None)],
)
def test_molecule_free_space(pot, molecule, fmt):
    x, types = molecule
    E = energy_fn(pot, types)
    nbr = (
        None
        if fmt is None
        else neighbor_fn(pot, format=partition.NeighborListFormat[fmt]).allocate(x)
    )
    e, f = jax.jit(lambda R, nbr: (E(R, neighbor=nbr), quantity.force(E)(R, neighbor=nbr)))(x, nbr)
    _check(pot, x, types, None, e, f)


@pytest.mark.slow
def test_water_orthorhombic_fractional(pot, water):
    x, types, cell = water
    box = box_from_cell(cell)
    R = np.mod(x @ np.linalg.inv(cell), 1.0)
    nbr = neighbor_fn(pot, box).allocate(R)
    assert nbr.format is partition.NeighborListFormat.Dense and not nbr.did_buffer_overflow
    E = energy_fn(pot, [pot.type_map[t] for t in types], box)  # element symbols work too
    _check(pot, x, types, cell, *_efs(E)(R, nbr, box))
    # the nearest-sel truncation is exercised: some atom has more than sel neighbors
    assert int(np.max(np.sum(np.asarray(nbr.idx) < len(types), axis=1))) > pot.config.descriptor.sel


def test_triclinic_fractional(pot, water):
    x, types, cell = _sheared(water)
    box = box_from_cell(cell)
    R = np.mod(x @ np.linalg.inv(cell), 1.0)
    nbr = neighbor_fn(pot, box).allocate(R)
    _check(pot, x, types, cell, *_efs(energy_fn(pot, types, box))(R, nbr, box))


def test_triclinic_real_coordinates_ordered_sparse(pot, water):
    x, types, cell = _sheared(water)
    box = box_from_cell(cell)
    fmt = partition.NeighborListFormat.OrderedSparse
    nbr = neighbor_fn(pot, box, fractional_coordinates=False, format=fmt).allocate(x)
    E = energy_fn(pot, types, box, fractional_coordinates=False)
    _check(pot, x, types, cell, *_efs(E)(x, nbr, box))


def test_sparse_with_fractional_coordinates_is_refused(pot, water):
    box = box_from_cell(water[2])
    with pytest.raises(ValueError, match="fractional_coordinates"):
        neighbor_fn(pot, box, format=partition.NeighborListFormat.Sparse)


def test_small_cell_is_refused(pot):
    d = np.load(REFERENCE / "base__small_cell.npz")  # 7.3 A triclinic cell, rcut 4 A
    box = box_from_cell(d["cells"][0])
    with pytest.raises(ValueError, match="twice the cutoff"):
        energy_fn(pot, d["atom_types"], box)
    with pytest.raises(ValueError, match="twice the cutoff"):
        neighbor_fn(pot, box)


def test_box_too_small_inside_jit_gives_nan(pot, molecule):
    x, types = molecule
    box = jnp.eye(3) * 20.0
    R = (x - x.min(0)) / 20.0 + 0.1
    E = energy_fn(pot, types, box)
    f = jax.jit(lambda R, box: E(R, box=box))  # all pairs
    assert np.isfinite(float(f(R, box)))
    assert np.isnan(float(f(R, box * 0.35)))  # 7 A < 2 rcut


def test_overflow_is_flagged_and_reallocation_fixes_it(pot, molecule):
    x, types = molecule
    nbr_fn = neighbor_fn(pot, capacity_multiplier=1.0)
    x_spread = x * 2.0  # fewer neighbors within rcut: a small list
    nbr = nbr_fn.allocate(x_spread)
    E = jax.jit(energy_fn(pot, types))
    nbr = nbr.update(x)  # the compact molecule needs more capacity
    assert bool(nbr.did_buffer_overflow)
    assert np.isnan(float(E(x, neighbor=nbr)))  # never a silently wrong energy
    nbr = nbr_fn.allocate(x)
    assert not bool(nbr.did_buffer_overflow)
    np.testing.assert_allclose(
        float(E(x, neighbor=nbr)), pot.evaluate(x, None, types)["energy"][0], **TOL
    )


def test_nve_conserves_energy_without_recompiling(pot, water):
    x, types, cell = water
    box = box_from_cell(cell)
    R = jnp.asarray(np.mod(x @ np.linalg.inv(cell), 1.0))  # a jax array: one jit signature
    _, shift = space.periodic_general(box)
    nbr_fn = neighbor_fn(pot, box, dr_threshold=0.1)
    E = energy_fn(pot, types, box)
    masses = jnp.asarray(np.array([12.011, 1.008, 14.007, 15.999])[types])  # amu, [N]
    dt = 0.02  # Angstrom sqrt(amu / eV) = 10.18 fs: 0.2 fs
    init_fn, apply_fn = simulate.nve(E, shift, dt)
    nbr = nbr_fn.allocate(R)
    state = init_fn(jax.random.PRNGKey(0), R, kT=0.025, mass=masses, neighbor=nbr)

    @jax.jit
    def run(state, nbr, n_steps):
        def step(i, carry):
            state, nbr = carry
            nbr = nbr.update(state.position)
            return apply_fn(state, neighbor=nbr), nbr

        state, nbr = jax.lax.fori_loop(0, n_steps, step, (state, nbr))
        kinetic = quantity.kinetic_energy(momentum=state.momentum, mass=state.mass)
        return state, nbr, E(state.position, neighbor=nbr) + kinetic

    state, nbr, e0 = run(state, nbr, 0)
    for _ in range(2):  # 2 x 10 steps
        new_state, new_nbr, e1 = run(state, nbr, 10)
        # JAX-MD's loop: on overflow, reallocate (nbr_fn.allocate(state.position)) and redo
        assert not bool(new_nbr.did_buffer_overflow)
        state, nbr = new_state, new_nbr
    assert run._cache_size() == 1  # no recompilation across calls (nor steps: one fori_loop)
    assert np.isfinite(float(e1))
    assert abs(float(e1) - float(e0)) < 1e-4 * len(types)  # eV; 1.1e-4 eV in all seen
    assert float(jnp.max(jnp.abs(state.position - R))) > 0  # the atoms moved


def _most_neighbors(pot, x, types, cell, rcut):
    """The most neighbors any atom has within rcut (host side, as ``Potential`` counts)."""
    from dpa2_jax.graph import batch_graphs, frame_to_graph
    from dpa2_jax.model.layout import max_neighbors

    d = pot.config.descriptor
    return max_neighbors([batch_graphs([frame_to_graph(x, types, cell, d.rcut, d.sel)])], rcut)


def _energy_and_grad(E):
    """(energy, dE/dR) of E with the box as an argument, jitted once per list capacity."""
    return jax.jit(lambda R, nbr, box: jax.value_and_grad(partial(E, neighbor=nbr, box=box))(R))


def test_compact_layout_equals_full_and_too_few_slots_give_nan(pot, water):
    x, types, cell = water
    x, cell = x * 1.25, cell * 1.25  # expanded water: fewer three-body neighbors than sel
    box, dense = box_from_cell(cell), box_from_cell(cell / 1.25)  # and the original box
    R = np.mod(x @ np.linalg.inv(cell), 1.0)
    nbr_dense = neighbor_fn(pot, dense).allocate(R)
    nbr = neighbor_fn(pot, box).allocate(R)
    nbr = neighbor_fn(pot, box).allocate(
        R, extra_capacity=nbr_dense.idx.shape[1] - nbr.idx.shape[1]
    )
    assert nbr.idx.shape == nbr_dense.idx.shape  # one compilation serves both boxes
    three, repformer, repinit = family_of(pot.config.descriptor).compactable_blocks(
        pot.params["descriptor"], pot.config.descriptor
    )
    assert three.exact and repinit.exact  # base.dp: the repformer block does not compact
    n3 = _most_neighbors(pot, x, types, cell, three.rcut)
    assert n3 < three.sel
    compact = Layout(slots=(n3, repformer.sel, repinit.sel))
    assert md_layout(pot, types, R, box, margin=0.0).slots[0] >= n3  # rounded up, capped
    compact_fn = _energy_and_grad(energy_fn(pot, types, box, layout=compact))
    energy, grad = compact_fn(R, nbr, box)
    _check(pot, x, types, cell, energy, -grad)  # JAX-MD's convention: -dE/dR is in eV/A
    # the denser box brings more neighbors within the three-body cutoff than laid out
    assert _most_neighbors(pot, x / 1.25, types, cell / 1.25, three.rcut) > n3
    energy, grad = compact_fn(R, nbr_dense, dense)
    assert np.isnan(float(energy))  # never a silently wrong energy
    assert np.all(np.isnan(np.asarray(grad)))  # nor wrong forces
    grown = md_layout(pot, types, R, dense, at_least=compact.slots)
    assert grown.slots[0] > n3
    energy, grad = _energy_and_grad(energy_fn(pot, types, dense, layout=grown))(R, nbr_dense, dense)
    _check(pot, x / 1.25, types, cell / 1.25, energy, -grad)
