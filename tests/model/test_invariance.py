"""Symmetries of dpa2_jax/model (energy.py, derivatives.py) on the tiny config.

Translations, rotations, permutations of atoms, periodic images, equivalent triclinic cells and
supercells must leave the energy unchanged (or scale it), and move forces and virials covariantly.
The model is configs/tiny.py with the type map C, H, N, O (so that the C3H3O4 molecule and the
periodic cells share one model and one compilation), random weights, and non-trivial statistics
(davg, dstd) and energy biases.
"""

import numpy as np
import pytest


from model_helpers import (
    MOLECULE,
    check_sel,
    evaluate,
    random_params,
    random_positions,
)


TOL = dict(rtol=1e-10, atol=1e-10)


# -- fixtures -----------------------------------------------------------------------------------


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.fixture(scope="session")
def params(cfg):
    return random_params(cfg, seed=0)


@pytest.fixture(scope="session")
def params_zero_davg(cfg):
    return random_params(cfg, seed=0, zero_block_davg=True)


CUBIC = np.eye(3) * 6.2
TRICLINIC = np.array([[6.4, 0.0, 0.0], [1.5, 6.1, 0.0], [-1.0, 1.2, 6.2]])


def periodic_frame(cfg, cell, n, seed):
    rng = np.random.default_rng(seed)
    pos = random_positions(n, cell, 0.9, rng)
    types = rng.integers(0, len(cfg.type_map), n)
    types[:4] = [3, 1, 0, 2]  # every type present
    check_sel(cfg, pos, cell)
    return pos, types, cell


@pytest.fixture(scope="session")
def cubic(cfg):
    return periodic_frame(cfg, CUBIC, 20, seed=0)


@pytest.fixture(scope="session")
def triclinic(cfg):
    return periodic_frame(cfg, TRICLINIC, 16, seed=0)


@pytest.fixture(scope="session")
def molecule(cfg):
    """First frame of C3H3O4 (non-periodic, 10 atoms), types mapped to the model's."""
    symbols = (MOLECULE / "type_map.raw").read_text().split()
    types = np.loadtxt(MOLECULE / "type.raw", dtype=int)
    types = np.array([cfg.type_map.index(symbols[t]) for t in types])
    pos = np.load(MOLECULE / "set.000" / "coord.npy")[0].reshape(-1, 3).astype(np.float64)
    check_sel(cfg, pos, None)
    return pos, types, None


def assert_same(a, b, keys=("energy", "forces", "virial", "atom_energy")):
    for key in keys:
        np.testing.assert_allclose(a[key], b[key], **TOL, err_msg=key)


# -- sanity -------------------------------------------------------------------------------------


def test_outputs_are_not_trivial(params, cfg, cubic, triclinic):
    for frame in (cubic, triclinic):
        (out,) = evaluate(params, cfg, [frame])
        assert np.all(np.isfinite(out["forces"]))
        assert np.abs(out["forces"]).max() > 1e-2
        assert np.abs(out["virial"]).max() > 1e-2
        assert np.ptp(out["atom_energy"]) > 1e-2


# -- translation --------------------------------------------------------------------------------


@pytest.mark.parametrize("system", ["cubic", "triclinic"])
def test_translation_periodic(params, cfg, system, request):
    pos, types, cell = request.getfixturevalue(system)
    shift = np.array([0.37, -1.21, 2.9])
    a, b = evaluate(params, cfg, [(pos, types, cell), (pos + shift, types, cell)])
    assert_same(a, b)


def test_translation_molecule(params, cfg, molecule):
    pos, types, _ = molecule
    a, b = evaluate(
        params,
        cfg,
        [molecule, (pos + np.array([10.0, -3.0, 0.5]), types, None)],
    )
    assert_same(a, b)


# -- rotation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("system", ["cubic", "triclinic"])
def test_rotation_periodic(params, cfg, system, request):
    pos, types, cell = request.getfixturevalue(system)
    rot = random_rotation(np.random.default_rng(3))
    a, b = evaluate(params, cfg, [(pos, types, cell), (pos @ rot.T, types, cell @ rot.T)])
    np.testing.assert_allclose(b["energy"], a["energy"], **TOL)
    np.testing.assert_allclose(b["atom_energy"], a["atom_energy"], **TOL)
    np.testing.assert_allclose(b["forces"], a["forces"] @ rot.T, **TOL)
    np.testing.assert_allclose(b["virial"], rot @ a["virial"] @ rot.T, **TOL)
    np.testing.assert_allclose(b["stress"], rot @ a["stress"] @ rot.T, **TOL)


def test_rotation_molecule(params, cfg, molecule):
    pos, types, _ = molecule
    rot = random_rotation(np.random.default_rng(4))
    a, b = evaluate(params, cfg, [molecule, (pos @ rot.T, types, None)])
    np.testing.assert_allclose(b["energy"], a["energy"], **TOL)
    np.testing.assert_allclose(b["forces"], a["forces"] @ rot.T, **TOL)
    np.testing.assert_allclose(b["virial"], rot @ a["virial"] @ rot.T, **TOL)


@pytest.mark.parametrize("system", ["cubic", "triclinic", "molecule"])
def test_virial_is_symmetric_and_net_force_zero(params, cfg, system, request):
    """Rotation invariance makes W symmetric; translation invariance makes sum F = 0."""
    (out,) = evaluate(params, cfg, [request.getfixturevalue(system)])
    np.testing.assert_allclose(out["virial"], out["virial"].T, atol=1e-10)
    np.testing.assert_allclose(out["forces"].sum(0), 0.0, atol=1e-10)


# -- permutation --------------------------------------------------------------------------------


@pytest.mark.parametrize("system", ["cubic", "triclinic"])
def test_permutation_periodic(params_zero_davg, cfg, system, request):
    pos, types, cell = request.getfixturevalue(system)
    perm = np.random.default_rng(5).permutation(len(pos))
    k = np.flatnonzero(types[perm] != types[0])[0]
    perm[[0, k]] = perm[[k, 0]]  # the first atom's type changes too
    a, b = evaluate(params_zero_davg, cfg, [(pos, types, cell), (pos[perm], types[perm], cell)])
    np.testing.assert_allclose(b["energy"], a["energy"], **TOL)
    np.testing.assert_allclose(b["forces"], a["forces"][perm], **TOL)
    np.testing.assert_allclose(b["atom_energy"], a["atom_energy"][perm], **TOL)
    np.testing.assert_allclose(b["virial"], a["virial"], **TOL)


def test_permutation_keeping_first_atom_with_all_davg(params, cfg, cubic):
    """With every davg non-zero, permutations that keep atom 0 (DeePMD's empty-slot type)."""
    pos, types, cell = cubic
    perm = np.r_[0, 1 + np.random.default_rng(6).permutation(len(pos) - 1)]
    a, b = evaluate(params, cfg, [(pos, types, cell), (pos[perm], types[perm], cell)])
    np.testing.assert_allclose(b["energy"], a["energy"], **TOL)
    np.testing.assert_allclose(b["forces"], a["forces"][perm], **TOL)
    np.testing.assert_allclose(b["virial"], a["virial"], **TOL)


def test_permutation_molecule(params_zero_davg, cfg, molecule):
    pos, types, _ = molecule
    perm = np.random.default_rng(7).permutation(len(pos))
    a, b = evaluate(params_zero_davg, cfg, [molecule, (pos[perm], types[perm], None)])
    np.testing.assert_allclose(b["energy"], a["energy"], **TOL)
    np.testing.assert_allclose(b["forces"], a["forces"][perm], **TOL)


# -- periodic images ----------------------------------------------------------------------------


@pytest.mark.parametrize("system", ["cubic", "triclinic"])
def test_periodic_images(params, cfg, system, request):
    """Atoms shifted by lattice vectors (far outside the cell) or wrapped back: nothing changes."""
    pos, types, cell = request.getfixturevalue(system)
    rng = np.random.default_rng(8)
    shifted = pos + rng.integers(-2, 3, (len(pos), 3)) @ cell
    frac = shifted @ np.linalg.inv(cell)
    wrapped = (frac - np.floor(frac)) @ cell
    one = pos.copy()
    one[3] += cell[1] - 2 * cell[2]
    outs = evaluate(params, cfg, [(p, types, cell) for p in (pos, shifted, wrapped, one)])
    for out in outs[1:]:
        assert_same(outs[0], out)


def test_molecule_in_large_box_equals_non_periodic(params, cfg, molecule):
    """A box wider than the molecule plus twice the cutoff sees no images."""
    pos, types, _ = molecule
    box = np.diag([20.0, 21.0, 22.0]) + np.array([[0, 0, 0], [3.0, 0, 0], [0, -2.0, 0]])
    a, b = evaluate(params, cfg, [molecule, (pos, types, box)])
    assert_same(a, b)


# -- triclinic cells ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "transform",
    [
        [[1, 1, 0], [0, 1, 0], [0, 0, 1]],
        [[1, 0, 0], [-1, 1, 2], [0, 0, 1]],
        [[0, 1, 0], [0, 0, 1], [1, 0, 0]],
    ],
)
def test_equivalent_cells(params, cfg, triclinic, transform):
    """The same crystal described by another basis (unimodular integer change of rows)."""
    pos, types, cell = triclinic
    transform = np.array(transform)
    assert round(abs(np.linalg.det(transform))) == 1
    a, b = evaluate(params, cfg, [(pos, types, cell), (pos, types, transform @ cell)])
    assert_same(a, b)


def test_triclinic_cell_in_general_orientation_and_lower_triangular_form(params, cfg, triclinic):
    """A triclinic cell in a general orientation and its lower-triangular (LAMMPS-style) form,
    reached by the rotation of a QR decomposition, agree."""
    pos, types, cell = triclinic
    turn = random_rotation(np.random.default_rng(9))
    pos, cell = pos @ turn.T, cell @ turn.T  # a general orientation
    q, r = np.linalg.qr(cell.T)  # cell.T = q r, so cell @ q = r.T is lower triangular
    if np.linalg.det(q) < 0:  # a proper rotation
        q, r = q * np.array([1, 1, -1]), r * np.array([1, 1, -1])[:, None]
    assert np.abs(np.triu(cell @ q, 1)).max() < 1e-12 and np.abs(np.triu(cell, 1)).max() > 0.1
    a, b = evaluate(params, cfg, [(pos, types, cell), (pos @ q, types, cell @ q)])
    np.testing.assert_allclose(b["energy"], a["energy"], **TOL)
    np.testing.assert_allclose(b["forces"], a["forces"] @ q, **TOL)
    np.testing.assert_allclose(b["virial"], q.T @ a["virial"] @ q, **TOL)


# -- supercells ---------------------------------------------------------------------------------


@pytest.mark.parametrize("system", ["cubic", "triclinic"])
@pytest.mark.parametrize("axis", [0, 2])
def test_supercell_doubles_energy(params, cfg, system, axis, request):
    pos, types, cell = request.getfixturevalue(system)
    big_pos = np.vstack([pos, pos + cell[axis]])
    big_cell = cell.copy()
    big_cell[axis] *= 2
    check_sel(cfg, big_pos, big_cell)
    a, b = evaluate(params, cfg, [(pos, types, cell), (big_pos, np.r_[types, types], big_cell)])
    np.testing.assert_allclose(b["energy"], 2 * a["energy"], **TOL)
    np.testing.assert_allclose(b["forces"], np.vstack([a["forces"], a["forces"]]), **TOL)
    np.testing.assert_allclose(b["atom_energy"], np.r_[a["atom_energy"], a["atom_energy"]], **TOL)
    np.testing.assert_allclose(b["virial"], 2 * a["virial"], **TOL)
    np.testing.assert_allclose(b["stress"], a["stress"], **TOL)
