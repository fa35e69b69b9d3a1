"""The model as pure functions: parameters, then graph -> atomic energies -> energy per graph.

    E_i = fitting_head(D_i) + out_bias_head[t_i]     (zero for atom_exclude_types)
    E_g = sum over the real atoms i of graph g

``make_energy_fn(cfg, head)`` returns ``energy_fn(params, graph, positions, cells)``, the one
function evaluation, training and MD share (forces and virials: ``derivatives.py``). It is not
jitted: callers jit it (``Potential`` keeps one compiled copy per shape) or trace it inside their
own programs (a training step, a JAX-MD integrator). The descriptor is found through its family
(``dpa2_jax.descriptor``), never imported by name.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from dpa2_jax.descriptor import Layout, family_of
from dpa2_jax.descriptor.env_mat import dense_neighborhood
from dpa2_jax.fitting import energy as energy_fitting
from dpa2_jax.graph.slots import select_slots
from dpa2_jax.model.config import ModelConfig
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
    head = cfg.resolve_head(head)
    fitting_cfg = cfg.fitting(head)
    desc_cfg = cfg.descriptor
    family = family_of(desc_cfg)
    dtype = dtype_of(cfg)

    def atomic_energy_fn(params, graph, positions, cells):
        species = graph.nodes["species"].astype(jnp.int32)
        positions, cells = positions.astype(dtype), cells.astype(dtype)
        slot = None
        if slots_on_device:
            slot = select_slots(graph, positions, cells, desc_cfg.rcut, desc_cfg.sel)
        nb = dense_neighborhood(graph, positions, cells, desc_cfg.sel, slot)
        descriptor = family.apply(params["descriptor"], desc_cfg, species, nb, layout)
        head_params = params["heads"][head]
        e = energy_fitting.apply(head_params["fitting"], fitting_cfg, descriptor, species)
        e = e + head_params["out_bias"][species]
        for t in cfg.atom_exclude_types:
            e = jnp.where(species == t, 0.0, e)
        return e

    return atomic_energy_fn


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
    n_graph = graph.n_node.shape[0]
    node_graph = jnp.repeat(jnp.arange(n_graph), graph.n_node, total_repeat_length=atomic.shape[0])
    return jax.ops.segment_sum(atomic, node_graph, num_segments=n_graph)
