"""Three-body repinit (DeePMD's se_e3_tebd block, ``DescrptBlockSeTTebd``).

For center i and neighbor pair (j, k) with r~_ij the last three columns of the normalised
environment matrix:

    e_ijk = r~_ij . r~_ik
    concat: G_ijk = N([e_ijk, T_j, T_k])
    strip:  G_ijk = N(e_ijk) * (1 + sw_ij sw_ik N_t(T_j, T_k))     (sw only when smooth)
    D_i   = sum_jk e_ijk G_ijk / sel^2                                   [ng]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dpa2_jax.descriptor.config import RepinitConfig
from dpa2_jax.nn import init_network, network
from dpa2_jax.nn.mlp import first_layer_split, network_channels
from dpa2_jax.typing import Array, Params, PRNGKey


def init(key: PRNGKey, cfg: RepinitConfig, ntypes: int, dtype) -> Params:
    k1, k2 = jax.random.split(key)
    concat = cfg.tebd_input_mode == "concat"
    neuron = cfg.three_body_neuron
    params: Params = {
        "embedding": init_network(
            k1, 1 + (2 * cfg.tebd_dim if concat else 0), neuron, cfg.resnet_dt, dtype=dtype
        ),
        "davg": jnp.zeros((ntypes, cfg.three_body_sel, 4), dtype),
        "dstd": jnp.ones((ntypes, cfg.three_body_sel, 4), dtype),
    }
    if not concat:
        params["embedding_strip"] = init_network(
            k2, 2 * cfg.tebd_dim, neuron, cfg.resnet_dt, dtype=dtype
        )
    return params


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
        d_in, d_out = layers[0]["w"].shape
        t_nei = tebd[nei_species]  # [n_node, sel3, tebd_dim]
        if d_out in (d_in, 2 * d_in):  # residual first layer: needs the explicit input
            xs = [e] + [
                jnp.broadcast_to(t_nei[:, :, None, c], e.shape) for c in range(cfg.tebd_dim)
            ]
            xs += [jnp.broadcast_to(t_nei[:, None, :, c], e.shape) for c in range(cfg.tebd_dim)]
            g = network_channels(layers, xs, act)
        else:
            # [e_jk, T_j, T_k] @ W = e_jk W_e + (T W_j)[t_j] + (T W_k)[t_k]
            w = first_layer_split(layers[0], [1, cfg.tebd_dim, cfg.tebd_dim])
            p_j = (tebd @ w[1])[nei_species]  # [n_node, sel3, d_out]
            p_k = (tebd @ w[2])[nei_species]
            pre = [e * w[0][0, c] + p_j[:, :, None, c] + p_k[:, None, :, c] for c in range(d_out)]
            g = network_channels(layers, pre, act, first_pre=True)
    else:
        g_s = network_channels(layers, [e], act)
        nt = tebd.shape[0]
        pair = jnp.concatenate(
            [
                jnp.broadcast_to(tebd[:, None, :], (nt, nt, tebd.shape[1])),
                jnp.broadcast_to(tebd[None, :, :], (nt, nt, tebd.shape[1])),
            ],
            -1,
        )
        table = network(params["embedding_strip"], pair, act)  # [n_type+1, n_type+1, ng]
        pair_index = nei_species[:, :, None] * nt + nei_species[:, None, :]
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
