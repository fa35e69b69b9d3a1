"""Tests of dpa2_jax/graph/graph.py: the GraphsTuple built from frames, systems and batches."""

import pathlib
import types

import numpy as np
import pytest

from dpa2_jax.errors import DataError
from dpa2_jax.graph import batch_graphs, frame_to_graph, neighbor_list, system_to_graphs

WATER = pathlib.Path(__file__).parents[1] / "systems" / "water" / "data_0"
RCUT, SEL = 6.0, 120


@pytest.fixture(scope="module")
def water():
    """Two frames of the bundled water system, read with numpy."""
    s = WATER / "set.000"
    return types.SimpleNamespace(
        type_map=["O", "H"],
        atom_types=np.loadtxt(WATER / "type.raw", dtype=int),
        coords=np.load(s / "coord.npy")[:2].reshape(2, -1, 3),
        cells=np.load(s / "box.npy")[:2].reshape(2, 3, 3),
        energies=np.load(s / "energy.npy")[:2],
        forces=np.load(s / "force.npy")[:2].reshape(2, -1, 3),
        virials=None,
    )


def edge_vectors(graph):
    """r_ij = positions[senders] - positions[receivers] + shifts @ cell of the edge's graph."""
    graph_of_edge = np.repeat(np.arange(len(graph.n_edge)), graph.n_edge)
    cell = graph.globals["cell"][graph_of_edge]  # [n_edge, 3, 3]
    positions = graph.nodes["positions"]
    shift = np.einsum("ek,ekx->ex", graph.edges["shifts"], cell)
    return positions[graph.senders] - positions[graph.receivers] + shift


def test_frame_to_graph_fields(water):
    positions, cell = water.coords[0], water.cells[0]
    graph = frame_to_graph(
        positions,
        water.atom_types,
        cell,
        RCUT,
        SEL,
        energy=water.energies[0],
        forces=water.forces[0],
    )
    n_node, n_edge = 192, int(graph.n_edge[0])
    assert graph.n_node.tolist() == [n_node] and graph.n_node.dtype == np.int32
    assert graph.n_edge.dtype == np.int32 and n_edge == len(graph.senders)
    assert graph.nodes["positions"].shape == (n_node, 3)
    assert graph.nodes["species"].dtype == np.int32
    np.testing.assert_array_equal(graph.nodes["species"], water.atom_types)
    np.testing.assert_array_equal(graph.nodes["forces"], water.forces[0])
    assert graph.edges["shifts"].shape == (n_edge, 3) and graph.edges["shifts"].dtype == np.float64
    assert graph.edges["slot"].dtype == graph.senders.dtype == graph.receivers.dtype == np.int32
    assert graph.globals["cell"].shape == (1, 3, 3)
    np.testing.assert_array_equal(graph.globals["cell"][0], cell)
    assert graph.globals["energy"].tolist() == [water.energies[0]]
    assert graph.globals["virial"].shape == (1, 3, 3) and not graph.globals["virial"].any()
    flags = [graph.globals[k].tolist() for k in ("has_energy", "has_forces", "has_virial")]
    assert flags == [[1.0], [1.0], [0.0]]

    # receivers are centers, senders neighbors, and r_ij is neighbor minus center
    nlist = neighbor_list(positions, cell, RCUT, SEL)
    np.testing.assert_array_equal(graph.receivers, nlist.centers)
    np.testing.assert_array_equal(graph.senders, nlist.neighbors)
    np.testing.assert_array_equal(graph.edges["slot"], nlist.slot)
    np.testing.assert_allclose(
        np.linalg.norm(edge_vectors(graph), axis=1), nlist.distances, rtol=1e-13
    )


def test_non_periodic_frame_and_float32():
    rng = np.random.default_rng(0)
    positions = rng.uniform(0.0, 6.0, (10, 3))
    graph = frame_to_graph(positions, np.zeros(10, int), None, 4.0, 20, dtype=np.float32)
    assert graph.nodes["positions"].dtype == graph.edges["shifts"].dtype == np.float32
    assert graph.globals["cell"].dtype == graph.globals["has_energy"].dtype == np.float32
    assert not graph.globals["cell"].any() and not graph.edges["shifts"].any()
    assert not graph.nodes["forces"].any() and graph.globals["has_forces"].tolist() == [0.0]


def test_system_to_graphs(water):
    graphs = system_to_graphs(water, RCUT, SEL)
    assert len(graphs) == 2
    for f, graph in enumerate(graphs):
        np.testing.assert_array_equal(graph.nodes["positions"], water.coords[f])
        assert graph.globals["energy"][0] == water.energies[f]
        assert graph.globals["has_virial"][0] == 0.0
    virials = np.arange(18.0).reshape(2, 3, 3)
    labelled = types.SimpleNamespace(**{**vars(water), "virials": virials, "cells": None})
    graph = system_to_graphs(labelled, 4.0, 48)[1]
    np.testing.assert_array_equal(graph.globals["virial"][0], virials[1])
    assert graph.globals["has_virial"][0] == 1.0 and not graph.globals["cell"].any()


def test_batch_graphs_offsets_node_indices(water):
    graphs = system_to_graphs(water, RCUT, SEL)
    small = frame_to_graph(np.zeros((1, 3)), [1], 5.0 * np.eye(3), RCUT, SEL)
    batch = batch_graphs([graphs[0], small, graphs[1]])
    assert batch.n_node.tolist() == [192, 1, 192]
    assert batch.n_edge.tolist() == [graphs[0].n_edge[0], 6, graphs[1].n_edge[0]]
    for name in ("senders", "receivers", "n_node", "n_edge"):
        assert getattr(batch, name).dtype == np.int32, name
    assert batch.globals["cell"].shape == (3, 3, 3)
    np.testing.assert_array_equal(
        batch.receivers[-graphs[1].n_edge[0] :], graphs[1].receivers + 193
    )
    # every edge vector, computed with its own graph's cell, stays within the cutoff
    distances = np.linalg.norm(edge_vectors(batch), axis=1)
    assert np.all(distances <= RCUT) and np.all(distances > 0)


def test_bad_frames_raise_data_error():
    with pytest.raises(DataError, match="at least one atom"):
        frame_to_graph(np.zeros((0, 3)), np.zeros(0, int), None, 4.0, 10)
    with pytest.raises(DataError, match="species"):
        frame_to_graph(np.zeros((2, 3)) + [[0, 0, 0], [1, 0, 0]], [0], None, 4.0, 10)
    with pytest.raises(DataError, match="forces"):
        frame_to_graph(np.eye(3), [0, 0, 1], None, 4.0, 10, forces=np.zeros((2, 3)))
    with pytest.raises(DataError, match="positions"):
        frame_to_graph(np.full((2, 3), np.nan), [0, 1], None, 4.0, 10)


@pytest.mark.parametrize("name", ["water_virial_384", "cho_molecules/C1H4O2"])
def test_system_to_graphs_on_read_systems(name):
    """With the package's own npy reader (skipped while dpa2_jax.data is unavailable)."""
    try:
        from dpa2_jax.data import read_npy_system
    except ImportError as error:
        pytest.skip(f"dpa2_jax.data not importable: {error}")
    system = read_npy_system(WATER.parents[1] / name)
    graph = batch_graphs(system_to_graphs(system, 4.0, 48)[:3])
    assert graph.n_node.tolist() == [len(system.atom_types)] * 3
    periodic = system.cells is not None
    assert bool(graph.globals["cell"].any()) == periodic
    assert graph.globals["has_virial"].tolist() == [float(system.virials is not None)] * 3
    assert np.all(np.linalg.norm(edge_vectors(graph), axis=1) <= 4.0)
