"""The rotation-invariant contraction of a pair feature g with the equivariant h.

    hg_i   = h_i^T g_i * c            [3, ng],   c = 1/sel or 1/sqrt(sel) (smooth; g *= sw)
                                                 c = 1/(eps + n_i) or 1/(eps + sqrt(n_i)) (not)
    grrg_i = hg_i<^T hg_i / 3          [axis_neuron, ng] -> flattened

DeePMD's ``_cal_hg``, ``_cal_grrg`` and ``symmetrization_op`` (repformers.py); used for the
"grrg" (g = g2) and "drrd" (g = g1 of the neighbors) terms of the g1 update.
"""

import jax.numpy as jnp

from dpa2_jax.typing import Array

EPSILON = 1e-4  # DeePMD's protection of 1 / n_neighbors


def neighbor_norm(mask: Array, smooth: bool, use_sqrt: bool, nsel: int | None = None) -> Array:
    """[n_node, 1] the factor c above. mask: [n_node, slots]; nsel: the configured sel (default:
    the number of slots), which smooth mode divides by even when fewer slots are laid out."""
    sel = nsel or mask.shape[1]
    if smooth:
        value = 1.0 / (float(sel) ** 0.5 if use_sqrt else float(sel))
        return jnp.full((mask.shape[0], 1), value, dtype=jnp.result_type(float))
    count = jnp.sum(mask, axis=-1, keepdims=True).astype(jnp.result_type(float))
    return 1.0 / (EPSILON + (jnp.sqrt(count) if use_sqrt else count))


def slot_weight(
    mask: Array, sw: Array, smooth: bool, use_sqrt: bool, nsel: int | None = None
) -> Array:
    """[n_node, sel] the factor of each slot's term in hg: c, times sw_ij when smooth, and 0 in
    empty slots."""
    weight = sw if smooth else jnp.ones_like(sw)
    return jnp.where(mask, weight, 0.0) * neighbor_norm(mask, smooth, use_sqrt, nsel)


def symmetrize(
    g: Array, h: Array, mask: Array, sw: Array, axis_neuron: int, smooth: bool, use_sqrt: bool,
    nsel: int | None = None,
) -> Array:  # fmt: skip
    """g: [n_node, sel, ng]; h: [n_node, sel, 3] -> [n_node, axis_neuron * ng].

    The mask, switch and norm weigh the narrow h rather than the wide g: one product over
    [n_node, sel, 3] instead of two over [n_node, sel, ng], in every pass of the derivatives.
    """
    weight = slot_weight(mask, sw, smooth, use_sqrt, nsel).astype(h.dtype)  # [n_node, sel]
    hg = jnp.einsum("nsd,nsg->ndg", h * weight[..., None], g)  # [n_node, 3, ng]
    grrg = jnp.einsum("nda,ndg->nag", hg[..., :axis_neuron], hg) / 3.0  # [n_node, axis, ng]
    return grrg.reshape(grrg.shape[0], -1)
