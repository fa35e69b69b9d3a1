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
    # what diff was built from (``NeighborSlots.neighborhood``), so that chunked blocks can
    # rebuild it per chunk from shared positions; None for a neighborhood made otherwise
    source: tuple[NeighborSlots, Array] | None = None

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


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NeighborSlots:
    """A neighborhood before its vectors r_ij: per center, what makes them from the positions.

    Attributes:
      index, mask, first: as ``Neighborhood``'s ([n, sel], [n, sel], [n]).
      shifts: [n, sel, 3] int16 periodic image of each slot's neighbor.
      center: [n, 3] the centers' positions, Angstrom.
      cell: [n, 3, 3] each center's cell (rows are lattice vectors), Angstrom.
      delta: [n, sel, 3] added to the filled slots' r_ij (``derivatives.atom_virial``), or None.

    Every leaf has the centers as its leading axis, so a chunk of centers is a slice of each;
    ``neighborhood(positions)`` needs every node's positions (shared by all chunks): a chunked
    block's backward pass then carries [n, 3] position cotangents, not [n, sel, 3] ones.
    """

    index: Array
    mask: Array
    shifts: Array
    first: Array
    center: Array
    cell: Array
    delta: Array | None = None

    def first_slots(self, n: int) -> NeighborSlots:
        """The first ``n`` slots."""
        delta = None if self.delta is None else self.delta[:, :n]
        return dataclasses.replace(self, index=self.index[:, :n], mask=self.mask[:, :n],
                                   shifts=self.shifts[:, :n], delta=delta)  # fmt: skip

    def neighborhood(self, positions: Array) -> Neighborhood:
        """The ``Neighborhood``, r_ij from every node's positions [n_node, 3] Angstrom."""
        offset = jnp.einsum("nsk,nkd->nsd", self.shifts.astype(positions.dtype), self.cell)
        diff = positions[self.index] - self.center[:, None, :] + offset
        if self.delta is not None:
            diff = diff + self.delta
        diff = jnp.where(self.mask[..., None], diff, 0.0)
        return Neighborhood(self.index, self.mask, diff, self.first, (self, positions))


def neighborhood_parts(nb: Neighborhood) -> tuple:
    """(per-center part, shared part) of ``nb`` for chunks of centers: (``NeighborSlots``,
    every node's positions) when ``nb`` knows its source, else (``nb``, None)."""
    return nb.source if nb.source is not None else (nb, None)


def chunk_neighborhood(part, positions: Array | None) -> Neighborhood:
    """The ``Neighborhood`` of a chunk from ``neighborhood_parts``' two parts (sliced)."""
    return part if positions is None else part.neighborhood(positions)


def dense_slots(
    graph: jraph.GraphsTuple, positions: Array, cells: Array, sel: int, slot: Array | None = None
) -> NeighborSlots:
    """Lays the graph's edges into [n_node, sel] slots (``NeighborSlots``; arguments as
    ``dense_neighborhood``)."""
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
        jnp.zeros((n_node, sel, 3), jnp.int16)
        .at[row, slot]
        .set(fields.shifts(graph).astype(jnp.int16), mode="drop")
    )
    mask = index >= 0
    index = jnp.where(mask, index, first_node[:, None])
    return NeighborSlots(index, mask, shifts, first_node, positions, cells[node_graph])


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
    return dense_slots(graph, positions, cells, sel, slot).neighborhood(positions)


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
