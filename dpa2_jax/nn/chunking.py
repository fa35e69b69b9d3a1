"""Per-atom blocks over chunks of centers, recomputed in the backward pass.

Repinit, three-body and each repformer layer compute every center's output from that center's
own neighbor slots (plus, for repformers, the g1 of all atoms). ``map_nodes`` runs such a block
over fixed-size chunks of centers with ``jax.lax.map`` and ``jax.checkpoint``, so the large
per-slot and per-pair intermediates exist for one chunk at a time, in the forward and the
backward pass: memory grows linearly with the number of atoms at a small constant, and the
working set stays cache-sized. Results are identical to the unchunked call.

A stack of such blocks (the repformer layers) keeps its per-slot arrays in the chunked layout
from one block to the next (``NodeChunks``: split once, ``map_chunks`` per block, merged once),
so that no block pads, stacks and slices a copy of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class NodeChunks(NamedTuple):
    """How n nodes are split: ``count`` chunks of ``size`` centers (the last rows padding)."""

    n: int
    count: int
    size: int

    @classmethod
    def of(cls, n: int, chunk: int) -> NodeChunks:
        """Equal chunks of at most ``chunk`` centers, at most count - 1 padded rows."""
        count = max(1, -(-n // chunk))
        return cls(n, count, -(-n // count))

    def split(self, a):
        """[n, ...] -> [count, size, ...]; padded rows are zeros (their results are dropped)."""
        a = jnp.pad(a, [(0, self.count * self.size - self.n)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape(self.count, self.size, *a.shape[1:])

    def merge(self, a):
        """[count, size, ...] -> [n, ...]."""
        return a.reshape(self.count * self.size, *a.shape[2:])[: self.n]


    def split_tree(self, tree):
        """``split`` of every leaf of a pytree of [n, ...] arrays."""
        return jax.tree.map(self.split, tree)


def map_chunks(fn: Callable, chunked: tuple, shared: tuple = ()):
    """``fn(*chunk, *shared)`` for each chunk of ``chunked`` (pytrees of [count, size, ...]
    arrays), sequentially and recomputed in the backward pass; returns fn's pytree with
    [count, size, ...] leaves."""
    body = jax.checkpoint(lambda xs: fn(*xs, *shared))
    return jax.lax.map(body, chunked)


def n_nodes(per_node: tuple) -> int:
    """The length of the leading (node) axis of the first leaf of ``per_node``."""
    return jax.tree.leaves(per_node)[0].shape[0]


def map_nodes(fn: Callable, chunk: int, per_node: tuple, shared: tuple = ()):
    """``fn(*per_node, *shared)`` evaluated over chunks of the leading (node) axis.

    Args:
      fn: maps per-node arrays [n, ...] (and ``shared`` values) to a pytree of [n, ...].
      chunk: most centers per chunk; with n <= chunk, fn is called once, unchanged.
      per_node: arrays, or pytrees of them (a ``Neighborhood``), whose leading axis is the
        node axis.
      shared: values passed whole to every chunk (e.g. all atoms' g1 or species).
    """
    n = n_nodes(per_node)
    if n <= chunk:
        return fn(*per_node, *shared)
    chunks = NodeChunks.of(n, chunk)
    out = map_chunks(fn, chunks.split_tree(per_node), shared)
    return jax.tree.map(chunks.merge, out)
