"""The graph schema: every field of a batch of frames as a `jraph.GraphsTuple`, the node-to-graph
mapping and the edge vectors. Code outside ``graph/graph.py`` (which builds graphs) reads a graph
through these functions, never by string key.

Edge convention: an edge runs from a neighbor j (``senders``) to a center i (``receivers``), and
its vector is

    r_ij = positions[senders] - positions[receivers] + shifts @ cell[graph of the edge]

(neighbor minus center, as in DeePMD's ``_make_env_mat``); ``shifts`` counts periodic images in
units of the cell's rows (lattice vectors). Units: Angstrom, eV, eV/Angstrom; the virial in eV
with DeePMD's sign.

Fields (n_graph frames, n_node atoms and n_edge edges summed over the batch, padding included):

    nodes["positions"]   [n_node, 3]        float  Cartesian positions, Angstrom (not wrapped)
    nodes["species"]     [n_node]           int32  type index into the system's type map
    nodes["forces"]      [n_node, 3]        float  force label, eV/Angstrom (zeros if absent)
    edges["shifts"]      [n_edge, 3]        float  integer-valued image vector of the neighbor
    edges["slot"]        [n_edge]           int32  rank among the center's neighbors by distance,
                                                   0..sel-1; -1 marks a padding edge
    senders              [n_edge]           int32  neighbor j, node index global across the batch
    receivers            [n_edge]           int32  center i, node index global across the batch
    globals["cell"]      [n_graph, 3, 3]    float  rows are lattice vectors, Angstrom;
                                                   zeros for a non-periodic frame
    globals["energy"]    [n_graph]          float  energy label, eV (0 if absent)
    globals["virial"]    [n_graph, 3, 3]    float  virial label, eV (zeros if absent)
    nodes["aparam"]      [n_node, nap]      float  atomic parameters; only present when given
                                                   (models with numb_aparam)
    globals["fparam"]    [n_graph, nfp]     float  frame parameters; only present when given
                                                   (models with numb_fparam)
    globals["has_energy"], globals["has_forces"], globals["has_virial"]
                         [n_graph]          float  1.0 where the label is present, else 0.0
    n_node, n_edge       [n_graph]          int32  atoms and edges per graph

Within a graph, edges are sorted by (receiver, distance), and each center keeps at most ``sel``
neighbors within ``rcut`` (``neighbors.py`` gives the exact rule).

The functions work on numpy arrays (host side) and on JAX arrays (inside a trace) alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from dpa2_jax.typing import Array

LABELS = ("energy", "forces", "virial")  # label name -> globals/nodes field of that name


def _xp(x):
    return np if isinstance(x, np.ndarray) else jnp


def positions(graph: jraph.GraphsTuple) -> Array:
    """[n_node, 3] Angstrom."""
    return graph.nodes["positions"]


def species(graph: jraph.GraphsTuple) -> Array:
    """[n_node] int32 type indices."""
    return graph.nodes["species"]


def cells(graph: jraph.GraphsTuple) -> Array:
    """[n_graph, 3, 3] Angstrom, rows the lattice vectors; zeros for a non-periodic frame."""
    return graph.globals["cell"]


def shifts(graph: jraph.GraphsTuple) -> Array:
    """[n_edge, 3] integer-valued periodic image of each edge's neighbor."""
    return graph.edges["shifts"]


def slots(graph: jraph.GraphsTuple) -> Array:
    """[n_edge] int32 rank of each edge among its center's neighbors; -1 for padding."""
    return graph.edges["slot"]


def node_field(graph: jraph.GraphsTuple, name: str) -> Array | None:
    """The optional per-node field ``name`` [n_node, ...] (e.g. the loss's ``atom_pref``), or
    None if the graph has none."""
    return graph.nodes.get(name) if isinstance(graph.nodes, dict) else None


def graph_field(graph: jraph.GraphsTuple, name: str) -> Array | None:
    """The optional per-graph field ``name`` [n_graph, ...] (e.g. ``has_atom_pref``), or None
    if the graph has none."""
    return graph.globals.get(name) if isinstance(graph.globals, dict) else None


def fparam(graph: jraph.GraphsTuple) -> Array | None:
    """[n_graph, nfp] frame parameters, or None if the graph has none."""
    return graph_field(graph, "fparam")


def aparam(graph: jraph.GraphsTuple) -> Array | None:
    """[n_node, nap] atomic parameters, or None if the graph has none."""
    return node_field(graph, "aparam")


def label(graph: jraph.GraphsTuple, name: str) -> tuple[Array, Array]:
    """(value, present) of label ``name`` in ``LABELS``: energy [n_graph] eV, forces
    [n_node, 3] eV/Angstrom or virial [n_graph, 3, 3] eV, and [n_graph] 1.0 where the frame
    has it."""
    fields = graph.nodes if name == "forces" else graph.globals
    return fields[name], graph.globals[f"has_{name}"]


def node_graph(graph: jraph.GraphsTuple, n_node: int | None = None) -> Array:
    """[n_node] the graph of each node. ``n_node`` (static under jit): the total node count,
    default that of ``positions``."""
    n_node = positions(graph).shape[0] if n_node is None else n_node
    n_graph = graph.n_node.shape[0]
    if isinstance(graph.n_node, np.ndarray):
        return np.repeat(np.arange(n_graph), graph.n_node)
    return jnp.repeat(jnp.arange(n_graph), graph.n_node, total_repeat_length=n_node)


def edge_vectors(
    graph: jraph.GraphsTuple, pos: Array | None = None, cell: Array | None = None
) -> Array:
    """[n_edge, 3] r_ij in Angstrom (module docstring), from ``pos`` [n_node, 3] and ``cell``
    [n_graph, 3, 3] (default: the graph's own; strained ones for the virial)."""
    pos = positions(graph) if pos is None else pos
    cell = cells(graph) if cell is None else cell
    edge_graph = node_graph(graph, pos.shape[0])[graph.receivers]  # edges in any order
    offset = _xp(pos).einsum("ek,ekd->ed", shifts(graph).astype(pos.dtype), cell[edge_graph])
    return pos[graph.senders] - pos[graph.receivers] + offset


def max_neighbors(batches: Sequence[jraph.GraphsTuple], rcut: float) -> int:
    """The most neighbors within rcut (plus 1e-6 A) of any atom in unpadded host batches."""
    most = 0
    for b in batches:
        within = np.linalg.norm(edge_vectors(b), axis=-1) <= rcut + 1e-6
        counts = np.bincount(b.receivers[within], minlength=b.n_node.sum())
        most = max(most, int(counts.max(initial=0)))
    return most


def graph_sum(graph: jraph.GraphsTuple, values: Array) -> Array:
    """Per-graph sums of per-node ``values`` [n_node, ...] -> [n_graph, ...]."""
    n_graph = graph.n_node.shape[0]
    return jax.ops.segment_sum(values, node_graph(graph, values.shape[0]), num_segments=n_graph)
