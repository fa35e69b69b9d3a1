"""Batches of graphs: padded batches for one device, and stacks of them for several devices."""

from typing import Iterator, Sequence

import jax
import jraph
import numpy as np

from dpa2_jax.graph.graph import batch_graphs
from dpa2_jax.graph.padding import BucketPadder


def iterate_batches(
    graphs: Sequence[jraph.GraphsTuple],
    batch_size: int,
    padder: BucketPadder,
    shuffle: bool = False,
    rng: np.random.Generator | int | None = None,
    drop_remainder: bool = False,
) -> Iterator[jraph.GraphsTuple]:
    """Yields padded batches of `batch_size` graphs, in order or shuffled.

    Every batch, the last shorter one included, is padded to batch_size + 1 graphs, so the graph
    count never adds a shape; nodes and edges go to the padder's buckets.

    Args:
        graphs: one-graph (or small batched) `GraphsTuple`s from graph.py.
        batch_size: graphs per batch.
        padder: pads each batch; called as padder(batch, n_graph=batch_size + 1).
        shuffle: visit the graphs in a random order.
        rng: numpy Generator or seed for the shuffle; None draws a fresh seed.
        drop_remainder: skip the last batch if it has fewer than batch_size graphs.

    Yields:
        Padded `GraphsTuple`s of numpy arrays.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    order = np.arange(len(graphs))
    if shuffle:
        order = np.random.default_rng(rng).permutation(len(graphs))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        if drop_remainder and len(chunk) < batch_size:
            return
        yield padder(batch_graphs([graphs[k] for k in chunk]), n_graph=batch_size + 1)


def stack_batches(batches: Sequence[jraph.GraphsTuple]) -> jraph.GraphsTuple:
    """Stacks equally padded batches along a new leading device axis (for pmap or sharding).

    Args:
        batches: n_device padded batches with identical shapes.

    Returns:
        A `GraphsTuple` whose every array has a leading [n_device] axis.

    Raises:
        ValueError: no batches, or batches of different shapes (pad them to common sizes first).
    """
    if len(batches) == 0:
        raise ValueError("stack_batches: got no batches")
    shapes = [jax.tree.map(np.shape, b) for b in batches]
    for k, shape in enumerate(shapes[1:], start=1):
        if shape != shapes[0]:
            raise ValueError(
                f"stack_batches: batch {k} has shapes {_sizes(batches[k])}, batch 0 has "
                f"{_sizes(batches[0])}; pad all batches to the same sizes before stacking"
            )
    return jax.tree.map(lambda *leaves: np.stack(leaves), *batches)


def _sizes(graph: jraph.GraphsTuple) -> str:
    n_node = graph.nodes["species"].shape[0]
    return f"n_node={n_node}, n_edge={graph.senders.shape[0]}, n_graph={graph.n_node.shape[0]}"
