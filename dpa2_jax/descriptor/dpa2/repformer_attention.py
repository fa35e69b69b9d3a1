"""Attention inside a repformer layer (DeePMD's ``Atten2Map``, ``Atten2MultiHeadApply``,
``Atten2EquiVarApply`` and ``LocalAtten`` in repformers.py).

Smooth softmax: logits are shifted, scaled by the switch of both ends and shifted back,
    A = sw_j sw_k softmax_k((L_jk + 20) sw_j sw_k - 20),
so that a neighbor leaving the cutoff fades out continuously. Without ``smooth`` the softmax
is masked instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dpa2_jax.nn import dense
from dpa2_jax.typing import Array, Params

ATTNW_SHIFT = 20.0


def _masked_softmax(logits: Array, valid: Array) -> Array:
    # A finite floor instead of -inf: same weights for rows with a valid entry, and no NaN
    # (nor NaN gradients) for rows with none, which are zeroed afterwards anyway.
    floor = jnp.finfo(logits.dtype).min
    return jax.nn.softmax(jnp.where(valid, logits, floor), axis=-1)


def pair_attention_map(
    params: Params,
    g2: Array,
    h2: Array,
    mask: Array,
    sw: Array,
    hidden: int,
    nhead: int,
    has_gate: bool,
    smooth: bool,
) -> Array:
    """Attention among the neighbors of each center, times h_j.h_k / sqrt(3).

    g2: [n_node, sel, g2_dim]; h2: [n_node, sel, 3]; mask, sw: [n_node, sel].
    Returns [n_node, nhead, sel, sel].
    """
    n, sel, _ = g2.shape
    qk = dense(params["mapqk"], g2).reshape(n, sel, hidden, 2 * nhead)
    q, k = qk[..., :nhead], qk[..., nhead:]
    logits = jnp.einsum("njdh,nkdh->nhjk", q, k) / hidden**0.5
    hh = jnp.einsum("njx,nkx->njk", h2, h2)[:, None]  # [n_node, 1, sel, sel]
    if has_gate:
        logits = logits * hh
    sw_jk = sw[:, None, :, None] * sw[:, None, None, :]
    valid_k = mask[:, None, None, :]
    if smooth:
        weights = jax.nn.softmax((logits + ATTNW_SHIFT) * sw_jk - ATTNW_SHIFT, axis=-1)
    else:
        weights = _masked_softmax(logits, valid_k)
    weights = jnp.where(valid_k & mask[:, None, :, None], weights, 0.0)
    if smooth:
        weights = weights * sw_jk
    return weights * hh / 3.0**0.5


def pair_attention_apply(params: Params, attn: Array, g2: Array) -> Array:
    """Multi-head update of g2. attn: [n_node, nhead, sel, sel] -> [n_node, sel, g2_dim]."""
    n, sel, g2_dim = g2.shape
    nhead = attn.shape[1]
    v = dense(params["mapv"], g2).reshape(n, sel, g2_dim, nhead)
    out = jnp.einsum("nhjk,nkch->njch", attn, v).reshape(n, sel, g2_dim * nhead)
    return dense(params["head_map"], out)


def pair_attention_equivariant(params: Params, attn: Array, h2: Array) -> Array:
    """Update of h2 mixing heads linearly. attn: [n_node, nhead, sel, sel] -> [n_node, sel, 3]."""
    out = jnp.einsum("nhjk,nkx->njxh", attn, h2)  # [n_node, sel, 3, nhead]
    return dense(params["head_map"], out)[..., 0]


def local_attention(
    params: Params,
    g1: Array,
    gg1: Array,
    mask: Array,
    sw: Array,
    hidden: int,
    nhead: int,
    smooth: bool,
) -> Array:
    """Attention of each center over its neighbors' g1.

    g1: [n_node, g1_dim]; gg1: [n_node, sel, g1_dim] -> [n_node, g1_dim].
    """
    n, sel, g1_dim = gg1.shape
    q = dense(params["mapq"], g1).reshape(n, hidden, nhead)
    kv = dense(params["mapkv"], gg1).reshape(n, sel, hidden + g1_dim, nhead)
    k, v = kv[:, :, :hidden], kv[:, :, hidden:]
    logits = jnp.einsum("ndh,njdh->nhj", q, k) / hidden**0.5  # [n_node, nhead, sel]
    valid = mask[:, None, :]
    if smooth:
        weights = jax.nn.softmax((logits + ATTNW_SHIFT) * sw[:, None, :] - ATTNW_SHIFT, -1)
    else:
        weights = _masked_softmax(logits, valid)
    weights = jnp.where(valid, weights, 0.0)
    if smooth:
        weights = weights * sw[:, None, :]
    out = jnp.einsum("nhj,njch->nhc", weights, v).reshape(n, nhead * g1_dim)
    return dense(params["head_map"], out)
