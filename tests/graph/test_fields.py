"""Tests of dpa2_jax/graph/fields.py: the schema's mappings agree on the host (numpy) and in a
trace (JAX), and the edge vectors are the ones the neighbor search measured."""

import jax
import jax.numpy as jnp
import numpy as np

from dpa2_jax.data import read_npy_system
from dpa2_jax.graph import batch_graphs, fields, pad_graph, system_to_graphs
from tests.conftest import SYSTEMS


def _batch():
    """Two water frames and a C/H/O molecule (no cell) in one batch, padded."""
    water = read_npy_system(SYSTEMS / "water" / "data_0").select_frames(slice(0, 2))
    molecule = read_npy_system(sorted((SYSTEMS / "cho_molecules").iterdir())[0])
    graphs = system_to_graphs(water, 4.0, 40) + system_to_graphs(molecule.select_frames(0), 4.0, 40)
    batch = batch_graphs(graphs)
    n_node, n_edge = int(batch.n_node.sum()), int(batch.n_edge.sum())
    return batch, pad_graph(batch, n_node + 5, n_edge + 7, len(graphs) + 1)


def test_host_and_traced_mappings_agree(enable_x64):
    batch, padded = _batch()
    host = fields.edge_vectors(padded)
    traced = jax.jit(fields.edge_vectors)(jax.tree.map(jnp.asarray, padded))
    np.testing.assert_allclose(np.asarray(traced), host, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(
        np.asarray(jax.jit(fields.node_graph)(jax.tree.map(jnp.asarray, padded))),
        fields.node_graph(padded),
    )
    ones = np.ones(fields.positions(padded).shape[0])
    np.testing.assert_array_equal(np.asarray(fields.graph_sum(padded, ones)), padded.n_node)


def test_edge_vectors_are_within_the_cutoff_and_labels_are_read_with_their_flags():
    batch, _ = _batch()
    distances = np.linalg.norm(fields.edge_vectors(batch), axis=-1)
    assert 0 < distances.min() and distances.max() <= 4.0
    energy, present = fields.label(batch, "energy")
    assert energy.shape == present.shape == (3,) and np.all(present == 1)
    assert fields.fparam(batch) is None and fields.aparam(batch) is None
