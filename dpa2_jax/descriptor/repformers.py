"""The repformer stack (DeePMD's ``DescrptBlockRepformers``).

g1 <- act(g1 from repinit);  g2 <- act(W s~_ij + b);  h2 <- r~_ij (the normalised
environment matrix's last three columns; with direct_dist: |r_ij| / rcut and r_ij / rcut)
then ``nlayers`` repformer layers; the last one updates g1 only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dpa2_jax.descriptor import repformer_layer
from dpa2_jax.descriptor.config import RepformerConfig
from dpa2_jax.descriptor.env_mat import Neighborhood
from dpa2_jax.nn import activation, dense, init_dense
from dpa2_jax.nn.chunking import map_nodes
from dpa2_jax.typing import Array, Params, PRNGKey


def init(key: PRNGKey, cfg: RepformerConfig, ntypes: int, dtype) -> Params:
    keys = jax.random.split(key, cfg.nlayers + 1)
    return {
        "g2_embd": init_dense(keys[0], 1, cfg.g2_dim, dtype=dtype),
        "layers": [
            repformer_layer.init(keys[k + 1], cfg, k < cfg.nlayers - 1, dtype)
            for k in range(cfg.nlayers)
        ],
        "davg": jnp.zeros((ntypes, cfg.nsel, 4), dtype),
        "dstd": jnp.ones((ntypes, cfg.nsel, 4), dtype),
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
    g2 = act(dense(params["g2_embd"], g2))  # [n_node, nsel, g2_dim]
    for layer in params["layers"]:

        def step(g1_i, g2, h2, index, mask, sw, g1_all, layer=layer):
            return repformer_layer.apply(
                layer, cfg, smooth, g1_i, g2, h2, index, mask, sw, g1_all=g1_all
            )

        g1, g2, h2 = map_nodes(step, node_chunk, (g1, g2, h2, nb.index, nb.mask, sw), (g1,))
    return g1
