"""Layer normalisation over the last axis, as DeePMD's ``LayerNorm`` (biased variance)."""

import jax.numpy as jnp

from dpa2_jax.typing import Array, Params


def layer_norm(params: Params, x: Array, eps: float) -> Array:
    """(x - mean) / sqrt(var + eps) * w + b over the last axis. x: [..., d]."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * params["w"] + params["b"]
