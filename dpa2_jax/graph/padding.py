"""Padding graphs to a few static sizes, so a jitted model compiles once per size.

A padded graph is a real batch followed by jraph's padding graph, which holds all padding nodes
and edges, then empty graphs (`jraph.pad_with_graphs`). Padding values: positions, forces,
species, shifts, cell and labels are zero, every `has_*` flag is 0, and padding edges have
slot = -1 (they join the first padding node to itself, so their r_ij is 0: the model must drop
them, which it does by slot < 0 or by `edge_mask`).

Bucket sizes: counts are rounded up to numbers with at most `mantissa_bits` significant binary
digits (m * 2^e with m < 2^mantissa_bits), the rule of mace-jax's
`pad_graph_to_nearest_ceil_mantissa`. With the default 3 bits the grid is 1..8, 10, 12, 14, 16,
20, 24, 28, 32, 40, ...: at most 25 % padding (about 10 % on average), and only four sizes per
doubling of the data, so recompilations stay few.
"""

import logging

import jax
import jraph
import numpy as np

from dpa2_jax.errors import NeighborOverflowError
from dpa2_jax.graph.graph import as_int32_indices

logger = logging.getLogger(__name__)


def bucket_size(x: int, mantissa_bits: int = 3) -> int:
    """Smallest number >= x with at most `mantissa_bits` significant binary digits.

    Args:
        x: the count to round up (values below 1 are treated as 1).
        mantissa_bits: significant bits kept; the size exceeds x by less than 2^(1 - bits).

    Returns:
        The bucket size, e.g. bucket_size(17000) == 20480 with 3 bits.
    """
    if mantissa_bits < 1:
        raise ValueError(f"mantissa_bits: expected >= 1, got {mantissa_bits}")
    x = max(int(x), 1)
    step = 1 << max(x.bit_length() - mantissa_bits, 0)
    return -(-x // step) * step


def pad_graph(
    graph: jraph.GraphsTuple, n_node: int, n_edge: int, n_graph: int
) -> jraph.GraphsTuple:
    """Pads a (batched) graph to exactly n_node nodes, n_edge edges and n_graph graphs.

    Args:
        graph: unpadded graph(s) with the fields of graph.py, numpy arrays.
        n_node: total nodes after padding; at least one more than the real nodes.
        n_edge: total edges after padding; at least the real edges.
        n_graph: total graphs after padding; at least one more than the real graphs.

    Returns:
        The padded graph; padding edges have slot -1 (see the module docstring).

    Raises:
        NeighborOverflowError: the graph does not fit in the requested sizes.
    """
    real_nodes, real_edges = int(np.sum(graph.n_node)), int(np.sum(graph.n_edge))
    real_graphs = int(graph.n_node.shape[0])
    if real_nodes + 1 > n_node or real_edges > n_edge or real_graphs + 1 > n_graph:
        raise NeighborOverflowError(
            f"graph of {real_nodes} nodes, {real_edges} edges and {real_graphs} graphs does not "
            f"fit padding to n_node={n_node}, n_edge={n_edge}, n_graph={n_graph} "
            "(padding needs one spare node and one spare graph)"
        )
    padded = jraph.pad_with_graphs(graph, n_node=n_node, n_edge=n_edge, n_graph=n_graph)
    slot = padded.edges["slot"].copy()  # [n_edge]; jraph pads edge features with 0
    slot[real_edges:] = -1
    return as_int32_indices(padded._replace(edges={**padded.edges, "slot": slot}))


def node_mask(graph: jraph.GraphsTuple) -> jax.Array:
    """[n_node] bool, True for real atoms of a graph padded by `pad_graph` (jit-compatible)."""
    return jraph.get_node_padding_mask(graph)


def edge_mask(graph: jraph.GraphsTuple) -> jax.Array:
    """[n_edge] bool, True for real edges (equal to slot >= 0) of a padded graph."""
    return jraph.get_edge_padding_mask(graph)


def graph_mask(graph: jraph.GraphsTuple) -> jax.Array:
    """[n_graph] bool, True for real graphs of a padded graph."""
    return jraph.get_graph_padding_mask(graph)


class BucketPadder:
    """Pads graphs to bucket sizes and counts the distinct padded shapes it has produced.

    Each distinct (n_node, n_edge, n_graph) is one compilation of a jitted model; a new one is
    logged at INFO level.

    Args:
        mantissa_bits: grid of `bucket_size`.
        n_graph: fixed number of graphs after padding (real + padding); None rounds the real
            count plus one up to a bucket.
    """

    def __init__(self, mantissa_bits: int = 3, n_graph: int | None = None):
        self.mantissa_bits = mantissa_bits
        self.n_graph = n_graph
        self.shapes: set[tuple[int, int, int]] = set()

    @property
    def n_shapes(self) -> int:
        """Number of distinct padded shapes produced so far."""
        return len(self.shapes)

    def sizes(self, graph: jraph.GraphsTuple, n_graph: int | None = None) -> tuple[int, int, int]:
        """(n_node, n_edge, n_graph) that `graph` would be padded to."""
        n_node = bucket_size(int(np.sum(graph.n_node)) + 1, self.mantissa_bits)
        n_edge = bucket_size(int(np.sum(graph.n_edge)), self.mantissa_bits)
        n_graph = n_graph or self.n_graph or bucket_size(len(graph.n_node) + 1, self.mantissa_bits)
        return n_node, n_edge, n_graph

    def __call__(self, graph: jraph.GraphsTuple, n_graph: int | None = None) -> jraph.GraphsTuple:
        """Pads `graph` to its bucket; `n_graph` overrides the padder's graph count."""
        return self.pad_to(graph, self.sizes(graph, n_graph))

    def pad_to(self, graph: jraph.GraphsTuple, shape: tuple[int, int, int]) -> jraph.GraphsTuple:
        """Pads `graph` to the given (n_node, n_edge, n_graph), counting it as a shape."""
        if shape not in self.shapes:
            self.shapes.add(shape)
            logger.info(
                "new padded shape #%d: n_node=%d, n_edge=%d, n_graph=%d (one more compilation)",
                len(self.shapes),
                *shape,
            )
        return pad_graph(graph, *shape)
