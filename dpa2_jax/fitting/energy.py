"""Energy fitting net (DeePMD's ``EnergyFittingNet``).

    E_i = N(D_i) + bias_atom_e[t_i]      (zero for atom types in exclude_types)

N is a fitting network (residual hidden layers with optional timestep, linear output): one
shared by all types (``mixed_types``, params ``layers``), or one per atom type N_{t_i}
(params ``type_layers``), as DeePMD builds for descriptors that are not mixed-type (se_e2_a).
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
    mixed_types: bool = True  # False: one net per type (set by the descriptor family)

    def __post_init__(self):
        check_activation(self.activation_function)
        if self.precision not in ("float64", "float32"):
            raise ConfigError(f"fitting_net.precision={self.precision!r}: use float64 or float32")


def init(rng: Rng, cfg: FittingConfig, dim_descrpt: int, ntypes: int, dtype) -> Params:
    def net():
        return init_network(rng, dim_descrpt, cfg.neuron, cfg.resnet_dt, d_out=1, dtype=dtype)

    nets = {"layers": net()} if cfg.mixed_types else {"type_layers": [net() for _ in range(ntypes)]}
    return {**nets, "bias_atom_e": np.zeros((ntypes, 1), dtype)}


def apply(params: Params, cfg: FittingConfig, descriptor: Array, species: Array) -> Array:
    """Atomic energies [n_node] from the descriptor [n_node, dim] and species [n_node]."""
    act = cfg.activation_function
    if cfg.mixed_types:
        out = network(params["layers"], descriptor, act, linear_output=True)
    else:  # every type's net on every atom, kept where the atom has that type (as DeePMD)
        out = 0.0
        for t, layers in enumerate(params["type_layers"]):
            out_t = network(layers, descriptor, act, linear_output=True)
            out = jnp.where((species == t)[:, None], out_t, out)
    energy = out[:, 0] + params["bias_atom_e"][species, 0]
    for t in cfg.exclude_types:
        energy = jnp.where(species == t, 0.0, energy)
    return energy
