"""Repinit: the DPA-1 (se_atten) embedding without attention layers.

For center i and neighbor slot j (DeePMD's ``DescrptBlockSeAtten.call`` with attn_layer=0):

    concat: G_ij = N([s~_ij, T_j, T_i])             (T_i dropped when type_one_side)
    strip:  G_ij = N(s~_ij) * (1 + sw_ij N_t(T_j, T_i))     (sw only when smooth)
    D_i    = (G_i^T R~_i / sel) (R~_i^T G_i< / sel),  G_i< the first axis_neuron columns

with R~ the normalised environment matrix [sel, 4] and s~ its first column.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dpa2_jax.descriptor.dpa2.config import RepinitConfig
from dpa2_jax.nn import init_network, network
from dpa2_jax.nn.mlp import dense_from_projections, first_layer_split, has_residual
from dpa2_jax.typing import Array, Params, Rng


def init(rng: Rng, cfg: RepinitConfig, ntypes: int, dtype) -> Params:
    n_tebd = 1 if cfg.type_one_side else 2
    return init_block(rng, cfg, cfg.neuron, cfg.nsel, n_tebd, ntypes, dtype)


def init_block(
    rng: Rng,
    cfg: RepinitConfig,
    neuron: tuple[int, ...],
    nsel: int,
    n_tebd: int,
    ntypes: int,
    dtype,
) -> Params:
    """Parameters of a repinit-type block (repinit, three-body): the embedding network N of
    [x, n_tebd type embeddings] (concat) or of x with N_t of the type pair (strip), and the
    environment statistics davg/dstd [n_type, nsel, 4]."""
    concat = cfg.tebd_input_mode == "concat"
    params: Params = {
        "embedding": init_network(
            rng, 1 + (n_tebd * cfg.tebd_dim if concat else 0), neuron, cfg.resnet_dt, dtype=dtype
        ),
        "davg": np.zeros((ntypes, nsel, 4), dtype),
        "dstd": np.ones((ntypes, nsel, 4), dtype),
    }
    if not concat:
        params["embedding_strip"] = init_network(
            rng, n_tebd * cfg.tebd_dim, neuron, cfg.resnet_dt, dtype=dtype
        )
    return params


def first_layer_has_residual(cfg: RepinitConfig, neuron: tuple[int, ...], n_tebd: int) -> bool:
    """Concat mode: whether the first layer adds its input [x, T, ...], so that the input must
    be formed explicitly rather than from ``type_projections``."""
    return has_residual(1 + n_tebd * cfg.tebd_dim, neuron[0])


def type_projections(layer: Params, tebd: Array, n_tebd: int) -> tuple[Array, list[Array]]:
    """The concat-mode first layer without the concatenation:
    [x, T_a, T_b] @ W = x W_x + (T W_a)[t_a] + (T W_b)[t_b].

    Returns W_x [d_out] and the type tables T W_a, T W_b [n_type + 1, d_out] (n_tebd of them).
    """
    w = first_layer_split(layer, [1] + [tebd.shape[1]] * n_tebd)
    return w[0][0], [tebd @ wk for wk in w[1:]]


def pair_type_table(strip_layers: list[Params], tebd: Array, act: str, one_side: bool) -> Array:
    """Strip mode's N_t over type pairs. tebd: [n_type + 1, tebd_dim] -> [n_type + 1,
    n_type + 1, ng] with [a, b] = N_t([T_b, T_a]), i.e. indexed [center, neighbor] (or
    [n_type + 1, ng] by neighbor when one_side)."""
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
    n_tebd = 1 if cfg.type_one_side else 2
    if cfg.tebd_input_mode == "concat":
        layers = params["embedding"]
        if first_layer_has_residual(cfg, cfg.neuron, n_tebd):
            parts = [s, tebd[nei_species]]
            if not cfg.type_one_side:
                parts.append(jnp.broadcast_to(tebd[species][:, None, :], parts[1].shape))
            return network(layers, jnp.concatenate(parts, -1), act)
        w_s, tables = type_projections(layers[0], tebd, n_tebd)
        pre = s * w_s + tables[0][nei_species]  # [n_node, sel, d_out]
        if not cfg.type_one_side:
            pre = pre + tables[1][species][:, None, :]
        return network(layers[1:], dense_from_projections(layers[0], pre, act), act)
    g_s = network(params["embedding"], s, act)
    table = pair_type_table(params["embedding_strip"], tebd, act, cfg.type_one_side)
    g_t = table[nei_species] if cfg.type_one_side else table[species[:, None], nei_species]
    if smooth:
        g_t = g_t * sw[..., None]
    return g_s * g_t + g_s


def empty_tail(params: Params, cfg: RepinitConfig, smooth: bool, tebd: Array, start: int) -> Array:
    """sum_k G_k R~_k over the slots k = start .. nsel - 1 when they are all empty, per
    (center type, type of the first atom of the center's graph): [n_type, n_type, ng, 4].

    An empty slot's row is (0 - davg) / dstd (never excluded), its switch zero, and its
    neighbor type that of the graph's first atom (DeePMD reads atom 0 there), so its term
    depends on those two types only: laying out only the first ``start`` slots and adding
    this table gives the same sum.
    """
    nt = params["davg"].shape[0]
    davg, dstd = params["davg"][:, start:], params["dstd"][:, start:]
    centers = jnp.repeat(jnp.arange(nt), nt)  # [nt * nt]: (a, b) -> a
    firsts = jnp.tile(jnp.arange(nt), nt)  # (a, b) -> b
    rr = (0.0 - davg[centers]) / dstd[centers]  # [nt * nt, nsel - start, 4], as normalize
    nei = jnp.broadcast_to(firsts[:, None], rr.shape[:2])
    g = embed(params, cfg, smooth, rr[..., :1], jnp.zeros(rr.shape[:2], rr.dtype), centers,
              nei, tebd)  # fmt: skip
    gr = jnp.einsum("nsg,nsd->ngd", g, rr)
    return gr.reshape(nt, nt, *gr.shape[1:])


def apply(
    params: Params,
    cfg: RepinitConfig,
    smooth: bool,
    rr: Array,
    sw: Array,
    species: Array,
    nei_species: Array,
    tebd: Array,
    tail: Array | None = None,
) -> Array:
    """Repinit descriptor.

    Args:
      rr: [n_node, sel, 4] normalised environment matrix, excluded pairs zeroed (sel: the
        slots laid out, at most cfg.nsel).
      sw: [n_node, sel] switch, zero in empty or excluded slots.
      species, nei_species: [n_node], [n_node, sel] types of centers and slot neighbors.
      tebd: [n_type + 1, tebd_dim] type embedding.
      tail: [n_node, ng, 4] the empty slots' sum ``empty_tail`` when fewer than cfg.nsel
        slots are laid out.

    Returns:
      [n_node, neuron[-1] * axis_neuron]
    """
    g = embed(params, cfg, smooth, rr[..., :1], sw, species, nei_species, tebd)
    gr = jnp.einsum("nsg,nsd->ngd", g, rr)  # [n_node, ng, 4]
    if tail is not None:
        gr = gr + tail
    gr = gr / cfg.nsel
    grrg = jnp.einsum("ngd,nad->nga", gr, gr[:, : cfg.axis_neuron])  # [n_node, ng, axis]
    return grrg.reshape(grrg.shape[0], -1)
