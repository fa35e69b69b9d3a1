"""The model as pure functions: graph -> atomic energies -> energy, forces, virial.

params = init(key, cfg)
energy_fn = make_energy_fn(cfg, head)      # energy_fn(params, graph, positions, cells)
forces_fn = make_forces_fn(cfg, head)      # forces_fn(params, graph) -> energy, forces, ...
"""

from dpa2_jax.model.derivatives import make_forces_fn
from dpa2_jax.model.energy import init, make_atomic_energy_fn, make_energy_fn

__all__ = ["init", "make_atomic_energy_fn", "make_energy_fn", "make_forces_fn"]
