"""Batches of graphs: padded batches for one device, and stacks of them for several devices."""

from typing import Iterator, Sequence

import jax
import jraph
import numpy as np

from dpa2_jax.graph import fields
from dpa2_jax.graph.graph import batch_graphs
from dpa2_jax.graph.padding import BucketPadder, bucket_size

# Evaluation buckets: 4 significant bits, at most 12.5 % padding (the dense per-atom work
# scales with it), a few shapes per doubling of the atoms, edges or frames in a call.
EVAL_MANTISSA_BITS = 4


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


def plan_batches(
    n_node: Sequence[int],
    n_edge: Sequence[int],
    atoms_per_batch: int,
    mantissa_bits: int = EVAL_MANTISSA_BITS,
) -> tuple[list[slice], tuple[int, int, int]]:
    """Groups consecutive frames into batches and picks the one padded shape they all use.

    Each batch takes frames in order while it holds at most ``atoms_per_batch`` atoms (and at
    least one frame). Atom, edge and frame counts are rounded up to ``bucket_size`` grids, the
    largest batch's sizes serving every batch of the call, so a short last batch adds no shape.
    ``Potential.evaluate`` and ``dpa2-jax graphs`` both use this plan.

    Args:
      n_node: [n_frame] atoms per frame; n_edge: [n_frame] edges per frame.
      atoms_per_batch: most atoms in one batch (a larger frame gets a batch of its own).

    Returns:
      (slices of frames, one per batch; (n_node, n_edge, n_graph) after padding, one spare
      node and one spare graph included).
    """
    n_node, n_edge = np.asarray(n_node), np.asarray(n_edge)
    if n_node.size == 0:
        raise ValueError("plan_batches: got no frames")
    groups, start, atoms = [], 0, 0
    for k, n in enumerate(n_node):
        if k > start and atoms + n > atoms_per_batch:
            groups.append(slice(start, k))
            start, atoms = k, 0
        atoms += int(n)
    groups.append(slice(start, len(n_node)))
    most_nodes = max(int(np.sum(n_node[g])) for g in groups)
    most_edges = max(int(np.sum(n_edge[g])) for g in groups)
    most_graphs = max(g.stop - g.start for g in groups)
    shape = (
        bucket_size(most_nodes + 1, mantissa_bits),
        bucket_size(most_edges, mantissa_bits),
        bucket_size(most_graphs + 1, mantissa_bits),
    )
    return groups, shape


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
    n_node = fields.species(graph).shape[0]
    return f"n_node={n_node}, n_edge={graph.senders.shape[0]}, n_graph={graph.n_node.shape[0]}"
