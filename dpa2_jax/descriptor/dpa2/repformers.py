"""The repformer stack (DeePMD's ``DescrptBlockRepformers``).

g1 <- act(g1 from repinit);  g2 <- act(W s~_ij + b);  h2 <- r~_ij (the normalised
environment matrix's last three columns; with direct_dist: |r_ij| / rcut and r_ij / rcut)
then ``nlayers`` repformer layers; the last one updates g1 only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from dpa2_jax.descriptor.dpa2 import repformer_layer
from dpa2_jax.descriptor.dpa2.config import RepformerConfig
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
    env: Callable,
    per_node: tuple,
    shared: tuple = (),
    node_chunk: int = 1 << 30,
) -> Array:
    """Runs the stack.

    Args:
      g1: [n_node, g1_dim] from repinit.
      env: ``env(*per_node, *shared) -> (rr, sw, nb)`` for a set of centers: the normalised
        environment matrix [n, nsel, 4] (empty slots: -davg/dstd), the switch [n, nsel] (zero
        in empty slots) and the repformer neighborhood (excluded pairs already removed).
      per_node: pytrees over the n_node centers that ``env`` reads (sliced into chunks).
      shared: values ``env`` reads whole (e.g. every atom's species).
      node_chunk: centers per chunk (see nn/chunking.py).

    Returns:
      [n_node, g1_dim]
    """
    act = activation(cfg.activation_function)

    def inputs(*args):
        """(g2 [n, nsel, g2_dim], h2 [n, nsel, 3], index, mask, sw) of some centers."""
        rr, sw, nb = env(*args)
        if cfg.direct_dist:
            g2 = jnp.where(nb.mask, nb.distance(), 0.0)[..., None] / cfg.rcut
            h2 = nb.diff / cfg.rcut
        else:
            g2, h2 = rr[..., :1], rr[..., 1:]
        return act(dense(params["g2_embd"], g2)), h2, nb.index, nb.mask, sw

    g1 = act(g1)
    n = g1.shape[0]
    if n <= node_chunk:
        g2, h2, *fixed = inputs(*per_node, *shared)
        for k in range(cfg.nlayers):
            g1, g2, h2 = _layer(params, cfg, smooth, k)(g1, g2, h2, *fixed)
        return g1
    return _chunked(params, cfg, smooth, g1, inputs, per_node, shared, node_chunk)


def replays_g2(cfg: RepformerConfig) -> bool:
    """Whether the chunked stack recomputes each layer's g2 and h2 from the environment
    rather than carrying them from layer to layer: when they depend on the center's own
    slots only (no g1 x g1 term, which reads the neighbors' g1) and replaying the earlier
    layers' updates is cheap (no pair attention)."""
    local = not (cfg.update_g2_has_g1g1 and cfg.nlayers > 1)
    return local and not (cfg.update_g2_has_attn or cfg.update_h2)


def _chunked(params, cfg, smooth, g1, inputs, per_node, shared, node_chunk) -> Array:
    """``apply`` over chunks of centers (nn/chunking.py): each layer reads every atom's g1
    (its neighbors'), merged from the chunks, and makes its per-slot arrays inside the chunk
    from the environment. g2 and h2 [n, nsel, ...] are either replayed there from the
    environment (``replays_g2``: nothing per slot spans all atoms) or carried from one
    layer's chunks to the next."""
    chunks = NodeChunks.of(g1.shape[0], node_chunk)
    per_node_c = chunks.split_tree(per_node)
    g1c, carried = chunks.split(g1), ()
    replay = replays_g2(cfg)
    for k in range(cfg.nlayers):
        last = k == cfg.nlayers - 1

        def step(g1, carried, per_node, g1_all, *shared, k=k, last=last):
            g2, h2, *fixed = inputs(*per_node, *shared)
            if carried:
                g2, h2 = carried
            elif replay:  # the earlier layers' g2 and h2 updates (their g1 part is dead code)
                for j in range(k):
                    _, g2, h2 = _layer(params, cfg, smooth, j)(g1, g2, h2, *fixed, g1_all)
            g1, g2, h2 = _layer(params, cfg, smooth, k)(g1, g2, h2, *fixed, g1_all)
            return g1 if last or replay else (g1, (g2, h2))

        # every atom's g1 as the chunks hold it (padded rows last; never indexed): no copy
        g1_all = g1c.reshape(-1, g1c.shape[-1])
        out = map_chunks(step, (g1c, carried, per_node_c), (g1_all, *shared))
        g1c, carried = (out, ()) if last or replay else out
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
