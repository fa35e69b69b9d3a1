"""The model as pure functions: parameters, then graph -> atomic energies -> energy per graph.

    E_i = fitting_head(D_i, fparam_g, aparam_i) + out_bias_head[t_i]  (0 for atom_exclude_types)
    E_g = sum over the real atoms i of graph g

Frame parameters come from ``graph.globals["fparam"]`` [n_graph, numb_fparam] and atomic
parameters from ``graph.nodes["aparam"]`` [n_node, numb_aparam] when the head has them.
Model-level ``pair_exclude_types`` drop those edges before the descriptor; the kept neighbors
behind them move up, so the smaller lists (three-body, repformer) are filled as in DeePMD-kit
(``exclude_pairs``).

``make_energy_fn(cfg, head)`` returns ``energy_fn(params, graph, positions, cells)``, the one
function evaluation, training and MD share (forces and virials: ``derivatives.py``). It is not
jitted: callers jit it (``Potential`` keeps one compiled copy per shape) or trace it inside their
own programs (a training step, a JAX-MD integrator). The descriptor is found through its family
(``dpa2_jax.descriptor``), never imported by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from dpa2_jax.descriptor import Layout, family_of
from dpa2_jax.descriptor.env_mat import dense_slots
from dpa2_jax.errors import ConfigError
from dpa2_jax.fitting import energy as energy_fitting
from dpa2_jax.fitting.energy import FittingConfig
from dpa2_jax.graph import fields
from dpa2_jax.graph.slots import select_slots
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.nn.chunking import map_nodes
from dpa2_jax.typing import Array, Params, PRNGKey

# energy_fn(params, graph, positions [n_node, 3] A, cells [n_graph, 3, 3] A) -> [n_graph] eV
EnergyFn = Callable[[Params, jraph.GraphsTuple, Array, Array], Array]


def dtype_of(cfg: ModelConfig):
    """The float dtype the model computes in."""
    return jnp.float64 if cfg.descriptor.precision == "float64" else jnp.float32


def init(key: PRNGKey, cfg: ModelConfig) -> Params:
    """Initial parameters {"descriptor": ..., "heads": {name: {"fitting", "out_bias"}}}.

    DeePMD-kit's distributions (``nn/mlp.py``), drawn on the host from a numpy generator seeded
    by ``key``: the same key gives the same parameters, in milliseconds, with no compilation.
    Statistics start neutral (davg = 0, dstd = 1, biases 0) until computed from data.
    """
    seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
    rng = np.random.default_rng(seed)
    dtype = np.float64 if cfg.descriptor.precision == "float64" else np.float32
    ntypes = cfg.descriptor.ntypes
    params = {"descriptor": family_of(cfg.descriptor).init(rng, cfg.descriptor), "heads": {}}
    for name, fit in cfg.heads:
        params["heads"][name] = {
            "fitting": energy_fitting.init(rng, fit, cfg.descriptor.dim_out, ntypes, dtype),
            "out_bias": np.zeros((ntypes,), dtype),
        }
    return jax.tree.map(jnp.asarray, params)


def make_atomic_energy_fn(
    cfg: ModelConfig,
    head: str | None = None,
    layout: Layout = Layout(),
    slots_on_device: bool = False,
) -> Callable[[Params, jraph.GraphsTuple, Array, Array], Array]:
    """``atomic_energy_fn(params, graph, positions, cells) -> [n_node]`` atomic energies, eV.

    Args:
      cfg: the model; head: a name in ``cfg.head_names`` (None for a single-head model).
      layout: runtime knobs of the descriptor (chunk size, compact slots); never the numbers.
      slots_on_device: rank the graph's edges by distance inside the function
        (``graph/slots.py``) instead of reading the host-ranked ``edges["slot"]``: for edges
        that come unsorted or reach beyond the cutoff (JAX-MD neighbor lists).

    The returned function reads the graph's topology, species and shifts; ``positions``
    [n_node, 3] and ``cells`` [n_graph, 3, 3] (Angstrom) are explicit so they can be strained
    or differentiated. Padding nodes get meaningless values (mask them).
    """
    core = make_atomic_energy_core(cfg, head, layout, slots_on_device)

    def atomic_energy_fn(params, graph, positions, cells):
        return core(params, graph, positions, cells)[0]

    return atomic_energy_fn


def make_atomic_energy_core(
    cfg: ModelConfig,
    head: str | None = None,
    layout: Layout = Layout(),
    slots_on_device: bool = False,
) -> Callable:
    """``core(params, graph, positions, cells, delta=None) -> (atomic [n_node], Neighborhood)``.

    As ``make_atomic_energy_fn``, also returning the neighborhood the descriptor saw;
    ``delta`` [n_node, sel, 3] (Angstrom) is added to the filled edge vectors, so the gradient
    with respect to it is dE/dr_ij per edge (``derivatives.atom_virial``).
    """
    head = cfg.resolve_head(head)
    fitting_cfg = cfg.fitting(head)
    desc_cfg = cfg.descriptor
    family = family_of(desc_cfg)
    dtype = dtype_of(cfg)

    def core(params, graph, positions, cells, delta=None):
        species = fields.species(graph).astype(jnp.int32)
        positions, cells = positions.astype(dtype), cells.astype(dtype)
        slot = None
        if slots_on_device:
            slot = select_slots(graph, positions, cells, desc_cfg.rcut, desc_cfg.sel)
        if cfg.pair_exclude_types:
            slot = exclude_pairs(graph, species, cfg.pair_exclude_types, desc_cfg.sel, slot)
        layout_slots = dense_slots(graph, positions, cells, desc_cfg.sel, slot)
        if delta is not None:
            layout_slots = dataclasses.replace(layout_slots, delta=delta)
        nb = layout_slots.neighborhood(positions)
        descriptor = family.apply(params["descriptor"], desc_cfg, species, nb, layout)
        head_params = params["heads"][head]
        fparam, aparam = fitting_parameters(fitting_cfg, graph, dtype)

        def fitting(descriptor, species, fparam, aparam):
            return energy_fitting.apply(
                head_params["fitting"], fitting_cfg, descriptor, species, fparam, aparam
            )

        # over chunks of atoms, as the descriptor's blocks: its [n_node, neuron] activations
        # exist for one chunk at a time
        e = map_nodes(fitting, layout.node_chunk, (descriptor, species, fparam, aparam))
        e = e + head_params["out_bias"][species]
        for t in cfg.atom_exclude_types:
            e = jnp.where(species == t, 0.0, e)
        return e, nb

    return core


def exclude_pairs(
    graph: jraph.GraphsTuple,
    species: Array,
    pairs: tuple[tuple[int, int], ...],
    sel: int,
    slot: Array | None = None,
) -> Array:
    """Edge slots [n_edge] with the edges of excluded (center, neighbor) type pairs removed.

    Both orders of each pair are excluded (DeePMD's ``PairExcludeMask``). As in DeePMD-kit,
    exclusion acts on the nearest-``sel`` list: an excluded edge gets slot -1, no neighbor
    beyond the first ``sel`` takes its place, and the kept edges move up over the holes in
    distance order (DeePMD sorts the holes to the end before it cuts the three-body and
    repformer lists from the first slots). Edges at slot >= ``sel`` keep their slot.

    Args:
      graph: the batch; species: [n_node] int types; pairs: excluded (t_i, t_j) pairs.
      sel: slots per center (the largest ``nsel`` of the model).
      slot: [n_edge] distance ranks (-1 for none); default ``graph.edges["slot"]``.
    """
    slot = fields.slots(graph) if slot is None else slot
    ti, tj = species[graph.receivers], species[graph.senders]
    excluded = jnp.zeros(slot.shape, bool)
    for a, b in pairs:
        excluded |= ((ti == a) & (tj == b)) | ((ti == b) & (tj == a))
    n_node = species.shape[0]
    listed = (slot >= 0) & (slot < sel)
    row = jnp.where(listed, graph.receivers, n_node)  # unlisted edges go to a spare row
    col = jnp.where(listed, slot, 0)
    holes = jnp.zeros((n_node + 1, sel), jnp.int32).at[row, col].add(excluded & listed)
    holes_before = jnp.cumsum(holes, axis=1) - holes  # [n_node + 1, sel] holes nearer than a slot
    moved = jnp.where(listed, slot - holes_before[row, col], slot)
    return jnp.where(excluded, -1, moved).astype(slot.dtype)


def fitting_parameters(
    fit: FittingConfig, graph: jraph.GraphsTuple, dtype
) -> tuple[Array | None, Array | None]:
    """Per-node frame parameters [n_node, numb_fparam] and atomic parameters [n_node,
    numb_aparam] from the graph (None where the head has none); checks their presence and shape.
    """
    fparam = aparam = None
    n_node = fields.species(graph).shape[0]
    n_graph = graph.n_node.shape[0]
    if fit.numb_fparam:
        fp = fields.fparam(graph)
        if fp is None and fit.default_fparam is not None:
            fp = jnp.broadcast_to(
                jnp.asarray(fit.default_fparam, dtype), (n_graph, fit.numb_fparam)
            )
        _check_parameter("fparam", 'graph.globals["fparam"]', fp, (n_graph, fit.numb_fparam))
        fparam = fp.astype(dtype)[fields.node_graph(graph, n_node)]
    if fit.numb_aparam:
        ap = fields.aparam(graph)
        _check_parameter("aparam", 'graph.nodes["aparam"]', ap, (n_node, fit.numb_aparam))
        aparam = ap.astype(dtype)
    return fparam, aparam


def _check_parameter(name: str, where: str, value, shape: tuple[int, int]) -> None:
    if value is None:
        raise ConfigError(f"this model needs {name} (shape {list(shape)}) in {where}; none given")
    if tuple(value.shape) != shape:
        raise ConfigError(
            f"{where}: expected {name} of shape {list(shape)}, got {list(value.shape)}"
        )


def make_energy_fn(
    cfg: ModelConfig,
    head: str | None = None,
    layout: Layout = Layout(),
    slots_on_device: bool = False,
) -> EnergyFn:
    """``energy_fn(params, graph, positions, cells) -> [n_graph]`` energies per graph, eV.

    Arguments as ``make_atomic_energy_fn``. ``jnp.sum`` of the result is a scalar whose
    ``jax.grad`` with respect to positions is minus the forces.
    """
    atomic_energy_fn = make_atomic_energy_fn(cfg, head, layout, slots_on_device)

    def energy_fn(params, graph, positions, cells):
        return graph_energies(graph, atomic_energy_fn(params, graph, positions, cells))

    return energy_fn


def graph_energies(graph: jraph.GraphsTuple, atomic: Array) -> Array:
    """Sum of atomic energies per graph. atomic: [n_node] -> [n_graph]."""
    return fields.graph_sum(graph, atomic)
