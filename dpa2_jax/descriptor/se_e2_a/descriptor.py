"""The se_e2_a (DeepPot-SE) descriptor (DeePMD's ``DescrptSeA.call``, dpmodel/descriptor/se_e2_a.py).

For center i with the neighbor slots grouped by neighbor type (``group_by_type``):

    R~_ij  = (R_ij - davg[t_i, j]) / dstd[t_i, j]      (env_mat.py; 0 for excluded pairs)
    G_ij   = N_{t_j}(R~_ij,0)   or  N_{t_i, t_j}(R~_ij,0) without type_one_side      [ng]
    T_i    = (1 / sum(sel)) sum_j G_ij (x) R~_ij                                   [ng, 4]
    D_i    = T_i T_i<^T,   T_i< = the first axis_neuron rows of T_i         [ng * axis_neuron]

Empty slots are summed too: their R~ is -davg/dstd (not zero), as in DeePMD.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from dpa2_jax.data.system import Frame
from dpa2_jax.descriptor.env_mat import (
    Neighborhood,
    environment_matrix,
    normalize,
    pair_exclusion_mask,
)
from dpa2_jax.descriptor.env_mat_stats import block_statistics
from dpa2_jax.descriptor.family import Block, Layout
from dpa2_jax.descriptor.se_e2_a.config import SeE2AConfig
from dpa2_jax.descriptor.se_e2_a.tabulate import tabulated_embedding
from dpa2_jax.nn import init_network, network
from dpa2_jax.nn.chunking import map_nodes
from dpa2_jax.typing import Array, Params, Rng


def init(rng: Rng, cfg: SeE2AConfig) -> Params:
    """Initial parameters {"block": {"embeddings", "davg", "dstd"}}; davg = 0, dstd = 1
    until computed from data. ``embeddings`` is in DeePMD's NetworkCollection order: index
    t_j with type_one_side, else t_i + ntypes * t_j."""
    dtype = np.float64 if cfg.precision == "float64" else np.float32
    nets = [
        init_network(rng, 1, cfg.neuron, cfg.resnet_dt, dtype=dtype)
        for _ in range(cfg.n_embeddings)
    ]
    return {
        "block": {
            "embeddings": nets,
            "davg": np.zeros((cfg.ntypes, cfg.sel, 4), dtype),
            "dstd": np.ones((cfg.ntypes, cfg.sel, 4), dtype),
        }
    }


def group_by_type(nb: Neighborhood, species: Array, type_sel: tuple[int, ...]) -> Neighborhood:
    """Regroups distance-ordered slots into DeePMD's per-type sections.

    Slot group t (``type_sel[t]`` slots, groups in type order) holds the neighbors of type t
    in distance order, truncated to ``type_sel[t]`` (DeePMD's ``nlist_distinguish_types`` on
    the nearest-``sum(sel)`` list). Static shapes: a running count of each type along the slot
    axis gives every neighbor its destination slot; one scatter of slot numbers builds the
    gather that moves index and r_ij (so gradients flow through a plain gather).

    Args:
      nb: [n_node, sum(type_sel)] distance-ordered slots.
      species: [n_node] int32.

    Returns:
      the same neighbors in [n_node, sum(type_sel)] type-grouped slots.
    """
    n_node, nsel = nb.index.shape
    nei = species[nb.index]  # [n_node, nsel]
    dest = jnp.full((n_node, nsel), nsel, jnp.int32)  # nsel = dropped
    start = 0
    for t, count in enumerate(type_sel):
        pick = nb.mask & (nei == t)
        rank = jnp.cumsum(pick, axis=1, dtype=jnp.int32) - 1  # [n_node, nsel]
        dest = jnp.where(pick & (rank < count), start + rank, dest)
        start += count
    rows = jnp.arange(n_node)[:, None]
    source = (
        jnp.full((n_node, nsel), -1, jnp.int32)
        .at[rows, dest]
        .set(jnp.broadcast_to(jnp.arange(nsel, dtype=jnp.int32), (n_node, nsel)), mode="drop")
    )  # [n_node, nsel] source slot of each grouped slot, -1 empty
    mask = source >= 0
    source = jnp.where(mask, source, 0)
    index = jnp.take_along_axis(nb.index, source, axis=1)
    diff = jnp.take_along_axis(nb.diff, source[..., None], axis=1)  # [n_node, nsel, 3]
    return Neighborhood(index, mask, diff, nb.first).with_mask(mask)


def _type_sum(cfg: SeE2AConfig, block: Params, rr: Array, species: Array) -> Array:
    """T_i [n, ng, 4] (before 1/sum(sel)) from the normalised type-grouped rr [n, sel, 4].
    A compressed block (``tabulate.compress``) reads G from its tables instead of the nets."""
    tables = block.get("tables")

    def embed(k: int, s: Array) -> Array:  # s [n, count, 1] -> G [n, count, ng]
        if tables is not None:
            return tabulated_embedding(tables[k], s[..., 0])
        return network(block["embeddings"][k], s, cfg.activation_function)

    total = 0.0
    start = 0
    for tj, count in enumerate(cfg.type_sel):
        r = rr[:, start : start + count]  # [n, count, 4]
        start += count
        if count == 0:
            continue
        s = r[..., :1]  # [n, count, 1]
        if cfg.type_one_side:
            g = embed(tj, s)  # [n, count, ng]
        else:  # every center type's net, kept where the center has that type
            g = 0.0
            for ti in range(cfg.ntypes):
                gi = embed(ti + cfg.ntypes * tj, s)
                g = jnp.where((species == ti)[:, None, None], gi, g)
        total = total + jnp.einsum("nsg,nsk->ngk", g, r)  # [n, ng, 4]
    return total


def apply(
    params: Params,
    cfg: SeE2AConfig,
    species: Array,
    nb: Neighborhood,
    layout: Layout = Layout(),
) -> Array:
    """The per-atom descriptor.

    Args:
      species: [n_node] int32 type indices.
      nb: ``cfg.sel`` = sum(sel) distance-ordered slots (regrouped by type here).
      layout: only ``node_chunk`` is read (no compactable blocks).

    Returns:
      [n_node, neuron[-1] * axis_neuron]
    """
    block = params["block"]
    nb = group_by_type(nb.restrict(cfg.rcut, cfg.sel), species, cfg.type_sel)
    em, _ = environment_matrix(nb, cfg.rcut, cfg.rcut_smth, cfg.env_protection)
    rr = normalize(em, species, block["davg"], block["dstd"])  # [n_node, sel, 4]
    if cfg.exclude_types:
        keep = pair_exclusion_mask(species, nb, cfg.excluded_pairs)
        rr = jnp.where(keep[..., None], rr, 0.0)

    def per_node(rr, species):
        t = _type_sum(cfg, block, rr, species) / cfg.sel  # [n, ng, 4]
        d = jnp.einsum("ngk,nak->nga", t, t[:, : cfg.axis_neuron])  # [n, ng, axis_neuron]
        return d.reshape(d.shape[0], -1)

    return map_nodes(per_node, layout.node_chunk, (rr, species))


def compactable_blocks(params: Params, cfg: SeE2AConfig) -> tuple[Block, ...]:
    """None: every slot group is read in full (empty slots carry -davg/dstd)."""
    return ()


def statistics_blocks(cfg: SeE2AConfig) -> dict[str, dict]:
    """The environment matrix DeePMD's ``DescrptSeA.compute_input_stats`` pools: every slot
    of the per-type lists of every center (``type_sel``: a type's neighbors beyond its sel
    count as empty slots)."""
    return {
        "block": {
            "rcut": cfg.rcut, "rcut_smth": cfg.rcut_smth, "sel": cfg.sel,
            "set_davg_zero": cfg.set_davg_zero, "protection": cfg.env_protection,
            "exclude_types": tuple(cfg.exclude_types), "type_sel": cfg.type_sel,
        }
    }  # fmt: skip


def statistics(cfg: SeE2AConfig, frames: Sequence[Frame]) -> dict[str, dict[str, np.ndarray]]:
    """davg/dstd [ntypes, sel, 4] of every block of ``statistics_blocks`` from ``frames``."""
    return block_statistics(statistics_blocks(cfg), frames, cfg.ntypes)
