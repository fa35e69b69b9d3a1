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
from dpa2_jax.nn.chunking import map_nodes
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
    g2 = act(dense(params["g2_embd"], g2))  # [n_node, nsel, g2_dim]
    for k in range(cfg.nlayers):
        step = functools.partial(  # step(g1, g2, h2, index, mask, sw, g1_all)
            repformer_layer.apply,
            params["layers"][k],
            cfg,
            smooth,
            update_g2=k < cfg.nlayers - 1,  # the last layer updates g1 only, as in init
        )
        g1, g2, h2 = map_nodes(step, node_chunk, (g1, g2, h2, nb.index, nb.mask, sw), (g1,))
    return g1
