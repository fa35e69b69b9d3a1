"""Energy, forces and virial by automatic differentiation.

Positions and cells are deformed by a homogeneous strain, r -> r (I + eps), cell -> cell (I + eps),
and one ``jax.grad`` of the total energy gives

    forces  F_i  = -dE/dr_i                           [n_node, 3]   eV/Angstrom
    virial  W_g  = -(dE/d eps_g)^T = sum_i F_i (x) r_i  [n_graph, 3, 3] eV   (DeePMD's sign)
    stress  s_g  = -W_g / V_g                          [n_graph, 3, 3] eV/Angstrom^3 (ASE's sign)

Edge vectors are built inside the differentiated function, so periodic images carry the strain
through the cell. The energy is differentiable twice (Hessians, force-matching losses).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jraph

from dpa2_jax.descriptor import Layout
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.model.energy import dtype_of, graph_energies, make_atomic_energy_fn
from dpa2_jax.typing import Array, Params


def _strained(graph: jraph.GraphsTuple, strain: Array) -> tuple[Array, Array]:
    positions = graph.nodes["positions"]
    cells = graph.globals["cell"]
    n_graph = cells.shape[0]
    node_graph = jnp.repeat(
        jnp.arange(n_graph), graph.n_node, total_repeat_length=positions.shape[0]
    )
    deform = jnp.eye(3, dtype=strain.dtype) + strain  # [n_graph, 3, 3]
    positions = jnp.einsum("ni,nij->nj", positions.astype(strain.dtype), deform[node_graph])
    cells = jnp.einsum("gki,gij->gkj", cells.astype(strain.dtype), deform)
    return positions, cells


def make_forces_fn(
    cfg: ModelConfig,
    head: str | None = None,
    layout: Layout = Layout(),
    slots_on_device: bool = False,
) -> Callable[[Params, jraph.GraphsTuple], dict[str, Array]]:
    """``forces_fn(params, graph)``: energy, forces, virial and stress of a padded batch.

    Arguments as ``energy.make_atomic_energy_fn``; positions and cells are the graph's own.
    The returned function is pure and not jitted. It returns a dict:
      energy  [n_graph]        eV
      forces  [n_node, 3]      eV/Angstrom
      virial  [n_graph, 3, 3]  eV, DeePMD's sign
      stress  [n_graph, 3, 3]  eV/Angstrom^3, ASE's sign (zero for non-periodic graphs)
      atom_energy [n_node]     eV
    Padding nodes and the padding graph carry meaningless values; mask them with jraph's
    padding masks.
    """
    atomic_energy_fn = make_atomic_energy_fn(cfg, head, layout, slots_on_device)
    dtype = dtype_of(cfg)

    def forces_fn(params: Params, graph: jraph.GraphsTuple) -> dict[str, Array]:
        n_graph = graph.n_node.shape[0]

        # d/d(positions) is d/d(strain-free positions): take it through a zero displacement.
        def total_energy(disp, strain):
            positions, cells = _strained(graph, strain)
            atomic = atomic_energy_fn(params, graph, positions + disp, cells)
            energies = graph_energies(graph, atomic)
            return jnp.sum(energies), (energies, atomic)

        disp0 = jnp.zeros(graph.nodes["positions"].shape, dtype)
        strain0 = jnp.zeros((n_graph, 3, 3), dtype)
        (_, (energies, atomic)), (d_disp, d_strain) = jax.value_and_grad(
            total_energy, argnums=(0, 1), has_aux=True
        )(disp0, strain0)
        virial = -jnp.swapaxes(d_strain, -1, -2)
        volume = jnp.abs(jnp.linalg.det(graph.globals["cell"].astype(dtype)))
        safe = jnp.where(volume > 0, volume, 1.0)
        stress = jnp.where((volume > 0)[:, None, None], -virial / safe[:, None, None], 0.0)
        return {
            "energy": energies,
            "forces": -d_disp,
            "virial": virial,
            "stress": stress,
            "atom_energy": atomic,
        }

    return forces_fn
