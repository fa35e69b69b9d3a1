"""Per-atom blocks over chunks of centers, recomputed in the backward pass.

Repinit, three-body and each repformer layer compute every center's output from that center's
own neighbor slots (plus, for repformers, the g1 of all atoms). ``map_nodes`` runs such a block
over fixed-size chunks of centers with ``jax.lax.map`` and ``jax.checkpoint``, so the large
per-slot and per-pair intermediates exist for one chunk at a time, in the forward and the
backward pass: memory grows linearly with the number of atoms at a small constant, and the
working set stays cache-sized. Results are identical to the unchunked call.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def map_nodes(fn: Callable, chunk: int, per_node: tuple, shared: tuple = ()):
    """``fn(*per_node, *shared)`` evaluated over chunks of the leading (node) axis.

    Args:
      fn: maps per-node arrays [n, ...] (and ``shared`` values) to a pytree of [n, ...].
      chunk: most centers per chunk; with n <= chunk, fn is called once, unchanged.
      per_node: arrays whose leading axis is the node axis.
      shared: arrays passed whole to every chunk (e.g. all atoms' g1).
    """
    n = per_node[0].shape[0]
    if n <= chunk:
        return fn(*per_node, *shared)
    n_chunks = -(-n // chunk)
    chunk = -(-n // n_chunks)  # equal chunks, at most n_chunks - 1 padded rows
    pad = n_chunks * chunk - n

    def split(a):
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))  # padded rows are discarded
        return a.reshape(n_chunks, chunk, *a.shape[1:])

    body = jax.checkpoint(lambda xs: fn(*xs, *shared))
    out = jax.lax.map(body, tuple(split(a) for a in per_node))
    return jax.tree.map(lambda o: o.reshape(n_chunks * chunk, *o.shape[2:])[:n], out)
