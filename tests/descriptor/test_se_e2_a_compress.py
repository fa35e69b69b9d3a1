"""descriptor/se_e2_a/tabulate.py: the quintic tables match the nets at every knot, the table's
range covers the data, inputs beyond the table continue linearly, and a compressed model gives
the plain model's energies and forces (tiny nets, water frames)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpa2_jax.data import read_npy_system
from dpa2_jax.descriptor.env_mat import switch_function
from dpa2_jax.descriptor.se_e2_a.tabulate import (
    compress,
    build_tables,
    knots,
    net_derivatives,
    table_range,
    tabulated_embedding,
)
from dpa2_jax.graph.neighbors import min_neighbor_distance, neighbor_list
from dpa2_jax.io.deepmd_config import model_config
from dpa2_jax.model.potential import Potential
from dpa2_jax.model.statistics import apply_statistics, compute_statistics
from tests.conftest import SYSTEMS, random_params

WATER = SYSTEMS / "water" / "data_0"
# Compressed vs plain, stride 0.01, 2 frames of 192 atoms: measured max |dE| 0 (below one ulp),
# max |dF| 7e-13 eV/A (type_one_side) and 3e-13 eV/A (per type pair); asserted with margin:
ENERGY_ATOL, FORCE_ATOL = 1e-9, 1e-9


def _section(type_one_side: bool) -> dict:
    return {
        "type_map": ["O", "H"],
        "descriptor": {"type": "se_e2_a", "sel": [12, 24], "rcut": 4.0, "rcut_smth": 0.5,
                       "neuron": [4, 8], "axis_neuron": 4, "type_one_side": type_one_side},
        "fitting_net": {"neuron": [16, 16], "resnet_dt": True},
    }  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def x64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(scope="module")
def water():
    return read_npy_system(WATER, type_map=["O", "H"]).select_frames(slice(0, 2))


def _model(water, type_one_side: bool):
    """(config, params) with random nets and the data's own statistics."""
    cfg = model_config(_section(type_one_side))
    params = random_params(cfg, seed=1)
    return cfg, apply_statistics(params, cfg, compute_statistics(cfg, [water], max_frames=2))


def _frames(system):
    return [(system.coords[f], system.atom_types, system.cells[f]) for f in range(system.nframes)]


@pytest.mark.parametrize("type_one_side", [True, False])
def test_compressed_model_matches_plain(water, type_one_side):
    cfg, params = _model(water, type_one_side)
    min_dist = min_neighbor_distance(_frames(water), cfg.descriptor.rcut)
    compressed = {**params, "descriptor": compress(params["descriptor"], cfg.descriptor, min_dist)}
    assert len(compressed["descriptor"]["block"]["tables"]) == cfg.descriptor.n_embeddings
    plain = Potential(cfg, params).evaluate(water.coords, water.cells, water.atom_types)
    tab = Potential(cfg, compressed).evaluate(water.coords, water.cells, water.atom_types)
    de = np.abs(tab["energy"] - plain["energy"]).max()
    df = np.abs(tab["forces"] - plain["forces"]).max()
    print(f"type_one_side={type_one_side}: max |dE| {de:.2e} eV, max |dF| {df:.2e} eV/A")
    assert de < ENERGY_ATOL and df < FORCE_ATOL
    np.testing.assert_allclose(tab["virial"], plain["virial"], atol=1e-8)
    assert np.abs(plain["forces"]).max() > 1e-2  # the forces are not trivially zero
    # the tables are what the compressed model reads: a coarse one (stride 0.5) shows
    coarse = {**params, "descriptor": compress(params["descriptor"], cfg.descriptor, min_dist, 0.5)}
    rough = Potential(cfg, coarse).evaluate(water.coords, water.cells, water.atom_types)
    assert np.abs(rough["forces"] - plain["forces"]).max() > 100 * df


def test_polynomial_matches_net_at_interval_ends():
    """Value and slope to 1e-12, curvature to 1e-10 (it divides rounding by stride^2), at the
    left and right end of every interval of both strides."""
    cfg = model_config(_section(True))
    params = random_params(cfg, seed=2)["descriptor"]
    desc = cfg.descriptor
    for table, layers in zip(
        build_tables(params, desc, -1.0, 2.0), params["block"]["embeddings"], strict=True
    ):
        x = knots(table["grid"])
        assert np.allclose(np.diff(x)[[0, -1]], [0.01, 0.1])  # both strides present
        assert x[-1] >= 5 * 2.0 - 1e-12  # the table reaches extrapolate * upper
        y, d1, d2 = net_derivatives(layers, desc.activation_function, x)
        c, h = table["coef"], np.diff(x)[:, None, None] ** np.arange(6)  # [n, 1, 6] h^k
        k = np.arange(6)
        at_end = [(c * h).sum(-1), (k * c * h / np.diff(x)[:, None, None]).sum(-1)]
        at_end.append((k * (k - 1) * c * h / np.diff(x)[:, None, None] ** 2).sum(-1))
        for ours, net, atol in zip(at_end, (y, d1, d2), (1e-12, 1e-12, 1e-10)):  # right ends
            np.testing.assert_allclose(ours, net[1:], rtol=0, atol=atol)
        np.testing.assert_array_equal(c[..., 0], y[:-1])  # left ends: the coefficients
        np.testing.assert_array_equal(c[..., 1], d1[:-1])
        np.testing.assert_allclose(2 * c[..., 2], d2[:-1], rtol=0, atol=1e-15)
        # and through the jitted evaluation at the knots, with its gradient
        g = jax.jit(tabulated_embedding)(table, jnp.asarray(x))
        np.testing.assert_allclose(g, y, rtol=0, atol=1e-12)
        slope = jax.vmap(jax.jacfwd(lambda s: tabulated_embedding(table, s)))(jnp.asarray(x[1:-1]))
        np.testing.assert_allclose(slope, d1[1:-1], rtol=0, atol=1e-12)


def test_between_knots_and_beyond_the_table():
    """Between knots: the net to 1e-9; outside [lower, extrapolate * upper]: the end's value
    plus its slope times the distance (DeePMD-kit 3.2.0's C1 extrapolation)."""
    cfg = model_config(_section(True))
    params = random_params(cfg, seed=3)["descriptor"]
    desc = cfg.descriptor
    table = build_tables(params, desc, -1.0, 2.0)[0]
    layers = params["block"]["embeddings"][0]
    lower, top = table["grid"][0], table["grid"][2]

    def tab(s):
        return tabulated_embedding(table, s)

    s = jnp.linspace(lower, top, 4001)
    net = net_derivatives(layers, desc.activation_function, np.asarray(s))
    np.testing.assert_allclose(tab(s), net[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(jax.vmap(jax.jacfwd(tab))(s), net[1], rtol=0, atol=1e-7)
    for end, far in ((lower, lower - 3.0), (top, top + 7.0)):
        value, slope = tab(jnp.asarray(end)), jax.jacfwd(tab)(jnp.asarray(end))
        np.testing.assert_allclose(tab(jnp.asarray(far)), value + slope * (far - end), atol=1e-12)
        np.testing.assert_allclose(jax.jacfwd(tab)(jnp.asarray(far)), slope, atol=1e-12)


def test_table_range_covers_the_data(water):
    """Every s~ of the data (neighbors and empty slots) lies in [lower, upper], and the range
    is DeePMD's: integers, lower = floor(-davg/dstd) for the (single) center type's net."""
    cfg, params = _model(water, type_one_side=False)
    desc, block = cfg.descriptor, params["descriptor"]["block"]
    min_dist = min_neighbor_distance(_frames(water), desc.rcut)
    lower, upper = table_range(block, desc, min_dist)
    assert np.array_equal(lower, np.floor(lower)) and np.array_equal(upper, np.ceil(upper))
    for coords, types, cell in _frames(water):
        nl = neighbor_list(coords, cell, desc.rcut, desc.sel)
        assert nl.distances.min() >= min_dist
        center = types[nl.centers]
        s = switch_function(nl.distances, desc.rcut_smth, desc.rcut) / nl.distances
        for t in range(desc.ntypes):
            davg, dstd = block["davg"][t, 0, 0], block["dstd"][t, 0, 0]
            s_norm = (np.r_[s[center == t], 0.0] - davg) / dstd  # 0: an empty slot
            for net in (t, t + desc.ntypes):  # the nets of center type t
                assert lower[net] <= s_norm.min() and s_norm.max() <= upper[net]
                assert lower[net] == np.floor(-davg / dstd)


def test_cli_compress_writes_a_loadable_model(water, tmp_path):
    """`dpa2-jax compress MODEL OUT --data SYSTEM`: OUT loads with dpa2_jax.load, carries the
    tables, and evaluates as the plain model; bad arguments are errors, not tracebacks."""
    import dpa2_jax
    from dpa2_jax.cli.main import main
    from dpa2_jax.io.checkpoints import save_model

    cfg, params = _model(water, type_one_side=True)
    save_model(tmp_path / "plain", cfg, jax.tree.map(np.asarray, params))
    out = tmp_path / "compressed"
    assert main(["compress", str(tmp_path / "plain"), str(out), "--data", str(WATER)]) == 0
    pot = dpa2_jax.load(out)
    assert len(pot.params["descriptor"]["block"]["tables"]) == 2
    plain = dpa2_jax.load(tmp_path / "plain")
    a = pot.evaluate(water.coords[:1], water.cells[:1], water.atom_types)
    b = plain.evaluate(water.coords[:1], water.cells[:1], water.atom_types)
    np.testing.assert_allclose(a["forces"], b["forces"], rtol=0, atol=FORCE_ATOL)
    assert main(["compress", str(tmp_path / "plain"), str(tmp_path / "x")]) == 2  # no range
