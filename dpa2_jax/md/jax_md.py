"""JAX-MD front end: the model as a JAX-MD energy function, and a neighbor list sized for it.

    from jax_md import partition, quantity, simulate, space
    from dpa2_jax.md import energy_fn, neighbor_fn

    box = cell.T                                       # JAX-MD's box: columns are lattice vectors
    displacement, shift = space.periodic_general(box)  # fractional coordinates (JAX-MD's default)
    R = positions @ np.linalg.inv(cell)                # [N, 3] in [0, 1)
    nbr_fn = neighbor_fn(pot, box)                     # partition.neighbor_list, cutoff = rcut
    nbr = nbr_fn.allocate(R)
    E = energy_fn(pot, species, box)                   # E(R, neighbor=nbr) -> eV, jittable
    quantity.force(E)(R, neighbor=nbr)                 # [N, 3] eV/A, real space
    quantity.stress(E, R, box, neighbor=nbr)           # [3, 3] eV/A^3 = virial / volume

``E(R, neighbor=nbr, box=None, perturbation=None, params=None, **unused)`` builds the model's
padded graph inside the trace from the neighbor list: each listed pair (i, j) becomes an edge
from neighbor j to center i with the integer image shift of JAX-MD's minimum image,
n = -floor(u_j - u_i + 1/2) in fractional coordinates u, so that
r_ij = x_j - x_i + n @ cell (``graph/graph.py``). Per center, the ``sel`` nearest within
``rcut`` are kept with the host's rule (distance, then neighbor index, then shift): a Dense
list's rows are ranked here, a chunk of centers at a time (``_ranked_edges``), other formats by
the model (``slots_on_device=True``, ``graph/slots.py``); the numbers equal
``Potential.evaluate``'s. ``perturbation`` (JAX-MD's strain, [3, 3] or a
scalar as NPT passes it, applied to every displacement, r -> P r) makes ``quantity.stress``
work; ``box`` replaces the box given at construction (NPT). The forces are real-space
gradients for both kinds of coordinates (JAX-MD's ``space.transform`` convention), so
``shift_fn(R, force)`` works as with JAX-MD's own potentials.

Coordinates: periodic boxes take fractional coordinates in [0, 1)^3 by default
(``fractional_coordinates=True``, as ``space.periodic_general``) or real ones
(``fractional_coordinates=False``, also right for ``space.periodic`` with an orthorhombic box);
free space (``box=None``, ``space.free()``) takes real coordinates. A box is a scalar (cube),
an [3] vector (orthorhombic) or a [3, 3] matrix whose columns are the lattice vectors (the
transpose of DeePMD's and ASE's cell; JAX-MD's cell list wants it upper triangular).

Neighbor-list formats: Dense ([N, capacity], JAX-MD's default), Sparse ([2, capacity] pairs,
both directions) and OrderedSparse (i < j pairs once; each pair is used in both directions).
``energy_fn`` accepts all three because edges are ranked on the device and needed in no
particular order; Dense is the default and the only one ``neighbor_fn`` builds for
fractional coordinates: with ``fractional_coordinates=True`` JAX-MD 0.2.29's Sparse lists on
192-atom water miss about 1,400 of 4,950 pairs within the cutoff and hold as many beyond it
(Dense and real-coordinate Sparse lists are exact), so ``neighbor_fn`` refuses that combination.

Limits, checked rather than silently wrong:
- Small cells: a JAX-MD list holds each pair once, with the minimum image, so a cell whose
  perpendicular width is at most twice the cutoff (where an atom can see two images of a
  neighbor, or itself) cannot be represented. ``energy_fn`` and ``neighbor_fn`` raise a
  ``ValueError`` for such a box; a box passed inside ``jit`` (NPT) that becomes too small gives
  a NaN energy (and NaN forces). Use ``Potential.evaluate`` / the ASE calculator there.
- Overflow: when the list's capacity is too small, ``nbr.did_buffer_overflow`` is True and
  neighbors are missing; the energy is then NaN (unless ``nan_on_overflow=False``). Reallocate
  with ``nbr_fn.allocate(R)`` and repeat the steps (JAX-MD's usual loop; see the tests).

Compact layouts (speed): by default ``energy_fn`` lays out every ``sel`` slot of each
descriptor block. ``energy_fn(..., layout=md_layout(pot, species, R0, box))`` lays out, for
each block whose empty slots contribute nothing (``compactable_blocks``), only the most
neighbors any atom of R0 has within that block's cutoff plus a margin (25 %, rounded up to a
multiple of 8, at most ``sel``): the same numbers (to rounding) at about half the cost of an MD
step on 192-atom water. The energy checks on the device that no atom has more neighbors within
a compacted block's cutoff than its slots and is otherwise NaN, as on list overflow (unless
``nan_on_overflow=False``); then choose a larger layout from the current positions (the
``dpa2-jax md`` driver, ``md/simulate.py``, does that and redoes the chunk).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import jraph
import numpy as np
from jax_md import partition, space

from dpa2_jax.data.frames import atom_type_indices
from dpa2_jax.descriptor import Layout, family_of
from dpa2_jax.graph import batch_graphs, frame_to_graph
from dpa2_jax.model.energy import dtype_of, make_atomic_energy_fn
from dpa2_jax.md.neighbor_list import lean_neighbor_list
from dpa2_jax.model.layout import SLOT_MULTIPLE, max_neighbors
from dpa2_jax.io.convert import load
from dpa2_jax.model.potential import Potential
from dpa2_jax.nn.chunking import NodeChunks
from dpa2_jax.typing import Array

NeighborListFormat = partition.NeighborListFormat


def cell_from_box(box) -> Array:
    """DeePMD/ASE cell (rows are lattice vectors) [3, 3] from a JAX-MD box (scalar, [3], or
    [3, 3] with columns the lattice vectors)."""
    box = jnp.asarray(box)
    if box.ndim == 0 or box.size == 1:
        return jnp.eye(3, dtype=box.dtype) * box.reshape(())
    if box.ndim == 1:
        return jnp.diag(box)
    return box.T


def box_from_cell(cell) -> np.ndarray:
    """JAX-MD box (columns are lattice vectors) from a cell whose rows are lattice vectors."""
    return np.asarray(cell).T.copy()


def perpendicular_widths(cell) -> Array:
    """Distances between opposite faces of the cell [3], Angstrom (rows are lattice vectors)."""
    return 1.0 / jnp.linalg.norm(jnp.linalg.inv(cell), axis=0)


def _check_box(box, cutoff: float, what: str) -> None:
    """Raises ValueError if a concrete box is at most twice ``cutoff`` wide."""
    if box is None:
        return
    try:
        box = np.asarray(box, np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return  # inside jit: energy_fn returns NaN instead
    cell = np.eye(3) * box if box.ndim == 0 else np.diag(box) if box.ndim == 1 else box.T
    widths = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)
    if widths.min() <= 2.0 * cutoff:
        raise ValueError(
            f"{what}: the box's perpendicular widths {np.round(widths, 4).tolist()} A are not all "
            f"larger than twice the cutoff ({2.0 * cutoff:g} A): a JAX-MD neighbor list holds one "
            "image per pair, so atoms that see several images of a neighbor (or of themselves) "
            "would get wrong energies. Use a supercell, or Potential.evaluate / DPA2Calculator, "
            "which handle small cells"
        )


def _potential(pot: Potential | str) -> Potential:
    return pot if isinstance(pot, Potential) else load(pot)


def neighbor_fn(
    pot: Potential | str,
    box=None,
    *,
    fractional_coordinates: bool = True,
    dr_threshold: float = 0.0,
    capacity_multiplier: float = 1.25,
    format: NeighborListFormat = NeighborListFormat.Dense,
    chunked: bool = True,
    **kwargs,
) -> partition.NeighborListFns:
    """A JAX-MD neighbor list for the model: cutoff ``rcut + dr_threshold``.

    Periodic Dense lists are built a chunk of atoms at a time (``md/neighbor_list.py``: the
    same pairs as ``jax_md.partition.neighbor_list``, in JAX-MD's types, without its
    [N, 27 x cell capacity] candidate arrays); other formats, free space, ``chunked=False``
    or extra ``kwargs`` use ``jax_md.partition.neighbor_list`` itself.

    Args:
      pot: a loaded ``Potential`` (or a path for ``dpa2_jax.load``).
      box: JAX-MD box (module docstring), or None for free space (all-pairs search: fine for
        molecules; no cell list is needed there).
      fractional_coordinates: positions in [0, 1)^3 (True, JAX-MD's ``periodic_general``
        default) or in Angstrom (False). Ignored in free space.
      dr_threshold: JAX-MD's skin, Angstrom: the list is rebuilt only when an atom has moved
        more than half of it; the model still cuts at ``rcut`` exactly.
      capacity_multiplier: spare capacity over the allocating configuration's neighbors.
      format: Dense (default), Sparse or OrderedSparse (these two only with real or free-space
        coordinates; module docstring); ``energy_fn`` accepts each.
      chunked: periodic Dense lists from ``md/neighbor_list.py`` (False: JAX-MD's own).
      **kwargs: passed to ``partition.neighbor_list`` (e.g. ``disable_cell_list``).

    Raises:
      ValueError: the box is not wider than twice ``rcut + dr_threshold`` (module docstring).
    """
    pot = _potential(pot)
    cutoff = pot.rcut + dr_threshold
    if box is None:
        displacement, _ = space.free()
        kwargs.setdefault("disable_cell_list", True)
        return partition.neighbor_list(
            displacement, 1.0, pot.rcut, dr_threshold, capacity_multiplier,
            format=format, **kwargs,
        )  # fmt: skip
    _check_box(box, cutoff, "neighbor_fn")
    if fractional_coordinates and format is not NeighborListFormat.Dense:
        raise ValueError(
            f"neighbor_fn: format={format.name} with fractional_coordinates=True gives wrong "
            "pair lists in JAX-MD 0.2.29 (module docstring); use format=Dense, or real "
            "coordinates (fractional_coordinates=False) for Sparse/OrderedSparse"
        )
    if chunked and format is NeighborListFormat.Dense and not kwargs:
        return lean_neighbor_list(box, pot.rcut, dr_threshold, capacity_multiplier,
                                  fractional_coordinates=fractional_coordinates)  # fmt: skip
    displacement, _ = space.periodic_general(box, fractional_coordinates=fractional_coordinates)
    fns = partition.neighbor_list(
        displacement, box, pot.rcut, dr_threshold, capacity_multiplier,
        fractional_coordinates=fractional_coordinates, format=format, **kwargs,
    )  # fmt: skip
    return _static_cell_size(fns)


def _static_cell_size(fns: partition.NeighborListFns) -> partition.NeighborListFns:
    """Lists whose static ``cell_size`` is a Python float rather than a JAX array.

    JAX-MD 0.2.29 stores it as an array in the list's pytree metadata; comparing two such
    lists' tree structures inside a trace (a second simulation's ``init_fn`` in one process)
    then fails with a TracerBoolConversionError.
    """

    def allocate(position, extra_capacity: int = 0, **kwargs):
        nbr = fns.allocate(position, extra_capacity, **kwargs)
        size = nbr.cell_size
        if size is not None and np.ndim(size) == 0:
            nbr = nbr.set(cell_size=float(size))
        return nbr

    return partition.NeighborListFns(allocate, fns.update)


def md_layout(
    pot: Potential | str,
    species: Sequence[int] | Sequence[str] | np.ndarray,
    R,
    box=None,
    *,
    fractional_coordinates: bool = True,
    margin: float = 0.25,
    at_least: Sequence[int] | None = None,
) -> Layout:
    """A compact layout for MD starting from positions ``R`` (module docstring).

    Args:
      pot, species, box, fractional_coordinates: as ``energy_fn``.
      R: [N, 3] positions as ``energy_fn`` takes them (host values, not traced).
      margin: spare slots over R's most neighbors per block, as a fraction (0.25: 25 % more),
        rounded up to a multiple of 8 and capped at the block's ``sel``.
      at_least: per compactable block, slots the layout must exceed unless at ``sel`` (to grow
        a layout that overflowed: each such block gets at least (1 + margin) times as many).

    Returns:
      ``Layout`` with one slot count per ``compactable_blocks`` entry (``sel`` for blocks that
      are not exact).
    """
    pot = _potential(pot)
    desc = pot.config.descriptor
    types = atom_type_indices(species, pot.type_map)
    R = np.asarray(R, np.float64)
    cell = None if box is None else np.asarray(cell_from_box(np.asarray(box, np.float64)))
    x = R @ cell if cell is not None and fractional_coordinates else R
    batch = batch_graphs([frame_to_graph(x, types, cell, desc.rcut, desc.sel, dtype=np.float64)])
    blocks = family_of(desc).compactable_blocks(pot.params["descriptor"], desc)
    old = at_least if at_least is not None else (0,) * len(blocks)
    slots = []
    for block, before in zip(blocks, old, strict=True):
        if not block.exact:
            slots.append(block.sel)
            continue
        want = max(max_neighbors([batch], block.rcut), before) * (1.0 + margin)
        want = max(SLOT_MULTIPLE, -(-int(np.ceil(want)) // SLOT_MULTIPLE) * SLOT_MULTIPLE)
        slots.append(min(block.sel, want))
    return Layout(node_chunk=pot.node_chunk, slots=tuple(slots))


def _compact_blocks(pot: Potential, layout: Layout | None) -> tuple[Layout, tuple]:
    """The layout (None: every ``sel`` slot) and the descriptor's ``compactable_blocks``.

    Raises:
      ValueError: ``layout.slots`` does not hold one slot count per compactable block.
    """
    layout = Layout() if layout is None else layout
    desc = pot.config.descriptor
    blocks = family_of(desc).compactable_blocks(pot.params["descriptor"], desc)
    if layout.slots is not None and len(layout.slots) != len(blocks):
        raise ValueError(
            f"layout.slots={layout.slots}: expected one slot count per compactable block "
            f"({len(blocks)}: {blocks}); use md_layout"
        )
    return layout, blocks


def _call_box(box, default_box, rcut: float, dtype):
    """The box of one call: ``box=`` (checked, as ``dtype``) or the construction's; None in
    free space, where a ``box=`` keyword is ignored."""
    if default_box is None:
        return None
    _check_box(box, rcut, "energy_fn(box=...)")
    return default_box if box is None else jnp.asarray(box, dtype)


def _coordinates(R: Array, box, fractional: bool, dtype) -> tuple[Array, Array, Array | None]:
    """(x [N, 3] real positions A, cell [3, 3] A, u [N, 3] fractional ones) from R [N, 3].

    Fractional R maps to x = box R with ``space.transform``, so gradients stay in real space.
    Free space (box None): x = R, a zero cell and no u.
    """
    if box is None:
        return R, jnp.zeros((3, 3), dtype), None
    cell = cell_from_box(box)
    if fractional:
        return space.transform(box, R), cell, R
    return R, cell, R @ jnp.linalg.inv(cell)


def _edges(idx: Array, fmt: NeighborListFormat, n_atoms: int) -> tuple[Array, Array]:
    """(receivers = centers, senders = neighbors) [n_edge] from a JAX-MD list; empty entries
    (index n_atoms) stay n_atoms."""
    if fmt is NeighborListFormat.Dense:
        receivers = jnp.repeat(jnp.arange(n_atoms, dtype=jnp.int32), idx.shape[1])
        senders = idx.reshape(-1).astype(jnp.int32)
        return jnp.where(senders < n_atoms, receivers, n_atoms), senders
    receivers, senders = idx[0].astype(jnp.int32), idx[1].astype(jnp.int32)
    if fmt is NeighborListFormat.OrderedSparse:  # i < j once: use both directions
        receivers, senders = (
            jnp.concatenate([receivers, senders]),
            jnp.concatenate([senders, receivers]),
        )
    empty = (receivers >= n_atoms) | (senders >= n_atoms)
    return jnp.where(empty, n_atoms, receivers), jnp.where(empty, n_atoms, senders)


def _list_edges(neighbor, n_atoms: int) -> tuple[Array, Array, Array]:
    """(receivers, senders) [n_edge] and the overflow flag [] of a JAX-MD neighbor list."""
    return *_edges(neighbor.idx, neighbor.format, n_atoms), neighbor.did_buffer_overflow


def _image_shifts(u: Array | None, receivers: Array, senders: Array, dtype) -> Array:
    """Integer image shifts [n_edge, 3] of JAX-MD's minimum image, n = -floor(u_j - u_i + 1/2),
    from fractional positions u [N, 3] (the padding index N reads zeros); constants for the
    gradient. Free space (u None): zeros."""
    if u is None:
        return jnp.zeros((senders.shape[0], 3), dtype)
    u_pad = jax.lax.stop_gradient(jnp.concatenate([u, jnp.zeros((1, 3), dtype)]))  # [N + 1, 3]
    return -jnp.floor(u_pad[senders] - u_pad[receivers] + 0.5)


def _dense_idx(neighbor, n_atoms: int) -> tuple[Array, Array] | None:
    """([N, capacity] neighbor indices (N where empty), overflow flag) of a Dense JAX-MD list;
    None for another format. neighbor None: every pair, as a list that never overflows."""
    if neighbor is None:
        idx = jnp.broadcast_to(jnp.arange(n_atoms), (n_atoms, n_atoms))
        return jnp.where(jnp.eye(n_atoms, dtype=bool), n_atoms, idx), jnp.zeros((), bool)
    if neighbor.format is not NeighborListFormat.Dense:
        return None
    return neighbor.idx, neighbor.did_buffer_overflow


def _rank_rows(rows, idx, x_pad, u_pad, cell, rcut: float, sel: int, cutoffs: tuple):
    """The model's ``sel`` nearest neighbors within ``rcut`` of some centers, from their rows
    of a Dense list, by the host's rule (``graph/slots.py``: distance, then neighbor index,
    then image shift); no gradient.

    Args:
      rows: [c] center indices (N for padding rows); idx: [c, capacity] their list rows.
      x_pad, u_pad: [N + 1, 3] real and fractional positions (u_pad None in free space).
      cutoffs: block cutoffs to count neighbors within (plus 1e-6 A, as ``model/layout.py``).

    Returns:
      senders [c, sel] (N where empty), shifts [c, sel, 3], kept [c, sel], and the most
      neighbors of any of these centers within each cutoff [len(cutoffs)].
    """
    n_atoms = x_pad.shape[0] - 1
    if idx.shape[1] < sel:  # fewer candidates than slots: pad with empty ones
        idx = jnp.pad(idx, ((0, 0), (0, sel - idx.shape[1])), constant_values=n_atoms)
    if u_pad is None:
        shifts = jnp.zeros((*idx.shape, 3), x_pad.dtype)
    else:  # JAX-MD's minimum image, n = -floor(u_j - u_i + 1/2)
        shifts = -jnp.floor(u_pad[idx] - u_pad[rows][:, None] + 0.5)
    diff = x_pad[idx] - x_pad[rows][:, None] + jnp.einsum("cjk,kd->cjd", shifts, cell)
    dist = jnp.sqrt(jnp.sum(diff * diff, axis=-1))  # [c, capacity]
    real = (idx < n_atoms) & (rows < n_atoms)[:, None]
    is_self = (idx == rows[:, None]) & jnp.all(shifts == 0, axis=-1)
    valid = real & (dist <= rcut) & ~is_self
    most = jnp.array([jnp.max(jnp.sum(real & (dist <= c + 1e-6), axis=1)) for c in cutoffs],
                     jnp.int32).reshape(len(cutoffs))  # fmt: skip
    n = shifts.astype(jnp.int32)
    keys = ((~valid).astype(jnp.int32), dist, idx.astype(jnp.int32), n[..., 0], n[..., 1],
            n[..., 2])  # fmt: skip
    order = jnp.broadcast_to(jnp.arange(idx.shape[1]), idx.shape)
    *_, order = jax.lax.sort((*keys, order), dimension=1, num_keys=len(keys))
    order = order[:, :sel]
    kept = jnp.take_along_axis(valid, order, axis=1)
    senders = jnp.where(kept, jnp.take_along_axis(idx, order, axis=1), n_atoms)
    shifts = jnp.take_along_axis(shifts, order[..., None], axis=1)
    return senders, jnp.where(kept[..., None], shifts, 0.0), kept, most


def _ranked_edges(idx, x, cell, u, rcut: float, sel: int, cutoffs: tuple, chunk: int):
    """Edges already in the model's slots, from a Dense list (``_rank_rows`` one chunk of
    centers at a time, so that no [N, capacity, 3] array exists): (receivers, senders, shifts
    [N sel, 3], slot [N sel], most neighbors within each cutoff); empty slots point at the
    padding node N with slot -1."""
    n_atoms = x.shape[0]
    x_pad = jax.lax.stop_gradient(jnp.concatenate([x, jnp.zeros((1, 3), x.dtype)]))
    u_pad = None if u is None else jax.lax.stop_gradient(
        jnp.concatenate([u, jnp.zeros((1, 3), u.dtype)])
    )  # fmt: skip
    cell = jax.lax.stop_gradient(cell)
    chunks = NodeChunks.of(n_atoms, chunk)
    rows = jnp.arange(n_atoms, dtype=jnp.int32)

    def one(rows_and_idx):
        return _rank_rows(*rows_and_idx, x_pad, u_pad, cell, rcut, sel, cutoffs)

    pad = chunks.count * chunks.size - n_atoms
    rows_c = jnp.pad(rows, (0, pad), constant_values=n_atoms).reshape(chunks.count, -1)
    idx_c = chunks.split(jnp.asarray(idx, jnp.int32))
    senders, shifts, kept, most = jax.lax.map(one, (rows_c, idx_c))
    senders, shifts, kept = (chunks.merge(a).reshape(n_atoms * sel, *a.shape[3:])
                             for a in (senders, shifts, kept))  # fmt: skip
    receivers = jnp.where(kept, jnp.repeat(rows, sel), n_atoms)
    slot = jnp.where(kept, jnp.tile(jnp.arange(sel, dtype=jnp.int32), n_atoms), -1)
    return receivers, senders, shifts, slot, jnp.max(most, axis=0)


def _strained(x: Array, cell: Array, perturbation, dtype) -> tuple[Array, Array]:
    """x [N, 3] and cell [3, 3] under JAX-MD's strain r -> P r: every displacement, through
    both. P is [3, 3] or a scalar (NPT passes 1 + eps); None leaves them as they are."""
    if perturbation is None:
        return x, cell
    P = jnp.asarray(perturbation, dtype)
    P = P * jnp.eye(3, dtype=dtype) if P.ndim == 0 else P  # [3, 3]
    return x @ P.T, cell @ P.T


def _padded_graph(types, x, cell, edges, fparam, aparam, dtype, slot=None):
    """The frame as the model's graph plus one padding node and one padding graph.

    Args:
      types: [N] type indices; x: [N, 3] A; cell: [3, 3] A (rows are lattice vectors).
      edges: (receivers, senders, shifts), [n_edge] [n_edge] [n_edge, 3]; empty entries point
        at the padding node N (its self-loops, never kept).
      fparam: [numb_fparam] or None; aparam: [N, numb_aparam] or None.
      slot: [n_edge] each edge's slot (``_ranked_edges``), or None: ranked inside the model.

    Returns:
      (graph, positions [N + 1, 3] A, cells [2, 3, 3] A).
    """
    receivers, senders, shifts = edges
    n_atoms, n_edge = types.shape[0], senders.shape[0]
    positions = jnp.concatenate([x, jnp.zeros((1, 3), dtype)])  # + one padding node
    cells = jnp.stack([cell, jnp.zeros((3, 3), dtype)])  # + the padding graph
    nodes = {"species": jnp.concatenate([types, jnp.zeros((1,), jnp.int32)]),
             "positions": positions}  # fmt: skip
    globals_ = {"cell": cells}
    if fparam is not None:  # [numb_fparam] for the frame; the padding graph gets zeros
        fparam = jnp.asarray(fparam, dtype).reshape(1, -1)
        globals_["fparam"] = jnp.concatenate([fparam, jnp.zeros_like(fparam)])
    if aparam is not None:  # [N, numb_aparam]
        aparam = jnp.asarray(aparam, dtype).reshape(n_atoms, -1)
        nodes["aparam"] = jnp.concatenate([aparam, jnp.zeros_like(aparam[:1])])
    slot = jnp.full((n_edge,), -1, jnp.int32) if slot is None else slot
    edge_fields = {"shifts": shifts, "slot": slot}
    graph = jraph.GraphsTuple(nodes=nodes, edges=edge_fields, senders=senders,
                              receivers=receivers, globals=globals_,
                              n_node=jnp.array([n_atoms, 1], jnp.int32),
                              n_edge=jnp.array([n_edge, 0], jnp.int32))  # fmt: skip
    return graph, positions, cells


def _slot_overflow(layout: Layout, blocks, positions, cell, edges, n_atoms: int) -> Array:
    """Whether an atom has more neighbors within a compacted block's cutoff than its slots
    (plus 1e-6 A, as ``model/layout.py`` counts: erring towards NaN, never towards a wrong
    energy). positions [N + 1, 3], cell [3, 3] and edges (receivers, senders, shifts) as in
    ``energy_fn``'s trace; no gradient flows through the count."""
    if layout.slots is None:
        return jnp.zeros((), bool)
    receivers, senders, shifts = edges
    positions, cell = jax.lax.stop_gradient(positions), jax.lax.stop_gradient(cell)
    diff = positions[senders] - positions[receivers] + shifts @ cell  # [n_edge, 3]
    dist = jnp.linalg.norm(diff, axis=-1)  # [n_edge]
    real = senders < n_atoms
    bad = jnp.zeros((), bool)
    for block, slots in zip(blocks, layout.slots, strict=True):
        if slots >= block.sel:  # all slots laid out: the full layout's numbers
            continue
        within = (real & (dist <= block.rcut + 1e-6)).astype(jnp.int32)
        counts = jax.ops.segment_sum(within, receivers, num_segments=n_atoms + 1)  # [N + 1]
        bad = bad | (jnp.max(counts[:n_atoms]) > slots)
    return bad


def _too_narrow(cell: Array, rcut: float) -> Array:
    """Whether the cell [3, 3] is at most 2 rcut wide somewhere (bool []), without gradient."""
    return jnp.min(perpendicular_widths(jax.lax.stop_gradient(cell))) <= 2 * rcut


def _nan_where(e: Array, bad: Array) -> Array:
    """e, or NaN (keeping the dtype) where ``bad``."""
    return e * jnp.where(bad, jnp.nan, 1.0).astype(e.dtype)


def energy_fn(
    pot: Potential | str,
    species: Sequence[int] | Sequence[str] | np.ndarray,
    box=None,
    head: str | None = None,
    *,
    fractional_coordinates: bool = True,
    layout: Layout | None = None,
    nan_on_overflow: bool = True,
) -> Callable[..., Array]:
    """The model as a JAX-MD energy function ``E(R, neighbor=None, **kwargs) -> eV``.

    Args:
      pot: a loaded ``Potential`` (or a path for ``dpa2_jax.load``).
      species: [N] type indices into ``pot.type_map`` or element symbols (static).
      box: JAX-MD box (module docstring) or None for free space; a ``box=`` keyword at call
        time replaces it (``quantity.stress``, NPT).
      head: fitting head of a multi-head model.
      fractional_coordinates: whether periodic positions are fractional (module docstring).
      layout: descriptor layout; the default (None) lays out every ``sel`` slot. A compact
        one (``md_layout``, module docstring) is faster; the energy is NaN whenever an atom
        has more neighbors within a compacted block's cutoff than its slots.
      nan_on_overflow: return NaN when ``neighbor.did_buffer_overflow`` (missing neighbors)
        or a compact layout's slots are too few (False: neither is checked).

    The returned function takes R [N, 3] (fractional or Angstrom) and keywords: ``neighbor``
    (a JAX-MD ``NeighborList`` of any format, from ``neighbor_fn``; None uses all pairs, fine
    for small molecules), ``box``, ``perturbation`` [3, 3] or scalar (JAX-MD's strain),
    ``params`` (to evaluate other parameters of the same model), ``fparam`` [numb_fparam] and
    ``aparam`` [N, numb_aparam] for heads that take them; other keywords are ignored, as
    JAX-MD's energies do. It is pure and jittable; jit it, or the integrator that calls it.

    Raises:
      ValueError: the box is not wider than twice ``rcut`` (module docstring).
    """
    pot = _potential(pot)
    types = jnp.asarray(atom_type_indices(species, pot.type_map))  # [N]
    n_atoms, rcut, dtype = int(types.shape[0]), float(pot.rcut), dtype_of(pot.config)
    _check_box(box, rcut, "energy_fn")
    default_box = None if box is None else jnp.asarray(box, dtype)
    layout, blocks = _compact_blocks(pot, layout)
    # Dense lists arrive ranked (``_ranked_edges``); other formats are ranked by the model
    ranked_fn = make_atomic_energy_fn(pot.config, head=head, layout=layout)
    unranked_fn = make_atomic_energy_fn(pot.config, head=head, layout=layout, slots_on_device=True)
    compacted = [(b.rcut, k) for b, k in zip(blocks, layout.slots or (), strict=False) if k < b.sel]
    sel, default_params = pot.config.descriptor.sel, pot.params

    def energy(R, neighbor=None, box=None, perturbation=None, params=None, fparam=None,
               aparam=None, **unused):  # fmt: skip
        if R.shape != (n_atoms, 3):
            raise ValueError(f"R: expected shape ({n_atoms}, 3), got {R.shape}")
        R = R.astype(dtype)
        box = _call_box(box, default_box, rcut, dtype)
        x, cell, u = _coordinates(R, box, fractional_coordinates, dtype)
        x, cell = _strained(x, cell, perturbation, dtype)
        # the species are constants of the trace: hidden from XLA, which would otherwise fold
        # every per-atom array they determine into the program (compile time and memory
        # growing with the atoms; a 98,304-atom step needed 15 GB to compile)
        species = jax.lax.optimization_barrier(types)
        params = default_params if params is None else params
        dense = _dense_idx(neighbor, n_atoms)
        if dense is not None:
            idx, overflow = dense
            *edges, slot, most = _ranked_edges(idx, x, cell, u, rcut, sel,
                                               tuple(c for c, _ in compacted), layout.node_chunk)  # fmt: skip
            graph, positions, cells = _padded_graph(species, x, cell, edges, fparam, aparam,
                                                    dtype, slot)  # fmt: skip
            e = jnp.sum(ranked_fn(params, graph, positions, cells)[:n_atoms])
            too_few = jnp.any(most > jnp.array([k for _, k in compacted], most.dtype))
        else:
            receivers, senders, overflow = _list_edges(neighbor, n_atoms)
            edges = (receivers, senders, _image_shifts(u, receivers, senders, dtype))
            graph, positions, cells = _padded_graph(species, x, cell, edges, fparam, aparam, dtype)
            e = jnp.sum(unranked_fn(params, graph, positions, cells)[:n_atoms])
            too_few = _slot_overflow(layout, blocks, positions, cells[0], edges, n_atoms)
        bad = jnp.zeros((), bool)
        if nan_on_overflow:
            bad = bad | overflow | too_few
        if box is not None:
            bad = bad | _too_narrow(cell, rcut)
        return _nan_where(e, bad)

    return energy
