"""Energy fitting net (DeePMD's ``EnergyFittingNet`` with mixed types).

    E_i = N(D_i) + bias_atom_e[t_i]      (zero for atom types in exclude_types)

N is a fitting network (residual hidden layers with optional timestep, linear output).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from dpa2_jax.errors import ConfigError
from dpa2_jax.nn import init_network, network
from dpa2_jax.nn.mlp import check_activation
from dpa2_jax.typing import Array, Params, Rng


@dataclasses.dataclass(frozen=True)
class FittingConfig:
    """Options of DeePMD's ``fitting_net`` of type "ener" that DPA-2 models use."""

    neuron: tuple[int, ...] = (240, 240, 240)
    resnet_dt: bool = True
    activation_function: str = "tanh"
    precision: str = "float64"
    exclude_types: tuple[int, ...] = ()

    def __post_init__(self):
        check_activation(self.activation_function)
        if self.precision not in ("float64", "float32"):
            raise ConfigError(f"fitting_net.precision={self.precision!r}: use float64 or float32")


def init(rng: Rng, cfg: FittingConfig, dim_descrpt: int, ntypes: int, dtype) -> Params:
    return {
        "layers": init_network(rng, dim_descrpt, cfg.neuron, cfg.resnet_dt, d_out=1, dtype=dtype),
        "bias_atom_e": np.zeros((ntypes, 1), dtype),
    }


def apply(params: Params, cfg: FittingConfig, descriptor: Array, species: Array) -> Array:
    """Atomic energies [n_node] from the descriptor [n_node, dim] and species [n_node]."""
    out = network(params["layers"], descriptor, cfg.activation_function, linear_output=True)
    energy = out[:, 0] + params["bias_atom_e"][species, 0]
    for t in cfg.exclude_types:
        energy = jnp.where(species == t, 0.0, energy)
    return energy
