"""Repinit: the DPA-1 (se_atten) embedding without attention layers.

For center i and neighbor slot j (DeePMD's ``DescrptBlockSeAtten.call`` with attn_layer=0):

    concat: G_ij = N([s~_ij, T_j, T_i])             (T_i dropped when type_one_side)
    strip:  G_ij = N(s~_ij) * (1 + sw_ij N_t(T_j, T_i))     (sw only when smooth)
    D_i    = (G_i^T R~_i / sel) (R~_i^T G_i< / sel),  G_i< the first axis_neuron columns

with R~ the normalised environment matrix [sel, 4] and s~ its first column.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dpa2_jax.descriptor.config import RepinitConfig
from dpa2_jax.nn import init_network, network
from dpa2_jax.nn.mlp import dense_from_projections, first_layer_split
from dpa2_jax.typing import Array, Params, PRNGKey


def init(key: PRNGKey, cfg: RepinitConfig, ntypes: int, dtype) -> Params:
    k1, k2 = jax.random.split(key)
    n_tebd = 1 if cfg.type_one_side else 2
    in_dim = 1 + (n_tebd * cfg.tebd_dim if cfg.tebd_input_mode == "concat" else 0)
    params: Params = {
        "embedding": init_network(k1, in_dim, cfg.neuron, cfg.resnet_dt, dtype=dtype),
        "davg": jnp.zeros((ntypes, cfg.nsel, 4), dtype),
        "dstd": jnp.ones((ntypes, cfg.nsel, 4), dtype),
    }
    if cfg.tebd_input_mode == "strip":
        params["embedding_strip"] = init_network(
            k2, n_tebd * cfg.tebd_dim, cfg.neuron, cfg.resnet_dt, dtype=dtype
        )
    return params


def pair_type_table(strip_layers: list[Params], tebd: Array, act: str, one_side: bool) -> Array:
    """N_t over type pairs. tebd: [n_type + 1, tebd_dim] -> [n_type + 1, n_type + 1, ng]
    indexed [center, neighbor] (or [n_type + 1, ng] by neighbor when one_side)."""
    if one_side:
        return network(strip_layers, tebd, act)
    nt = tebd.shape[0]
    nei = jnp.broadcast_to(tebd[None, :, :], (nt, nt, tebd.shape[1]))
    center = jnp.broadcast_to(tebd[:, None, :], (nt, nt, tebd.shape[1]))
    return network(strip_layers, jnp.concatenate([nei, center], -1), act)


def embed(
    params: Params,
    cfg: RepinitConfig,
    smooth: bool,
    s: Array,
    sw: Array,
    species: Array,
    nei_species: Array,
    tebd: Array,
) -> Array:
    """The embedding G. s: [n_node, sel, 1]; sw, nei_species: [n_node, sel] -> [n_node, sel, ng]."""
    act = cfg.activation_function
    if cfg.tebd_input_mode == "concat":
        layers = params["embedding"]
        d_in, d_out = layers[0]["w"].shape
        if d_out in (d_in, 2 * d_in):  # residual first layer: needs the explicit input
            parts = [s, tebd[nei_species]]
            if not cfg.type_one_side:
                parts.append(jnp.broadcast_to(tebd[species][:, None, :], parts[1].shape))
            return network(layers, jnp.concatenate(parts, -1), act)
        # [s, T_j, T_i] @ W = s W_s + (T W_j)[t_j] + (T W_i)[t_i]: type blocks from tables
        n_tebd = 1 if cfg.type_one_side else 2
        w = first_layer_split(layers[0], [1] + [cfg.tebd_dim] * n_tebd)
        pre = s * w[0] + (tebd @ w[1])[nei_species]  # [n_node, sel, d_out]
        if not cfg.type_one_side:
            pre = pre + (tebd @ w[2])[species][:, None, :]
        return network(layers[1:], dense_from_projections(layers[0], pre, act), act)
    g_s = network(params["embedding"], s, act)
    table = pair_type_table(params["embedding_strip"], tebd, act, cfg.type_one_side)
    g_t = table[nei_species] if cfg.type_one_side else table[species[:, None], nei_species]
    if smooth:
        g_t = g_t * sw[..., None]
    return g_s * g_t + g_s


def apply(
    params: Params,
    cfg: RepinitConfig,
    smooth: bool,
    rr: Array,
    sw: Array,
    species: Array,
    nei_species: Array,
    tebd: Array,
) -> Array:
    """Repinit descriptor.

    Args:
      rr: [n_node, sel, 4] normalised environment matrix, excluded pairs zeroed.
      sw: [n_node, sel] switch, zero in empty or excluded slots.
      species, nei_species: [n_node], [n_node, sel] types of centers and slot neighbors.
      tebd: [n_type + 1, tebd_dim] type embedding.

    Returns:
      [n_node, neuron[-1] * axis_neuron]
    """
    g = embed(params, cfg, smooth, rr[..., :1], sw, species, nei_species, tebd)
    gr = jnp.einsum("nsg,nsd->ngd", g, rr) / cfg.nsel  # [n_node, ng, 4]
    grrg = jnp.einsum("ngd,nad->nga", gr, gr[:, : cfg.axis_neuron])  # [n_node, ng, axis]
    return grrg.reshape(grrg.shape[0], -1)
