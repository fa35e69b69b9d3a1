"""The repformer stack (DeePMD's ``DescrptBlockRepformers``).

g1 <- act(g1 from repinit);  g2 <- act(W s~_ij + b);  h2 <- r~_ij (the normalised
environment matrix's last three columns; with direct_dist: |r_ij| / rcut and r_ij / rcut)
then ``nlayers`` repformer layers; the last one updates g1 only.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from dpa2_jax.descriptor.dpa2 import repformer_layer
from dpa2_jax.descriptor.dpa2.config import RepformerConfig
from dpa2_jax.descriptor.env_mat import Neighborhood
from dpa2_jax.nn import activation, dense, init_dense
from dpa2_jax.nn.chunking import NodeChunks, map_chunks
from dpa2_jax.typing import Array, Params, Rng


def init(rng: Rng, cfg: RepformerConfig, ntypes: int, dtype) -> Params:
    return {
        "g2_embd": init_dense(rng, 1, cfg.g2_dim, dtype=dtype),
        "layers": [
            repformer_layer.init(rng, cfg, update_g2=k < cfg.nlayers - 1, dtype=dtype)
            for k in range(cfg.nlayers)
        ],
        "davg": np.zeros((ntypes, cfg.nsel, 4), dtype),
        "dstd": np.ones((ntypes, cfg.nsel, 4), dtype),
    }


def apply(
    params: Params,
    cfg: RepformerConfig,
    smooth: bool,
    g1: Array,
    rr: Array,
    sw: Array,
    nb: Neighborhood,
    node_chunk: int = 1 << 30,
) -> Array:
    """Runs the stack.

    Args:
      g1: [n_node, g1_dim] from repinit.
      rr: [n_node, nsel, 4] normalised environment matrix (empty slots: -davg/dstd).
      sw: [n_node, nsel] switch, zero in empty slots.
      nb: the repformer neighborhood (excluded pairs already removed).
      node_chunk: centers per chunk (see nn/chunking.py).

    Returns:
      [n_node, g1_dim]
    """
    act = activation(cfg.activation_function)
    if cfg.direct_dist:
        g2 = jnp.where(nb.mask, nb.distance(), 0.0)[..., None] / cfg.rcut
        h2 = nb.diff / cfg.rcut
    else:
        g2, h2 = rr[..., :1], rr[..., 1:]
    g1 = act(g1)

    def embed_g2(g2):  # [n, nsel, 1] -> [n, nsel, g2_dim]
        return act(dense(params["g2_embd"], g2))

    n = g1.shape[0]
    if n <= node_chunk:
        g2 = embed_g2(g2)
        for k in range(cfg.nlayers):
            g1, g2, h2 = _layer(params, cfg, smooth, k)(g1, g2, h2, nb.index, nb.mask, sw)
        return g1
    # Chunked (nn/chunking.py): the per-slot arrays stay split from layer to layer; every
    # layer reads all atoms' g1 (its neighbors'), merged from the chunks. g2 is embedded
    # inside the first layer's chunks, so that only its one-channel input is kept for the
    # backward pass.
    chunks = NodeChunks.of(n, node_chunk)
    g1c, g2c, h2c, *fixed = (chunks.split(a) for a in (g1, g2, h2, nb.index, nb.mask, sw))
    for k in range(cfg.nlayers):
        layer = _layer(params, cfg, smooth, k)
        step = (lambda g1, g2, *a, f=layer: f(g1, embed_g2(g2), *a)) if k == 0 else layer
        g1_all = chunks.merge(g1c)
        if k < cfg.nlayers - 1:
            g1c, g2c, h2c = map_chunks(step, (g1c, g2c, h2c, *fixed), (g1_all,))
        else:  # the last layer updates g1 only: do not carry g2 and h2 out of it
            g1c = map_chunks(lambda *a, f=step: f(*a)[0], (g1c, g2c, h2c, *fixed), (g1_all,))
    return chunks.merge(g1c)


def _layer(params: Params, cfg: RepformerConfig, smooth: bool, k: int):
    """Layer k as step(g1, g2, h2, index, mask, sw, g1_all=None) -> (g1, g2, h2)."""
    return functools.partial(
        repformer_layer.apply,
        params["layers"][k],
        cfg,
        smooth,
        update_g2=k < cfg.nlayers - 1,  # the last layer updates g1 only, as in init
    )
