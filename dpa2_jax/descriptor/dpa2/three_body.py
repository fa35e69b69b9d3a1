"""Three-body repinit (DeePMD's se_e3_tebd block, ``DescrptBlockSeTTebd``).

For center i and neighbor pair (j, k) with r~_ij the last three columns of the normalised
environment matrix:

    e_ijk = r~_ij . r~_ik
    concat: G_ijk = N([e_ijk, T_j, T_k])
    strip:  G_ijk = N(e_ijk) * (1 + sw_ij sw_ik N_t(T_j, T_k))     (sw only when smooth)
    D_i   = sum_jk e_ijk G_ijk / sel^2                                   [ng]
"""

from __future__ import annotations

import jax.numpy as jnp

from dpa2_jax.descriptor.dpa2.config import RepinitConfig
from dpa2_jax.descriptor.dpa2.repinit import (
    first_layer_has_residual,
    init_block,
    pair_type_table,
    type_projections,
)
from dpa2_jax.nn import network
from dpa2_jax.nn.mlp import dense_from_projections
from dpa2_jax.typing import Array, Params, Rng


def init(rng: Rng, cfg: RepinitConfig, ntypes: int, dtype) -> Params:
    return init_block(rng, cfg, cfg.three_body_neuron, cfg.three_body_sel, 2, ntypes, dtype)


def apply(
    params: Params,
    cfg: RepinitConfig,
    smooth: bool,
    rr: Array,
    sw: Array,
    nei_species: Array,
    tebd: Array,
) -> Array:
    """Three-body descriptor.

    Args:
      rr: [n_node, sel3, 4] normalised environment matrix, excluded pairs zeroed.
      sw: [n_node, sel3] switch, zero in empty or excluded slots.
      nei_species: [n_node, sel3] neighbor types.
      tebd: [n_type + 1, tebd_dim].

    Returns:
      [n_node, three_body_neuron[-1]]
    """
    act = cfg.activation_function
    rhat = rr[..., 1:]
    e = jnp.einsum("njd,nkd->njk", rhat, rhat)  # [n_node, sel3, sel3]
    n, sel3 = e.shape[:2]
    layers = params["embedding"]
    # Channels last ([n_node, sel3, sel3, width]) and the sum over pairs as one matrix product:
    # XLA's cost analysis of a training step of the "small" model counts 2.5 GB of memory
    # traffic in this block with one [n_node, sel3, sel3] array per channel, 1.1 GB this way.
    if cfg.tebd_input_mode == "concat":
        t_nei = tebd[nei_species]  # [n_node, sel3, tebd_dim]
        if first_layer_has_residual(cfg, cfg.three_body_neuron, 2):
            shape = (n, sel3, sel3, t_nei.shape[-1])
            x = jnp.concatenate([e[..., None], jnp.broadcast_to(t_nei[:, :, None], shape),
                                 jnp.broadcast_to(t_nei[:, None], shape)], -1)  # fmt: skip
            g = network(layers, x, act)
        else:
            w_e, (table_j, table_k) = type_projections(layers[0], tebd, 2)
            pre = (e[..., None] * w_e + table_j[nei_species][:, :, None]
                   + table_k[nei_species][:, None])  # fmt: skip
            g = network(layers[1:], dense_from_projections(layers[0], pre, act), act)
    else:
        g_s = network(layers, e[..., None], act)
        # [t_k, t_j] -> N_t([T_j, T_k]): the table is indexed [center, neighbor] = [k, j]
        table = pair_type_table(params["embedding_strip"], tebd, act, one_side=False)
        g_t = table[nei_species[:, None, :], nei_species[:, :, None]]  # [n, sel3, sel3, ng]
        if smooth:
            g_t = g_t * (sw[:, :, None] * sw[:, None, :])[..., None]
        g = g_s * g_t + g_s
    out = jnp.einsum("np,npc->nc", e.reshape(n, -1), g.reshape(n, sel3 * sel3, -1))
    nsel = cfg.three_body_sel  # DeePMD normalises by the full sel, even over fewer slots
    return out / float(nsel * nsel)
