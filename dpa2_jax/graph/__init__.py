"""Frames -> neighbor lists -> padded `jraph.GraphsTuple` batches (host side, numpy)."""

from dpa2_jax.graph.batching import iterate_batches, stack_batches
from dpa2_jax.graph.graph import batch_graphs, frame_to_graph, system_to_graphs
from dpa2_jax.graph.neighbors import NeighborList, neighbor_list
from dpa2_jax.graph.padding import (
    BucketPadder,
    bucket_size,
    edge_mask,
    graph_mask,
    node_mask,
    pad_graph,
)

__all__ = [
    "BucketPadder",
    "NeighborList",
    "batch_graphs",
    "bucket_size",
    "edge_mask",
    "frame_to_graph",
    "graph_mask",
    "iterate_batches",
    "neighbor_list",
    "node_mask",
    "pad_graph",
    "stack_batches",
    "system_to_graphs",
]
