"""Frames of atoms -> `jraph.GraphsTuple` neighbor graphs (host side, numpy).

Fields, units and the edge convention: ``fields.py`` (the schema; read graphs through it).

Within a graph, edges are sorted by (receiver, distance), and each center keeps at most `sel`
neighbors within `rcut` (neighbors.py gives the exact rule).

Two cutoffs from one edge set: DPA-2 uses repinit's (rcut, sel), e.g. (6 A, 120), and a smaller
(rcut_small, sel_small) for the repformer and three-body blocks, e.g. (4 A, 48). Only the larger
list is built. Because each center's list is sorted by distance, the smaller list is exactly the
edges with `0 <= slot < sel_small` and |r_ij| <= rcut_small; the model derives it that way, which
equals DeePMD's `build_multiple_neighbor_list` (truncate the sorted list to sel_small, then mask
distances above rcut_small).
"""

from typing import Any, Sequence

import jraph
import numpy as np

from dpa2_jax.data.frames import check_atom_count
from dpa2_jax.errors import DataError
from dpa2_jax.graph.neighbors import neighbor_list


def frame_to_graph(
    positions: np.ndarray,
    species: np.ndarray,
    cell: np.ndarray | None,
    rcut: float,
    sel: int,
    energy: float | None = None,
    forces: np.ndarray | None = None,
    virial: np.ndarray | None = None,
    dtype: Any = np.float64,
    fparam: np.ndarray | None = None,
    aparam: np.ndarray | None = None,
) -> jraph.GraphsTuple:
    """Builds the one-graph `GraphsTuple` of a frame (fields in `fields.py`).

    Args:
        positions: [n_node, 3] positions, Angstrom.
        species: [n_node] type indices.
        cell: [3, 3] cell, rows are lattice vectors, Angstrom; None if not periodic.
        rcut: neighbor cutoff, Angstrom (the largest cutoff of the model).
        sel: neighbors kept per center (the largest `sel` of the model).
        energy: energy label, eV, or None.
        forces: [n_node, 3] force label, eV/Angstrom, or None.
        virial: [3, 3] (or [9]) virial label, eV, or None.
        dtype: float dtype of the float fields; the neighbor search itself runs in float64.
        fparam: [nfp] frame parameters, or None (no `globals["fparam"]` field).
        aparam: [n_node, nap] atomic parameters, or None (no `nodes["aparam"]` field).

    Returns:
        A `GraphsTuple` of numpy arrays with n_graph = 1.

    Raises:
        DataError: inconsistent shapes, no atoms, or invalid positions or cell.
    """
    positions = np.asarray(positions, dtype=np.float64)
    n_node = positions.shape[0] if positions.ndim == 2 else -1
    check_atom_count(n_node)
    species = np.asarray(species)
    if species.shape != (n_node,) or not np.issubdtype(species.dtype, np.integer):
        raise DataError(
            f"species: expected {n_node} integer type indices (one per atom), "
            f"got shape {species.shape}, dtype {species.dtype}"
        )
    nlist = neighbor_list(positions, cell, rcut, sel)
    n_edge = nlist.n_edge

    nodes = {
        "positions": positions.astype(dtype),
        "species": species.astype(np.int32),
        "forces": _label(forces, (n_node, 3), "forces", dtype),
    }
    edges = {"shifts": nlist.shifts.astype(dtype), "slot": nlist.slot}
    globals_ = {
        "cell": _label(cell, (3, 3), "cell", dtype)[None],
        "energy": _label(energy, (), "energy", dtype)[None],
        "virial": _label(virial, (3, 3), "virial", dtype)[None],
        "has_energy": np.array([energy is not None], dtype=dtype),
        "has_forces": np.array([forces is not None], dtype=dtype),
        "has_virial": np.array([virial is not None], dtype=dtype),
    }
    if fparam is not None:
        globals_["fparam"] = np.asarray(fparam, dtype=dtype).reshape(1, -1)
    if aparam is not None:
        aparam = np.asarray(aparam, dtype=dtype)
        if aparam.ndim != 2 or aparam.shape[0] != n_node:
            raise DataError(f"aparam: expected shape [{n_node}, nap], got {list(aparam.shape)}")
        nodes["aparam"] = aparam
    return jraph.GraphsTuple(
        nodes=nodes,
        edges=edges,
        senders=nlist.neighbors,
        receivers=nlist.centers,
        globals=globals_,
        n_node=np.array([n_node], dtype=np.int32),
        n_edge=np.array([n_edge], dtype=np.int32),
    )


def system_to_graphs(
    system: Any,
    rcut: float,
    sel: int,
    dtype: Any = np.float64,
    fparams: np.ndarray | None = None,
    aparams: np.ndarray | None = None,
) -> list[jraph.GraphsTuple]:
    """One graph per frame of a system.

    Args:
        system: a `dpa2_jax.data.System` or any object with its fields: `atom_types` [n_atom] int,
            `coords` [n_frame, n_atom, 3], `cells` [n_frame, 3, 3] or None, `energies` [n_frame]
            or None, `forces` [n_frame, n_atom, 3] or None, `virials` [n_frame, 3, 3] or None.
            Species are the system's own type indices (map them to the model's type map first).
        rcut: neighbor cutoff, Angstrom.
        sel: neighbors kept per center.
        dtype: float dtype of the float fields.
        fparams: [n_frame, nfp] frame parameters, or None (no `globals["fparam"]` field); the
            system's own `fparams` are not read here (the model decides whether it needs them:
            `dpa2_jax.data.dataset.model_parameters`).
        aparams: [n_frame, n_atom, nap] atomic parameters, or None (no `nodes["aparam"]`).

    Returns:
        A list of n_frame one-graph `GraphsTuple`s.
    """
    coords = np.asarray(system.coords)
    cells, energies = system.cells, system.energies
    forces, virials = system.forces, system.virials
    graphs = []
    for f in range(coords.shape[0]):
        graphs.append(
            frame_to_graph(
                coords[f],
                system.atom_types,
                None if cells is None else cells[f],
                rcut,
                sel,
                energy=None if energies is None else energies[f],
                forces=None if forces is None else forces[f],
                virial=None if virials is None else virials[f],
                dtype=dtype,
                fparam=None if fparams is None else fparams[f],
                aparam=None if aparams is None else aparams[f],
            )
        )
    return graphs


def batch_graphs(graphs: Sequence[jraph.GraphsTuple]) -> jraph.GraphsTuple:
    """Concatenates graphs into one `GraphsTuple` (numpy), offsetting node indices.

    Args:
        graphs: graphs with the fields of `fields.py`.

    Returns:
        The batch; n_graph is the total number of graphs, index arrays stay int32.
    """
    if len(graphs) == 0:
        raise ValueError("batch_graphs: got no graphs")
    return as_int32_indices(jraph.batch_np(list(graphs)))


def as_int32_indices(graph: jraph.GraphsTuple) -> jraph.GraphsTuple:
    """Casts senders, receivers, n_node and n_edge to int32.

    jraph's batching adds int64 offsets, which numpy 2 promotes the index arrays to.
    """
    return graph._replace(
        senders=graph.senders.astype(np.int32),
        receivers=graph.receivers.astype(np.int32),
        n_node=graph.n_node.astype(np.int32),
        n_edge=graph.n_edge.astype(np.int32),
    )


def _label(value: Any, shape: tuple[int, ...], name: str, dtype: Any) -> np.ndarray:
    """A label (or the cell) as an array of `shape`, zeros when absent."""
    if value is None:
        return np.zeros(shape, dtype=dtype)
    array = np.asarray(value, dtype=np.float64)
    if array.size != int(np.prod(shape)):
        raise DataError(f"{name}: expected shape {list(shape)}, got {list(array.shape)}")
    return array.reshape(shape).astype(dtype)
