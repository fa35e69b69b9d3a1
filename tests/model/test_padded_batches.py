"""Padded batches in dpa2_jax/model (derivatives.py, potential.py): padding changes nothing.

Frames of different sizes (periodic cubic and triclinic cells, a non-periodic cluster and the
C3H3O4 molecule) batched and padded give, frame by frame, what each frame gives alone, padded or
not; the values stored in padding nodes, edges and graphs are ignored; ``Potential.evaluate``
matches the model and does not depend on ``atoms_per_batch``, and a second call with the same
shapes does not recompile. (Named test_padded_batches.py: tests/graph/test_padding.py holds the
module name test_padding.) Helpers come from model_helpers.py.
"""

import numpy as np
import pytest

from dpa2_jax.graph import (
    batch_graphs,
    edge_mask,
    graph_mask,
    neighbor_list,
    node_mask,
    pad_graph,
)
from dpa2_jax.model.compiled import n_compiled
from dpa2_jax.descriptor.dpa2.repformers import replays_g2
from dpa2_jax.model.potential import Potential

from model_helpers import (
    HEAD,
    MOLECULE,
    PAD,
    TYPE_MAP,
    evaluate,
    run_model,
    graph_of,
    random_params,
    random_positions,
    split,
    tiny_config,
)


KEYS = ("energy", "forces", "virial", "stress", "atom_energy")


def assert_same(a, b, keys=KEYS, tol=1e-12):
    for key in keys:
        np.testing.assert_allclose(a[key], b[key], rtol=tol, atol=tol, err_msg=key)


@pytest.fixture(scope="session")
def params(cfg):
    return random_params(cfg, seed=3)


POT_CELL = np.eye(3) * 5.6


@pytest.fixture(scope="session")
def pot_frames():
    """Five rattled copies of 16 atoms in a 5.6 A cubic cell: coords [5, 16, 3], types [16].

    Sized so that Potential(atoms_per_batch=80) pads them to PAD (5 frames + 1, 96 nodes, about
    1840 edges -> 2048): that compilation is shared with the other tests.
    """
    rng = np.random.default_rng(1)
    pos = random_positions(16, POT_CELL, 1.0, rng)
    types = rng.integers(0, len(TYPE_MAP), 16)
    coords = pos + rng.normal(0.0, 0.01, (5, 16, 3))
    return coords, types


@pytest.fixture(scope="session")
def frames(cfg, pot_frames):
    """Frames of 20, 12, 10, 7 and 16 atoms: periodic and not, cubic and triclinic."""
    rng = np.random.default_rng(4)
    cubic = np.eye(3) * 6.2
    triclinic = np.array([[5.4, 0.0, 0.0], [1.3, 5.2, 0.0], [-0.9, 1.1, 5.3]])
    out = [
        (random_positions(20, cubic, 0.9, rng), rng.integers(0, 4, 20), cubic),
        (random_positions(12, triclinic, 0.9, rng), rng.integers(0, 4, 12), triclinic),
    ]
    symbols = (MOLECULE / "type_map.raw").read_text().split()
    types = np.array(
        [TYPE_MAP.index(symbols[t]) for t in np.loadtxt(MOLECULE / "type.raw", dtype=int)]
    )
    pos = np.load(MOLECULE / "set.000" / "coord.npy")[0].reshape(-1, 3).astype(np.float64)
    out.append((pos, types, None))
    out.append((random_positions(7, None, 0.9, rng, box=3.5), rng.integers(0, 4, 7), None))
    coords, types = pot_frames
    out.append((coords[0], types, POT_CELL))
    ri, rf = cfg.descriptor.repinit, cfg.descriptor.repformer
    for pos, _, cell in out:
        for rcut, sel in ((ri.rcut, ri.nsel), (rf.rcut, rf.nsel)):
            assert neighbor_list(pos, cell, rcut, 10**6).max_neighbors <= sel
    return out


@pytest.fixture(scope="session")
def batched(params, cfg, frames):
    return evaluate(params, cfg, frames)


# -- the model on padded batches ----------------------------------------------------------------


def test_batch_matches_single_frames(params, cfg, frames, batched):
    for k, frame in enumerate(frames):
        (alone,) = evaluate(params, cfg, [frame])
        assert_same(batched[k], alone)


def test_unpadded_frame_matches_batch(params, cfg, frames, batched):
    """The molecule as a bare one-graph GraphsTuple (no padding node, no padding graph)."""
    frame = frames[2]
    graph = graph_of(cfg, frame)
    assert graph.n_node.tolist() == [len(frame[0])]
    (alone,) = split(run_model(params, cfg, graph), [frame])
    assert_same(batched[2], alone)


def test_batch_order_does_not_matter(params, cfg, frames, batched):
    order = [3, 0, 4, 2, 1]
    for k, out in zip(order, evaluate(params, cfg, [frames[k] for k in order]), strict=True):
        assert_same(batched[k], out)


def test_padding_values_are_ignored(params, cfg, frames, batched):
    """Random positions and species on padding nodes, random shifts and endpoints (among the
    padding nodes) on padding edges, and random cells on padding graphs change nothing."""
    batch = pad_graph(batch_graphs([graph_of(cfg, f) for f in frames]), *PAD)
    rng = np.random.default_rng(5)
    pad_nodes = ~np.asarray(node_mask(batch))
    pad_edges = ~np.asarray(edge_mask(batch))
    pad_graphs = ~np.asarray(graph_mask(batch))
    nodes = {k: v.copy() for k, v in batch.nodes.items()}
    nodes["positions"][pad_nodes] = rng.uniform(-3.0, 3.0, (pad_nodes.sum(), 3))
    nodes["species"][pad_nodes] = rng.integers(0, 4, pad_nodes.sum())
    edges = {k: v.copy() for k, v in batch.edges.items()}
    edges["shifts"][pad_edges] = rng.integers(-1, 2, (pad_edges.sum(), 3))
    senders, receivers = batch.senders.copy(), batch.receivers.copy()
    first_pad = int(np.flatnonzero(pad_nodes)[0])
    senders[pad_edges] = rng.integers(first_pad, PAD[0], pad_edges.sum())
    receivers[pad_edges] = rng.integers(first_pad, PAD[0], pad_edges.sum())
    globals_ = {k: v.copy() for k, v in batch.globals.items()}
    globals_["cell"][pad_graphs] = np.eye(3) * 3.0 + rng.uniform(
        -0.5, 0.5, (pad_graphs.sum(), 3, 3)
    )
    noisy = batch._replace(
        nodes=nodes, edges=edges, senders=senders, receivers=receivers, globals=globals_
    )
    for k, out in enumerate(split(run_model(params, cfg, noisy), frames)):
        assert_same(batched[k], out)


def test_outputs_are_finite_everywhere(params, cfg, frames):
    """Padding entries are meaningless but finite, so masked losses and their gradients stay so."""
    batch = pad_graph(batch_graphs([graph_of(cfg, f) for f in frames[:2]]), *PAD)
    out = run_model(params, cfg, batch)
    for key, value in out.items():
        assert np.all(np.isfinite(np.asarray(value))), key


# -- Potential.evaluate -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pot80(cfg, params):
    return Potential(cfg, params, atoms_per_batch=80)


@pytest.fixture(scope="session")
def pot16(cfg, params):
    return Potential(cfg, params, atoms_per_batch=16)


def test_potential_matches_model(params, cfg, pot80, pot_frames):
    coords, types = pot_frames
    out = pot80.evaluate(coords, POT_CELL, types)
    assert out["energy"].shape == (5,) and out["forces"].shape == (5, 16, 3)
    assert out["virial"].shape == (5, 3, 3) and out["atom_energy"].shape == (5, 16)
    direct = evaluate(params, cfg, [(c, types, POT_CELL) for c in coords])
    for k in range(5):
        assert_same({key: out[key][k] for key in KEYS}, direct[k])


def test_atoms_per_batch_does_not_change_results(pot80, pot16, pot_frames):
    coords, types = pot_frames
    a = pot80.evaluate(coords, POT_CELL, types)
    b = pot16.evaluate(coords, POT_CELL, types)
    assert_same(a, b)


def test_node_chunks_do_not_change_results(cfg, params, pot80, pot_frames):
    """96 padded nodes in 14 chunks of 7 (two padded rows; nn/chunking.py, the repformer
    layers kept chunked between layers) give the unchunked numbers."""
    coords, types = pot_frames
    chunked = Potential(cfg, params, atoms_per_batch=80, node_chunk=7)
    assert_same(pot80.evaluate(coords, POT_CELL, types), chunked.evaluate(coords, POT_CELL, types))


def test_node_chunks_with_replayed_g2(pot_frames):
    """Without g1 x g1 and pair-attention updates the chunked repformer layers replay g2 from
    the environment instead of carrying it (``replays_g2``; the tiny config carries it, see
    above): three layers in chunks of 7 give the unchunked numbers."""
    rf = "descriptor.repformer"
    off = ("update_g2_has_g1g1", "update_g2_has_attn", "update_h2")
    cfg = tiny_config(overrides={f"{rf}.nlayers": 3, **{f"{rf}.{k}": False for k in off}})
    assert replays_g2(cfg.descriptor.repformer)
    assert not replays_g2(tiny_config().descriptor.repformer)
    params = random_params(cfg, seed=6)
    coords, types = pot_frames
    whole = Potential(cfg, params, atoms_per_batch=16).evaluate(coords[:1], POT_CELL, types)
    chunked = Potential(cfg, params, atoms_per_batch=16, node_chunk=7)
    assert_same(whole, chunked.evaluate(coords[:1], POT_CELL, types))


def test_same_shapes_do_not_recompile(pot16, pot_frames):
    coords, types = pot_frames
    first = pot16.evaluate(coords, POT_CELL, types)
    shapes, compiled = pot16.padder.n_shapes, n_compiled()
    shift = np.array([0.3, -0.7, 1.1])  # same neighbor lists, so the same padded shapes
    second = pot16.evaluate(coords[::-1] + shift, np.tile(POT_CELL.reshape(1, 9), (5, 1)), types)
    assert pot16.padder.n_shapes == shapes
    assert n_compiled() == compiled
    assert_same({k: v[::-1] for k, v in first.items()}, second, tol=1e-10)


def test_single_frame_and_element_symbols(pot16, pot_frames):
    coords, types = pot_frames
    batch = pot16.evaluate(coords, POT_CELL, types)
    single = pot16.evaluate(coords[2], POT_CELL, [TYPE_MAP[t] for t in types], head=HEAD)
    assert single["energy"].shape == (1,) and single["forces"].shape == (1, 16, 3)
    assert_same({k: v[2:3] for k, v in batch.items()}, single)
