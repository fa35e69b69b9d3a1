"""Neural-network building blocks shared by every block of the model."""

from dpa2_jax.nn.layer_norm import layer_norm
from dpa2_jax.nn.mlp import activation, dense, init_dense, init_network, network

__all__ = ["activation", "dense", "init_dense", "init_network", "layer_norm", "network"]
