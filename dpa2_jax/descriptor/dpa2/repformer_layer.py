"""One repformer layer (DeePMD's ``RepformerLayer``): updates g1, g2 and h2.

g1 updates: self MLP act(W g1_i) (g1_out_mlp); convolution sum_j (W g2_ij) * g1_j sw_ij / sel
(g1_out_conv; otherwise (W g1_j) . g2_ij enters linear1); act(linear1 [grrg(g2, h2),
drrd(g1_j, h2), ...]); local attention over the neighbors' g1.
g2 updates (all layers but the last): act(linear2 g2); W (g1_i * g1_j) sw_ij; layer-normed
multi-head attention among neighbors. h2 update: equivariant attention.
The updates are combined by ``residual.combine``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dpa2_jax.descriptor.dpa2 import repformer_attention as attention
from dpa2_jax.descriptor.dpa2.config import RepformerConfig
from dpa2_jax.descriptor.dpa2.residual import combine
from dpa2_jax.descriptor.symmetrization import slot_weight, symmetrize
from dpa2_jax.nn import activation, dense, init_dense, layer_norm
from dpa2_jax.typing import Array, Params, Rng


def linear1_in_dim(cfg: RepformerConfig) -> int:
    dim = 0 if cfg.g1_out_mlp else cfg.g1_dim
    if cfg.update_g1_has_grrg:
        dim += cfg.g2_dim * cfg.axis_neuron
    if cfg.update_g1_has_drrd:
        dim += cfg.g1_dim * cfg.axis_neuron
    if cfg.update_g1_has_conv and not cfg.g1_out_conv:
        dim += cfg.g2_dim
    return dim


def g2_terms(cfg: RepformerConfig, update_g2: bool) -> tuple[bool, bool, bool]:
    """Which optional g2/h2 update terms a layer has: (g1g1, g2 attention, h2 attention).

    The single place these are decided, for ``init`` and ``apply`` alike; ``update_g2`` is False
    for the last layer, which updates g1 only (DeePMD's ``update_chnnl_2``).
    """
    return (
        update_g2 and cfg.update_g2_has_g1g1,
        update_g2 and cfg.update_g2_has_attn,
        update_g2 and cfg.update_h2,
    )


def init(rng: Rng, cfg: RepformerConfig, update_g2: bool, dtype) -> Params:
    """Parameters of one layer; ``update_g2`` is False for the last layer."""
    g1d, g2d = cfg.g1_dim, cfg.g2_dim
    has_g1g1, has_g2_attn, has_h2_attn = g2_terms(cfg, update_g2)

    def lin(d_in, d_out, bias=True):
        return init_dense(rng, d_in, d_out, bias=bias, dtype=dtype)

    def res(dim):
        if cfg.update_residual_init == "const":
            return np.full((dim,), cfg.update_residual, dtype)
        return (cfg.update_residual * rng.standard_normal(dim)).astype(dtype)

    p: Params = {"linear1": lin(linear1_in_dim(cfg), g1d)}
    g1_res = [res(g1d)]  # linear1
    g2_res, h2_res = [], []
    if update_g2:
        p["linear2"] = lin(g2d, g2d)
        g2_res.append(res(g2d))
    if cfg.g1_out_mlp:
        p["g1_self_mlp"] = lin(g1d, g1d)
        g1_res.append(res(g1d))
    if cfg.update_g1_has_conv:
        if cfg.g1_out_conv:
            p["proj_g1g2"] = lin(g2d, g1d, bias=False)
            g1_res.append(res(g1d))
        else:
            p["proj_g1g2"] = lin(g1d, g2d, bias=False)
    if has_g1g1:
        p["proj_g1g1g2"] = lin(g1d, g2d, bias=False)
        g2_res.append(res(g2d))
    if has_g2_attn or has_h2_attn:
        nh, hid = cfg.attn2_nhead, cfg.attn2_hidden
        p["attn2g_map"] = {"mapqk": lin(g2d, 2 * hid * nh, bias=False)}
        if has_g2_attn:
            p["attn2_mh_apply"] = {
                "mapv": lin(g2d, g2d * nh, False),
                "head_map": lin(g2d * nh, g2d),
            }
            p["attn2_lm"] = {"w": jnp.ones((g2d,), dtype), "b": jnp.zeros((g2d,), dtype)}
            g2_res.append(res(g2d))
        if has_h2_attn:
            p["attn2_ev_apply"] = {"head_map": lin(nh, 1, bias=False)}
            h2_res.append(res(1))
    if cfg.update_g1_has_attn:
        nh, hid = cfg.attn1_nhead, cfg.attn1_hidden
        p["loc_attn"] = {
            "mapq": lin(g1d, hid * nh, False),
            "mapkv": lin(g1d, (hid + g1d) * nh, False),
            "head_map": lin(g1d * nh, g1d),
        }
        g1_res.append(res(g1d))
    if cfg.update_style == "res_residual":
        p.update(g1_residual=g1_res, g2_residual=g2_res, h2_residual=h2_res)
    return p


def _conv(
    proj: Params, out_conv: bool, gg1: Array, g2: Array, mask: Array, sw: Array, smooth: bool,
    nsel: int,
) -> Array:  # fmt: skip
    """sum_j g2_ij * g1_j sw_ij / sel, with g2 projected to g1_dim (``out_conv``) or g1_j to
    g2_dim. gg1: [n_node, sel, g1_dim]; g2: [n_node, sel, g2_dim] -> [n_node, g1 or g2 dim].

    The mask, switch and norm weigh g2 before the (bias-free) projection: one product over
    [n_node, sel, g2_dim] instead of two over the wider gg1, in every pass of the derivatives.
    """
    weight = slot_weight(mask, sw, smooth, use_sqrt=False, nsel=nsel).astype(g2.dtype)
    g2 = g2 * weight[..., None]
    if out_conv:
        g2 = dense(proj, g2)
    else:
        gg1 = dense(proj, gg1)
    return jnp.sum(g2 * gg1, axis=1)  # a dot_general here would transpose both


def apply(
    p: Params,
    cfg: RepformerConfig,
    smooth: bool,
    g1: Array,
    g2: Array,
    h2: Array,
    index: Array,
    mask: Array,
    sw: Array,
    g1_all: Array | None = None,
    *,
    update_g2: bool,
) -> tuple[Array, Array, Array]:
    """One layer.

    Args:
      g1: [n_node, g1_dim]; g2: [n_node, sel, g2_dim]; h2: [n_node, sel, 3].
      index, mask, sw: [n_node, sel] neighbor node, real-neighbor mask, switch.
      g1_all: [n_all, g1_dim] g1 of every atom that ``index`` points to (default: g1), so
        the layer can run on a chunk of centers.
      update_g2: static; False for the last layer, which updates g1 only (as in ``init``).

    Returns:
      the updated (g1, g2, h2), same shapes.
    """
    act = activation(cfg.activation_function)
    has_g1g1, has_g2_attn, has_h2_attn = g2_terms(cfg, update_g2)
    gg1 = (g1 if g1_all is None else g1_all)[index]  # [n_node, sel, g1_dim] neighbors' g1
    g1_updates, g2_updates, h2_updates = [], [], []
    g1_mlp_in = [] if cfg.g1_out_mlp else [g1]
    if cfg.g1_out_mlp:
        g1_updates.append(act(dense(p["g1_self_mlp"], g1)))
    if update_g2:
        g2_updates.append(act(dense(p["linear2"], g2)))
    if has_g1g1:
        g1g1 = jnp.where(mask[..., None], g1[:, None, :] * gg1, 0.0)
        if smooth:
            g1g1 = g1g1 * sw[..., None]
        g2_updates.append(dense(p["proj_g1g1g2"], g1g1))
    if has_g2_attn or has_h2_attn:
        attn = attention.pair_attention_map(
            p["attn2g_map"],
            g2,
            h2,
            mask,
            sw,
            cfg.attn2_hidden,
            cfg.attn2_nhead,
            cfg.attn2_has_gate,
            smooth,
        )  # [n_node, nhead, sel, sel]
        if has_g2_attn:
            g2_att = attention.pair_attention_apply(p["attn2_mh_apply"], attn, g2)
            g2_updates.append(layer_norm(p["attn2_lm"], g2_att, cfg.ln_eps))
        if has_h2_attn:
            h2_updates.append(attention.pair_attention_equivariant(p["attn2_ev_apply"], attn, h2))
    if cfg.update_g1_has_conv:
        conv = _conv(p["proj_g1g2"], cfg.g1_out_conv, gg1, g2, mask, sw, smooth, cfg.nsel)
        (g1_updates if cfg.g1_out_conv else g1_mlp_in).append(conv)
    if cfg.update_g1_has_grrg:
        g1_mlp_in.append(
            symmetrize(g2, h2, mask, sw, cfg.axis_neuron, smooth, cfg.use_sqrt_nnei, cfg.nsel)
        )
    if cfg.update_g1_has_drrd:
        g1_mlp_in.append(
            symmetrize(gg1, h2, mask, sw, cfg.axis_neuron, smooth, cfg.use_sqrt_nnei, cfg.nsel)
        )
    g1_updates.append(act(dense(p["linear1"], jnp.concatenate(g1_mlp_in, axis=-1))))
    if cfg.update_g1_has_attn:
        g1_updates.append(
            attention.local_attention(
                p["loc_attn"], g1, gg1, mask, sw, cfg.attn1_hidden, cfg.attn1_nhead, smooth
            )
        )
    style = cfg.update_style
    learned = style == "res_residual"  # only then do the layer's params hold the scales a_k

    def scales(name: str):
        return p[name] if learned else ()

    g1_new = combine(style, g1, g1_updates, scales("g1_residual"))
    if not update_g2:
        return g1_new, g2, h2
    g2_new = combine(style, g2, g2_updates, scales("g2_residual"))
    h2_new = combine(style, h2, h2_updates, scales("h2_residual"))
    return g1_new, g2_new, h2_new
