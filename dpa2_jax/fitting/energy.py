"""Energy fitting net (DeePMD's ``EnergyFittingNet``).

    E_i = N([D_i, (f - fparam_avg) * fparam_inv_std, (a_i - aparam_avg) * aparam_inv_std])
          + bias_atom_e[t_i]             (zero for atom types in exclude_types)

f [numb_fparam] are the frame parameters of atom i's frame and a_i [numb_aparam] its atomic
parameters (DeePMD's ``GeneralFitting._call_common``); either block is absent when its count is 0.

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
    numb_fparam: int = 0
    numb_aparam: int = 0
    default_fparam: tuple[float, ...] | None = None  # used when no fparam is given

    def __post_init__(self):
        check_activation(self.activation_function)
        if self.default_fparam is not None:
            object.__setattr__(self, "default_fparam", tuple(float(v) for v in self.default_fparam))
            if len(self.default_fparam) != self.numb_fparam:
                raise ConfigError(
                    f"fitting_net.default_fparam has {len(self.default_fparam)} values, "
                    f"numb_fparam={self.numb_fparam}"
                )
        if self.precision not in ("float64", "float32"):
            raise ConfigError(f"fitting_net.precision={self.precision!r}: use float64 or float32")


def init(rng: Rng, cfg: FittingConfig, dim_descrpt: int, ntypes: int, dtype) -> Params:
    d_in = dim_descrpt + cfg.numb_fparam + cfg.numb_aparam

    def net():
        return init_network(rng, d_in, cfg.neuron, cfg.resnet_dt, d_out=1, dtype=dtype)

    nets = {"layers": net()} if cfg.mixed_types else {"type_layers": [net() for _ in range(ntypes)]}
    stats = {}
    for name, n in (("fparam", cfg.numb_fparam), ("aparam", cfg.numb_aparam)):
        if n:  # neutral until computed from data
            stats[f"{name}_avg"] = np.zeros((n,), dtype)
            stats[f"{name}_inv_std"] = np.ones((n,), dtype)
    return {**nets, "bias_atom_e": np.zeros((ntypes, 1), dtype), **stats}


def fitting_input(
    params: Params, descriptor: Array, fparam: Array | None, aparam: Array | None
) -> Array:
    """[D, normalised fparam, normalised aparam]: [n_node, dim + numb_fparam + numb_aparam].

    fparam: [n_node, numb_fparam] (each atom's frame's parameters) or None;
    aparam: [n_node, numb_aparam] or None.
    """
    parts = [descriptor]
    for name, value in (("fparam", fparam), ("aparam", aparam)):
        if value is not None:
            value = value.astype(descriptor.dtype)
            parts.append((value - params[f"{name}_avg"]) * params[f"{name}_inv_std"])
    return jnp.concatenate(parts, axis=-1) if len(parts) > 1 else descriptor


def apply(
    params: Params,
    cfg: FittingConfig,
    descriptor: Array,
    species: Array,
    fparam: Array | None = None,
    aparam: Array | None = None,
) -> Array:
    """Atomic energies [n_node] from the descriptor [n_node, dim] and species [n_node].

    fparam [n_node, numb_fparam] and aparam [n_node, numb_aparam] are required exactly when
    the config has them (``model/energy.py`` checks and broadcasts them).
    """
    act = cfg.activation_function
    descriptor = fitting_input(params, descriptor, fparam, aparam)
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
