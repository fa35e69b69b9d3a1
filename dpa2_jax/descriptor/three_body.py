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
    n, sel3 = nei_species.shape
    t_nei = tebd[nei_species]  # [n_node, sel3, tebd_dim]
    if cfg.tebd_input_mode == "concat":
        shape = (n, sel3, sel3, t_nei.shape[-1])
        inp = jnp.concatenate(
            [
                e[..., None],
                jnp.broadcast_to(t_nei[:, :, None, :], shape),
                jnp.broadcast_to(t_nei[:, None, :, :], shape),
            ],
            -1,
        )
        g = network(params["embedding"], inp, act)
    else:
        g_s = network(params["embedding"], e[..., None], act)
        nt = tebd.shape[0]
        pair = jnp.concatenate(
            [
                jnp.broadcast_to(tebd[:, None, :], (nt, nt, tebd.shape[1])),
                jnp.broadcast_to(tebd[None, :, :], (nt, nt, tebd.shape[1])),
            ],
            -1,
        )
        table = network(params["embedding_strip"], pair, act)  # [n_type+1, n_type+1, ng]
        g_t = table[nei_species[:, :, None], nei_species[:, None, :]]
        if smooth:
            g_t = g_t * sw[:, :, None, None] * sw[:, None, :, None]
        g = g_s * g_t + g_s
    return jnp.einsum("njk,njkg->ng", e, g) / float(sel3 * sel3)
