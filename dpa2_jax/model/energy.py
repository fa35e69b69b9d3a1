"""Graph -> atomic energies -> energy per graph.

E_i = fitting_head(D_i) + out_bias_head[t_i]     (zero for atom_exclude_types)
E_g = sum over the real atoms i of graph g
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jraph

from dpa2_jax.descriptor import dpa2
from dpa2_jax.descriptor.env_mat import dense_neighborhood
from dpa2_jax.fitting import energy as energy_fitting
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.typing import Array, Params, PRNGKey


def init(key: PRNGKey, cfg: ModelConfig) -> Params:
    """Initial parameters {"descriptor": ..., "heads": {name: {"fitting", "out_bias"}}}.

    Compiled as one program: eagerly, the hundreds of small random draws take tens of seconds.
    """
    return _init_jit(key, cfg)


@functools.partial(jax.jit, static_argnums=1)
def _init_jit(key: PRNGKey, cfg: ModelConfig) -> Params:
    dtype = dpa2.dtype_of(cfg.descriptor)
    keys = jax.random.split(key, len(cfg.heads) + 1)
    ntypes = cfg.descriptor.ntypes
    heads = {
        name: {
            "fitting": energy_fitting.init(k, fit, cfg.descriptor.dim_out, ntypes, dtype),
            "out_bias": jnp.zeros((ntypes,), dtype),
        }
        for k, (name, fit) in zip(keys[1:], cfg.heads)
    }
    return {"descriptor": dpa2.init(keys[0], cfg.descriptor), "heads": heads}


def atomic_energies(
    params: Params,
    cfg: ModelConfig,
    graph: jraph.GraphsTuple,
    positions: Array,
    cells: Array,
    head: str,
    slots: tuple[int, int] | None = None,
) -> Array:
    """Atomic energies [n_node] in eV.

    Args:
      graph: padded batch (see ``dpa2_jax.graph``); only its topology and species are read.
      positions: [n_node, 3] Angstrom; cells: [n_graph, 3, 3] Angstrom (both may be strained).
      head: a name in ``cfg.head_names`` (static).
      slots: static (three-body, repformer) slot counts (see ``dpa2.truncation_is_exact``).
    """
    dtype = dpa2.dtype_of(cfg.descriptor)
    species = graph.nodes["species"].astype(jnp.int32)
    nb = dense_neighborhood(graph, positions.astype(dtype), cells.astype(dtype), cfg.descriptor.sel)
    descriptor = dpa2.apply(params["descriptor"], cfg.descriptor, species, nb, slots)
    head_params = params["heads"][head]
    e = energy_fitting.apply(head_params["fitting"], cfg.fitting(head), descriptor, species)
    e = e + head_params["out_bias"][species]
    for t in cfg.atom_exclude_types:
        e = jnp.where(species == t, 0.0, e)
    return e


def graph_energies(graph: jraph.GraphsTuple, atomic: Array) -> Array:
    """Sum of atomic energies per graph. atomic: [n_node] -> [n_graph]."""
    n_graph = graph.n_node.shape[0]
    node_graph = jnp.repeat(jnp.arange(n_graph), graph.n_node, total_repeat_length=atomic.shape[0])
    return jax.ops.segment_sum(atomic, node_graph, num_segments=n_graph)
