"""Forces, virial, stress and second derivatives of dpa2_jax/model/derivatives.py.

Forces against central finite differences of the energy; the virial against finite differences
under a homogeneous strain r -> r (I + eps), cell -> cell (I + eps), with DeePMD's sign
W = -(dE/d eps)^T; stress = -W / V; a finite, symmetric Hessian.
The model is the tiny config with the type map C, H, N, O and random parameters, as in
test_invariance.py (shared helpers come from model_helpers.py).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpa2_jax.graph import frame_to_graph, pad_graph
from dpa2_jax.model import make_energy_fn

from model_helpers import (
    HEAD,
    MOLECULE,
    check_sel,
    evaluate,
    random_params,
    random_positions,
)


H = 1e-5  # finite-difference step, Angstrom (or strain)


@pytest.fixture(scope="session")
def params(cfg):
    return random_params(cfg, seed=0)


@pytest.fixture(scope="session")
def systems(cfg):
    """name -> (positions, types, cell or None): a cubic and a triclinic cell, and a molecule."""
    out = {}
    cells = {
        "cubic": np.eye(3) * 6.2,
        "triclinic": np.array([[6.4, 0, 0], [1.5, 6.1, 0], [-1.0, 1.2, 6.2]]),
    }
    for k, (name, cell) in enumerate(cells.items()):
        rng = np.random.default_rng(10 + k)
        pos = random_positions(16, cell, 0.9, rng)
        types = rng.integers(0, len(cfg.type_map), len(pos))
        check_sel(cfg, pos, cell)
        out[name] = (pos, types, cell)
    symbols = (MOLECULE / "type_map.raw").read_text().split()
    types = np.array(
        [cfg.type_map.index(symbols[t]) for t in np.loadtxt(MOLECULE / "type.raw", dtype=int)]
    )
    pos = np.load(MOLECULE / "set.000" / "coord.npy")[0].reshape(-1, 3)
    pos = pos.astype(np.float64)  # stored as float32, too coarse for finite differences
    out["molecule"] = (pos, types, None)
    return out


SYSTEMS = ["cubic", "triclinic", "molecule"]


# -- forces -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SYSTEMS)
def test_forces_match_finite_differences(params, cfg, systems, name):
    pos, types, cell = systems[name]
    (ref,) = evaluate(params, cfg, [systems[name]])
    frames = []
    for i in range(len(pos)):
        for d in range(3):
            for sign in (1, -1):
                moved = pos.copy()
                moved[i, d] += sign * H
                frames.append((moved, types, cell))
    energies = np.array([out["energy"] for out in evaluate(params, cfg, frames)]).reshape(-1, 3, 2)
    fd_forces = -(energies[..., 0] - energies[..., 1]) / (2 * H)  # [n_atom, 3]
    scale = np.abs(ref["forces"]).max()
    assert scale > 1e-2  # not a trivial model
    np.testing.assert_allclose(ref["forces"], fd_forces, rtol=0, atol=1e-6 * scale)


@pytest.mark.parametrize("name", SYSTEMS)
def test_atom_energies_sum_to_energy(params, cfg, systems, name):
    (out,) = evaluate(params, cfg, [systems[name]])
    np.testing.assert_allclose(out["atom_energy"].sum(), out["energy"], rtol=1e-13)


# -- virial and stress --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SYSTEMS)
def test_virial_matches_strain_finite_differences(params, cfg, systems, name):
    """W = -(dE/d eps)^T with r -> r (I + eps) and cell -> cell (I + eps)."""
    pos, types, cell = systems[name]
    (ref,) = evaluate(params, cfg, [systems[name]])
    frames = []
    for a in range(3):
        for b in range(3):
            for sign in (1, -1):
                deform = np.eye(3)
                deform[a, b] += sign * H
                frames.append((pos @ deform, types, None if cell is None else cell @ deform))
    energies = np.array([out["energy"] for out in evaluate(params, cfg, frames)]).reshape(3, 3, 2)
    de_deps = (energies[..., 0] - energies[..., 1]) / (2 * H)
    scale = np.abs(ref["virial"]).max()
    assert scale > 1e-2
    np.testing.assert_allclose(ref["virial"], -de_deps.T, rtol=0, atol=1e-6 * scale)


def test_virial_of_molecule_is_sum_of_force_position_products(params, cfg, systems):
    """Without a cell, W = sum_i F_i (x) r_i, and the stress is zero."""
    pos, types, _ = systems["molecule"]
    (out,) = evaluate(params, cfg, [systems["molecule"]])
    np.testing.assert_allclose(
        out["virial"], np.einsum("ia,ib->ab", out["forces"], pos), atol=1e-12
    )
    np.testing.assert_allclose(out["stress"], 0.0)


@pytest.mark.parametrize("name", ["cubic", "triclinic"])
def test_stress_is_minus_virial_over_volume(params, cfg, systems, name):
    _, _, cell = systems[name]
    (out,) = evaluate(params, cfg, [systems[name]])
    np.testing.assert_allclose(out["stress"], -out["virial"] / abs(np.linalg.det(cell)), rtol=1e-13)


def test_stress_matches_volume_derivative(params, cfg, systems):
    """Isotropic strain: dE/dV = -p with the pressure p = -tr(stress)/3 (ASE's sign)."""
    pos, types, cell = systems["triclinic"]
    (ref,) = evaluate(params, cfg, [systems["triclinic"]])
    scales = [1 + H, 1 - H]
    plus, minus = evaluate(params, cfg, [(pos * s, types, cell * s) for s in scales])
    volume = abs(np.linalg.det(cell))
    de_dv = (plus["energy"] - minus["energy"]) / (volume * (scales[0] ** 3 - scales[1] ** 3))
    pressure = -np.trace(ref["stress"]) / 3
    np.testing.assert_allclose(de_dv, -pressure, rtol=1e-6)


# -- second derivatives -------------------------------------------------------------------------


# Compiled without XLA's backend optimisations: halves the compile time of this one-off function.
@functools.partial(
    jax.jit, static_argnums=(1,), compiler_options={"xla_backend_optimization_level": 0}
)
def _hessian(params, cfg, graph):
    energy_fn = make_energy_fn(cfg, HEAD)

    def energy(positions):  # the padding graph holds no atoms, so its energy is 0
        return jnp.sum(energy_fn(params, graph, positions, graph.globals["cell"]))

    return jax.hessian(energy)(graph.nodes["positions"])


@pytest.fixture(scope="session")
def molecule_hessian(params, cfg, systems):
    """Hessian [3n, 3n] of the molecule's energy (graph padded by one node and one graph only)."""
    pos, types, _ = systems["molecule"]
    graph = frame_to_graph(pos, types, None, cfg.descriptor.rcut, cfg.descriptor.sel)
    n = len(pos)
    graph = pad_graph(graph, n + 1, int(graph.n_edge[0]), 2)
    hess = np.asarray(_hessian(params, cfg, graph))[:n, :, :n, :]
    return hess.reshape(3 * n, 3 * n)


def test_hessian_is_finite_and_symmetric(molecule_hessian):
    assert np.all(np.isfinite(molecule_hessian))
    assert np.abs(molecule_hessian).max() > 1e-2
    np.testing.assert_allclose(molecule_hessian, molecule_hessian.T, rtol=0, atol=1e-12)
    # translation invariance: every row sums to zero over the atoms, per direction
    rows = molecule_hessian.reshape(-1, len(molecule_hessian) // 3, 3).sum(axis=1)
    np.testing.assert_allclose(rows, 0.0, atol=1e-10)


def test_hessian_matches_force_finite_differences(params, cfg, systems, molecule_hessian):
    pos, types, _ = systems["molecule"]
    frames = []
    for i, d in [(0, 0), (4, 2), (9, 1)]:
        for sign in (1, -1):
            moved = pos.copy()
            moved[i, d] += sign * H
            frames.append((moved, types, None))
    outs = evaluate(params, cfg, frames)
    scale = np.abs(molecule_hessian).max()
    for k, (i, d) in enumerate([(0, 0), (4, 2), (9, 1)]):
        column = -(outs[2 * k]["forces"] - outs[2 * k + 1]["forces"]).reshape(-1) / (2 * H)
        np.testing.assert_allclose(
            molecule_hessian[:, 3 * i + d], column, rtol=0, atol=1e-6 * scale
        )
