"""Type embedding: T_t = N(one_hot(t)), one row per type plus a zero padding row.

Matches DeePMD's ``TypeEmbedNet`` (a one-layer linear network over the identity matrix, with
the network's residual rule, so tebd_dim == n_type or 2 n_type adds the one-hot input).
"""

import jax.numpy as jnp

from dpa2_jax.nn import init_network, network
from dpa2_jax.typing import Array, Params, Rng


def init(rng: Rng, ntypes: int, tebd_dim: int, bias: bool, dtype) -> list[Params]:
    return init_network(rng, ntypes, [tebd_dim], bias=bias, dtype=dtype)


def apply(layers: list[Params], ntypes: int) -> Array:
    """Returns [n_type + 1, tebd_dim]; the last row (padding) is zero."""
    table = network(layers, jnp.eye(ntypes, dtype=layers[0]["w"].dtype), "linear")
    return jnp.concatenate([table, jnp.zeros_like(table[:1])], axis=0)
