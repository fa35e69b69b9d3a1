"""Dense per-atom neighborhoods and the smooth environment matrix.

For center i and neighbor slot j with r_ij = r_j - r_i and r = |r_ij| (DeePMD's ``_make_env_mat``):

    s(r)  = 1 - 10u^3 + 15u^4 - 6u^5,  u = clip((r - rcut_smth) / (rcut - rcut_smth), 0, 1)
    R_ij  = s(r) * (1 / (r + p), r_ij / (r + p)^2)            [4]
    R~_ij = (R_ij - davg[type_i, j]) / dstd[type_i, j]

Empty slots have R_ij = 0 before normalisation, so with non-zero ``davg`` they carry
-davg/dstd, exactly as DeePMD's dense implementation does.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import jraph

from dpa2_jax.graph import fields
from dpa2_jax.typing import Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Neighborhood:
    """Neighbors of every center laid out in distance-ordered slots.

    Attributes:
      index: [n_node, sel] int32 neighbor node; empty slots point to the first node of the
        center's graph (DeePMD reads atom 0 there, so its type leaks into empty slots).
      mask: [n_node, sel] bool, True for real neighbors.
      diff: [n_node, sel, 3] r_ij in Angstrom, zero in empty slots.
      first: [n_node] int32, the first node of each center's graph.
    """

    index: Array
    mask: Array
    diff: Array
    first: Array

    @property
    def sel(self) -> int:
        return self.index.shape[1]

    def distance(self) -> Array:
        """[n_node, sel] |r_ij|, with 1 in empty slots (so that gradients stay finite)."""
        safe = jnp.where(self.mask[..., None], self.diff, 1.0)
        return jnp.where(self.mask, jnp.linalg.norm(safe, axis=-1), 1.0)

    def first_slots(self, n: int) -> Neighborhood:
        """The first ``n`` slots as they are (all of them when n >= sel)."""
        return Neighborhood(self.index[:, :n], self.mask[:, :n], self.diff[:, :n], self.first)

    def restrict(self, rcut: float, nsel: int) -> Neighborhood:
        """The first ``nsel`` slots, keeping neighbors within ``rcut`` (DeePMD's
        ``build_multiple_neighbor_list``: slots are sorted by distance, so this is the
        nearest-``nsel`` list at the smaller cutoff)."""
        sub = self.first_slots(nsel)
        return sub.with_mask(sub.mask & (sub.distance() <= rcut))

    def with_mask(self, mask: Array) -> Neighborhood:
        """The same slots with ``mask``; emptied slots read the graph's first node."""
        return Neighborhood(
            jnp.where(mask, self.index, self.first[:, None]),
            mask,
            jnp.where(mask[..., None], self.diff, 0.0),
            self.first,
        )


def dense_neighborhood(
    graph: jraph.GraphsTuple, positions: Array, cells: Array, sel: int, slot: Array | None = None
) -> Neighborhood:
    """Lays the graph's edges into [n_node, sel] slots and computes r_ij inside the trace.

    Args:
      graph: padded batch with integer edge ``shifts``.
      positions: [n_node, 3] Angstrom (possibly strained).
      cells: [n_graph, 3, 3] Angstrom, rows are lattice vectors (possibly strained).
      sel: number of slots (the largest ``nsel`` of the model).
      slot: [n_edge] int32 slot of each edge, -1 for none; default the host-ranked
        ``graph.edges["slot"]`` (``graph/slots.py`` ranks unsorted edges on the device).
    """
    n_node = positions.shape[0]
    node_graph = fields.node_graph(graph, n_node)
    first_node = (jnp.cumsum(graph.n_node) - graph.n_node)[node_graph]  # [n_node]
    slot = fields.slots(graph) if slot is None else slot
    row = jnp.where((slot >= 0) & (slot < sel), graph.receivers, n_node)  # drop padding edges
    index = (
        jnp.full((n_node, sel), -1, jnp.int32)
        .at[row, slot]
        .set(graph.senders.astype(jnp.int32), mode="drop")
    )
    shifts = (
        jnp.zeros((n_node, sel, 3), positions.dtype)
        .at[row, slot]
        .set(fields.shifts(graph).astype(positions.dtype), mode="drop")
    )
    mask = index >= 0
    index = jnp.where(mask, index, first_node[:, None])
    offset = jnp.einsum("nsk,nkd->nsd", shifts, cells[node_graph])  # [n_node, sel, 3]
    diff = positions[index] - positions[:, None, :] + offset
    return Neighborhood(index, mask, jnp.where(mask[..., None], diff, 0.0), first_node)


def switch_function(r: Array, rcut_smth: float, rcut: float) -> Array:
    """Quintic switch s(r): 1 below rcut_smth, 0 beyond rcut, C2-continuous in between.
    Works on numpy and JAX arrays alike (the host-side statistics use it too)."""
    u = (r.clip(rcut_smth, rcut) - rcut_smth) / (rcut - rcut_smth)
    return u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0


def environment_matrix(
    nb: Neighborhood, rcut: float, rcut_smth: float, protection: float = 0.0
) -> tuple[Array, Array]:
    """The switched environment matrix before normalisation.

    Returns:
      em: [n_node, sel, 4] s(r) (1/(r+p), r_ij/(r+p)^2), zero in empty slots.
      sw: [n_node, sel] s(r), zero in empty slots.
    """
    r = nb.distance()[..., None]  # [n_node, sel, 1]
    sw = switch_function(r, rcut_smth, rcut) * nb.mask[..., None]
    em = jnp.concatenate([1.0 / (r + protection), nb.diff / (r + protection) ** 2], -1) * sw
    return em, sw[..., 0]


def normalize(em: Array, species: Array, davg: Array, dstd: Array) -> Array:
    """(em - davg[type_i]) / dstd[type_i]. em: [n_node, sel, 4]; davg, dstd: [n_type, sel, 4]."""
    return (em - davg[species]) / dstd[species]


def pair_exclusion_mask(
    species: Array,
    nb: Neighborhood,
    excluded: frozenset[tuple[int, int]],
    species_all: Array | None = None,
) -> Array:
    """[n_node, sel] True where the (center type, neighbor type) pair is NOT excluded.

    species: [n_node] the centers' types; species_all: the types of every node ``nb.index``
    points to (default: species, when the centers are all the nodes).
    """
    keep = jnp.ones(nb.index.shape, bool)
    nei = (species if species_all is None else species_all)[nb.index]
    for a, b in sorted(excluded):
        keep &= ~((species[:, None] == a) & (nei == b))
    return keep | ~nb.mask  # an empty slot is never excluded (DeePMD gives it a virtual type)
