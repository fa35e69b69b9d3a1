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
from dpa2_jax.nn.mlp import network_channels
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
    layers = params["embedding"]
    # Channel by channel ([n_node, sel3, sel3] arrays): the pair tensor is the largest of
    # the model and the network is narrow, so this layout is the fast one (see nn.mlp).
    if cfg.tebd_input_mode == "concat":
        t_nei = tebd[nei_species]  # [n_node, sel3, tebd_dim]
        if first_layer_has_residual(cfg, cfg.three_body_neuron, 2):
            xs = [e] + [
                jnp.broadcast_to(t_nei[:, :, None, c], e.shape) for c in range(cfg.tebd_dim)
            ]
            xs += [jnp.broadcast_to(t_nei[:, None, :, c], e.shape) for c in range(cfg.tebd_dim)]
            g = network_channels(layers, xs, act)
        else:
            w_e, (table_j, table_k) = type_projections(layers[0], tebd, 2)
            p_j = table_j[nei_species]  # [n_node, sel3, d_out]
            p_k = table_k[nei_species]
            pre = [
                e * w_e[c] + p_j[:, :, None, c] + p_k[:, None, :, c] for c in range(w_e.shape[0])
            ]
            g = network_channels(layers, pre, act, first_pre=True)
    else:
        g_s = network_channels(layers, [e], act)
        # [t_k, t_j] -> N_t([T_j, T_k]): the table is indexed [center, neighbor] = [k, j]
        table = pair_type_table(params["embedding_strip"], tebd, act, one_side=False)
        pair_index = nei_species[:, None, :] * tebd.shape[0] + nei_species[:, :, None]
        sw2 = sw[:, :, None] * sw[:, None, :] if smooth else None
        g = []
        for c, gs in enumerate(g_s):
            g_t = table[..., c].reshape(-1)[pair_index]  # [n_node, sel3, sel3]
            if smooth:
                g_t = g_t * sw2
            g.append(gs * g_t + gs)
    out = [jnp.sum(e * gc, axis=(1, 2)) for gc in g]  # sum_jk e_jk G_jk, per channel
    nsel = cfg.three_body_sel  # DeePMD normalises by the full sel, even over fewer slots
    return jnp.stack(out, axis=-1) / float(nsel * nsel)
