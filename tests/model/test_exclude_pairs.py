"""Model-level pair exclusion on the slots: holes close up in distance order, nothing backfills."""

import jax.numpy as jnp
import numpy as np
import pytest

from dpa2_jax.graph import fields, frame_to_graph
from dpa2_jax.model.energy import exclude_pairs


def _slots_of_center(graph, slot, center):
    """{neighbor node: slot} of the center's edges."""
    rows = np.asarray(graph.receivers) == center
    return dict(zip(np.asarray(graph.senders)[rows].tolist(), np.asarray(slot)[rows].tolist()))


@pytest.mark.filterwarnings("ignore:.*more than sel")
def test_kept_neighbors_move_up_over_the_holes():
    # center 0 (type 0) with neighbors 1..5 on a line at 1..5 A, types 1, 0, 1, 0, 0
    positions = np.array([[float(i), 0.0, 0.0] for i in range(6)])
    species = np.array([0, 1, 0, 1, 0, 0])
    graph = frame_to_graph(positions, species, None, rcut=5.5, sel=4)
    before = _slots_of_center(graph, fields.slots(graph), 0)
    assert [before.get(j, -1) for j in range(1, 6)] == [0, 1, 2, 3, -1]

    slot = exclude_pairs(graph, jnp.asarray(species), ((1, 0),), sel=4)
    after = _slots_of_center(graph, slot, 0)
    # 1 and 3 (type 1) are dropped; 2 and 4 move up to slots 0, 1; 5 (beyond sel) stays out
    assert [after.get(j, -1) for j in range(1, 6)] == [-1, 0, -1, 1, -1]
    # a center of type 1 loses its type-0 neighbors the same way (both orders excluded)
    assert all(s == -1 or species[j] == 1 for j, s in _slots_of_center(graph, slot, 1).items())
    assert slot.dtype == fields.slots(graph).dtype


def test_kept_edges_are_ranked_among_the_kept():
    rng = np.random.default_rng(0)
    positions = rng.uniform(0, 4, (12, 3))
    species = rng.integers(0, 4, 12)
    graph = frame_to_graph(positions, species, None, rcut=3.0, sel=5)
    slot = exclude_pairs(graph, jnp.asarray(species), ((0, 1), (2, 2)), sel=5)
    ti, tj = species[graph.receivers], species[graph.senders]
    kept = ~(((ti == 0) & (tj == 1)) | ((ti == 1) & (tj == 0)) | ((ti == 2) & (tj == 2)))
    original = np.asarray(fields.slots(graph))
    assert np.any(~kept & (original >= 0))  # some excluded edges were listed
    # per center, the kept edges' new slots are their ranks among the kept edges
    for c in range(12):
        rows = (np.asarray(graph.receivers) == c) & kept & (original >= 0)
        order = np.argsort(original[rows])
        assert np.asarray(slot)[rows][order].tolist() == list(range(rows.sum()))


def test_slots_ranked_on_the_device_give_the_same_exclusion():
    """JAX-MD's path (edges unsorted, ranked in jit by select_slots) excludes the same way."""
    from dpa2_jax.graph import BucketPadder
    from dpa2_jax.graph.slots import select_slots

    rng = np.random.default_rng(1)
    positions = rng.uniform(0, 4, (12, 3))
    species = rng.integers(0, 4, 12)
    graph = frame_to_graph(positions, species, None, rcut=3.0, sel=5)
    pairs = ((0, 1), (2, 2))
    host = np.asarray(exclude_pairs(graph, jnp.asarray(species), pairs, sel=5))
    order = rng.permutation(len(graph.senders))
    shuffled = graph._replace(
        senders=graph.senders[order],
        receivers=graph.receivers[order],
        edges={"shifts": graph.edges["shifts"][order], "slot": np.full(len(order), -7, np.int32)},
    )
    padded = BucketPadder()(shuffled)  # select_slots reads jraph's padding
    ranked = select_slots(padded, fields.positions(padded), fields.cells(padded), 3.0, 5)
    device = exclude_pairs(padded, jnp.asarray(fields.species(padded)), pairs, 5, ranked)
    np.testing.assert_array_equal(np.asarray(device)[: len(order)], host[order])
    assert np.any(host == -1) and np.any(host >= 0)
