"""Neighbor slots built inside ``jit``, for edges that come unsorted.

The host path (``neighbors.py``) hands the model edges already ranked by distance: ``slot`` is
each edge's rank among its center's neighbors. Edges from elsewhere (JAX-MD neighbor lists, a
graph whose positions moved since its list was built) come in any order and may include
candidates beyond the cutoff. ``select_slots`` ranks them on the device with the host's rule:
per center, the edges with |r_ij| <= rcut (the center itself at zero shift excluded), sorted by
(distance, neighbor index, shift), the first ``sel`` kept. Static shapes throughout: one sort of
the padded edge array.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jraph

from dpa2_jax.graph import fields
from dpa2_jax.typing import Array


def select_slots(
    graph: jraph.GraphsTuple, positions: Array, cells: Array, rcut: float, sel: int
) -> Array:
    """Each edge's slot among its center's ``sel`` nearest neighbors, or -1 if not kept.

    Args:
      graph: padded batch whose edges (``senders``, ``receivers``, integer ``shifts``) may be
        in any order and may reach beyond ``rcut``; padding edges (jraph's) are never kept.
      positions: [n_node, 3] Angstrom; cells: [n_graph, 3, 3] Angstrom.
      rcut: cutoff in Angstrom (a neighbor at exactly rcut is kept); sel: slots per center.

    Returns:
      [n_edge] int32, rank by (distance, neighbor, shift) among the center's kept edges.
    """
    n_edge = graph.senders.shape[0]
    diff = jax.lax.stop_gradient(fields.edge_vectors(graph, positions, cells))  # [n_edge, 3]
    dist = jnp.sqrt(jnp.sum(diff * diff, axis=-1))  # [n_edge]
    shifts = fields.shifts(graph).astype(jnp.int32)  # [n_edge, 3]
    is_self = (graph.senders == graph.receivers) & jnp.all(shifts == 0, axis=-1)
    valid = jraph.get_edge_padding_mask(graph) & (dist <= rcut) & ~is_self
    keys = (
        graph.receivers.astype(jnp.int32),
        (~valid).astype(jnp.int32),  # kept candidates first within each center
        dist,
        graph.senders.astype(jnp.int32),
        shifts[:, 0],
        shifts[:, 1],
        shifts[:, 2],
    )
    *sorted_keys, order = jax.lax.sort((*keys, jnp.arange(n_edge)), num_keys=len(keys))
    centers, invalid = sorted_keys[0], sorted_keys[1]
    rank = jnp.arange(n_edge) - jnp.searchsorted(centers, centers, side="left")  # [n_edge]
    slot = jnp.where((invalid == 0) & (rank < sel), rank, -1).astype(jnp.int32)
    return jnp.zeros(n_edge, jnp.int32).at[order].set(slot)
