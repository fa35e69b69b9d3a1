"""Tests of dpa2_jax/graph/padding.py and dpa2_jax/graph/batching.py."""

import logging
import pathlib

import jax
import numpy as np
import pytest

from dpa2_jax.errors import NeighborOverflowError
from dpa2_jax.graph import (
    BucketPadder,
    batch_graphs,
    bucket_size,
    edge_mask,
    frame_to_graph,
    graph_mask,
    iterate_batches,
    node_mask,
    pad_graph,
    stack_batches,
)

WATER = pathlib.Path(__file__).parents[1] / "systems" / "water" / "data_0"


def random_graph(seed, n_atoms=None, periodic=True):
    rng = np.random.default_rng(seed)
    n = n_atoms or int(rng.integers(3, 12))
    cell = np.diag(rng.uniform(5.0, 7.0, 3)) if periodic else None
    positions = rng.uniform(0.0, 5.0, (n, 3))
    return frame_to_graph(
        positions,
        rng.integers(0, 3, n),
        cell,
        rcut=4.0,
        sel=200,
        energy=float(seed),
        forces=rng.normal(size=(n, 3)),
    )


# -- bucket sizes -------------------------------------------------------------------------------


def test_bucket_size_grid_and_overhead():
    assert [bucket_size(x) for x in range(1, 11)] == [1, 2, 3, 4, 5, 6, 7, 8, 10, 10]
    assert bucket_size(17000) == 20480 and bucket_size(0) == 1
    assert bucket_size(17000, mantissa_bits=2) == 24576
    sizes = np.array([bucket_size(x) for x in range(1, 100_000)])
    xs = np.arange(1, 100_000)
    assert np.all(sizes >= xs) and np.all(np.diff(sizes) >= 0)
    assert np.all(sizes < 1.25 * xs + 1)
    assert len(np.unique(sizes)) <= 4 * 17 + 8  # four sizes per doubling
    assert all(bucket_size(s) == s for s in np.unique(sizes))  # buckets are fixed points


# -- padding -------------------------------------------------------------------------------------


def test_pad_graph_keeps_fields_and_marks_padding():
    graph = batch_graphs([random_graph(0), random_graph(1, periodic=False)])
    n_node, n_edge = int(graph.n_node.sum()), int(graph.n_edge.sum())
    padded = pad_graph(graph, n_node=n_node + 5, n_edge=n_edge + 7, n_graph=4)
    assert padded.n_node.tolist() == graph.n_node.tolist() + [5, 0]
    assert padded.n_edge.tolist() == graph.n_edge.tolist() + [7, 0]
    for name in ("senders", "receivers", "n_node", "n_edge"):
        assert getattr(padded, name).dtype == np.int32, name
    # the real part is unchanged
    for group in ("nodes", "edges", "globals"):
        for key, value in getattr(graph, group).items():
            padded_value = getattr(padded, group)[key]
            assert padded_value.dtype == value.dtype, key
            np.testing.assert_array_equal(padded_value[: len(value)], value)
    np.testing.assert_array_equal(padded.senders[:n_edge], graph.senders)
    # padding: zeros, slot -1, flags 0, edges on padding nodes
    assert np.all(padded.edges["slot"][n_edge:] == -1)
    assert not padded.edges["shifts"][n_edge:].any()
    assert not padded.nodes["positions"][n_node:].any()
    assert not padded.nodes["species"][n_node:].any()
    for key in ("cell", "energy", "virial", "has_energy", "has_forces", "has_virial"):
        assert not padded.globals[key][2:].any(), key
    assert np.all(padded.senders[n_edge:] >= n_node) and np.all(padded.receivers[n_edge:] >= n_node)
    # masks, eagerly and under jit
    masks = (node_mask(padded), edge_mask(padded), graph_mask(padded))
    jitted = jax.jit(lambda g: (node_mask(g), edge_mask(g), graph_mask(g)))(padded)
    for mask, mask_jit, n_real in zip(masks, jitted, (n_node, n_edge, 2)):
        np.testing.assert_array_equal(mask, mask_jit)
        assert mask.sum() == n_real and np.all(mask[:n_real])
    np.testing.assert_array_equal(masks[1], padded.edges["slot"] >= 0)


def test_pad_graph_overflow():
    graph = random_graph(2)
    n_node, n_edge = int(graph.n_node[0]), int(graph.n_edge[0])
    pad_graph(graph, n_node + 1, n_edge, 2)  # exactly fits
    for sizes in [(n_node, n_edge, 2), (n_node + 1, n_edge - 1, 2), (n_node + 1, n_edge, 1)]:
        with pytest.raises(NeighborOverflowError, match="does not fit"):
            pad_graph(graph, *sizes)


def test_bucket_padder_counts_shapes(caplog):
    padder = BucketPadder()
    with caplog.at_level(logging.INFO, logger="dpa2_jax.graph.padding"):
        first = padder(random_graph(3, n_atoms=8))
        padder(random_graph(3, n_atoms=8))
    assert padder.n_shapes == 1 and len(caplog.records) == 1
    assert first.nodes["positions"].shape[0] == bucket_size(9)
    assert first.senders.shape[0] == bucket_size(int(random_graph(3, n_atoms=8).n_edge[0]))
    padder(random_graph(4, n_atoms=60))
    assert padder.n_shapes == 2


def test_water_frames_share_one_shape():
    """Edge counts vary from frame to frame (16,800 to 17,300 here) but land in one bucket."""
    box = np.load(WATER / "set.000" / "box.npy")[:20].reshape(-1, 3, 3)
    coords = np.load(WATER / "set.000" / "coord.npy")[:20].reshape(20, -1, 3)
    species = np.loadtxt(WATER / "type.raw", dtype=int)
    padder = BucketPadder()
    n_edges = set()
    for positions, cell in zip(coords, box):
        graph = frame_to_graph(positions, species, cell, rcut=6.0, sel=120)
        n_edges.add(int(graph.n_edge[0]))
        padder(graph)
    assert len(n_edges) > 10 and padder.n_shapes == 1


# -- batching ------------------------------------------------------------------------------------


def test_iterate_batches_covers_every_graph_once():
    graphs = [random_graph(seed) for seed in range(7)]
    padder = BucketPadder()
    batches = list(iterate_batches(graphs, batch_size=3, padder=padder))
    assert len(batches) == 3
    energies = []
    for batch in batches:
        assert batch.n_node.shape == (4,)  # batch_size + 1 graphs, last batch included
        real = np.asarray(graph_mask(batch))
        energies += batch.globals["energy"][real].tolist()
    assert energies == [float(s) for s in range(7)]
    assert len(list(iterate_batches(graphs, 3, padder, drop_remainder=True))) == 2


def test_iterate_batches_shuffle_is_reproducible():
    graphs = [random_graph(seed) for seed in range(6)]

    def order(rng):
        batches = iterate_batches(graphs, 2, BucketPadder(), shuffle=True, rng=rng)
        return [e for b in batches for e in b.globals["energy"][np.asarray(graph_mask(b))]]

    assert order(1) == order(1) and sorted(order(1)) == [float(s) for s in range(6)]
    assert any(order(seed) != [float(s) for s in range(6)] for seed in range(5))


def test_stack_batches():
    graphs = [random_graph(seed, n_atoms=6) for seed in range(4)]
    batches = [pad_graph(batch_graphs(graphs[k : k + 2]), 32, 512, 3) for k in (0, 2)]
    stacked = stack_batches(batches)
    assert stacked.nodes["positions"].shape == (2, 32, 3)
    assert stacked.senders.shape == (2, 512) and stacked.globals["cell"].shape == (2, 3, 3, 3)
    np.testing.assert_array_equal(stacked.edges["slot"][1], batches[1].edges["slot"])
    with pytest.raises(ValueError, match="same sizes"):
        stack_batches([batches[0], pad_graph(batch_graphs(graphs[:2]), 32, 256, 3)])



def test_dataset_pads_atoms_to_the_most_a_shared_shape_needs():
    """Systems sharing a bucketed shape pad their atoms to the most any of them has plus one,
    not to the bucket (fewer padding atoms, as many compilations)."""
    import types

    from dpa2_jax.data.npy_system import read_npy_system
    from dpa2_jax.graph.dataset import Dataset, tighten_nodes
    from tests.conftest import SYSTEMS

    water = [read_npy_system(SYSTEMS / "water" / f"data_{i}") for i in (0, 1)]
    data = Dataset(water, 4.0, 40, batch_size=1)
    assert {s.shape[0] for s in data.systems} == {max(w.natoms for w in water) + 1}

    def fake(natoms, batch_size, shape):
        system = types.SimpleNamespace(natoms=natoms)
        return types.SimpleNamespace(system=system, batch_size=batch_size, shape=shape)

    shared, alone = (32, 512, 3), (64, 512, 3)
    systems = [fake(13, 2, shared), fake(14, 2, shared), fake(40, 1, alone)]
    tighten_nodes(systems)
    assert [s.shape for s in systems] == [(29, 512, 3), (29, 512, 3), (41, 512, 3)]
