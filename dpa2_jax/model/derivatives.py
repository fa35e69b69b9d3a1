"""Energy, forces and virial by automatic differentiation.

Positions and cells are deformed by a homogeneous strain, r -> r (I + eps), cell -> cell (I + eps),
and one ``jax.grad`` of the total energy gives

    forces  F_i  = -dE/dr_i                           [n_node, 3]   eV/Angstrom
    virial  W_g  = -(dE/d eps_g)^T = sum_i F_i (x) r_i  [n_graph, 3, 3] eV   (DeePMD's sign)
    stress  s_g  = -W_g / V_g                          [n_graph, 3, 3] eV/Angstrom^3 (ASE's sign)

The per-atom virial (DeePMD-kit's ``atom_virial``, ``atomic_virial=True``) splits W over the
atoms: with g_ij = dE/dr_ij per edge, c_i the center's position wrapped into the cell (DeePMD's
``normalize_coord``) and image positions c_i + r_ij,

    W_i = sum_{edges (l, j=i)} -g_lj (x) (c_l + r_lj) + sum_{edges (i, k)} g_ik (x) c_i
          + sum_y [ sum_{edges (l, j=i)} h^y_lj - sum_{edges (i, k)} h^y_ik ] (x) e_y,

where h^y = d(sum_l E_l c_l,y)/dr (DeePMD's coordinate-weighted correction, which sums to zero
over the atoms). Then sum_i W_i = W.

Edge vectors are built inside the differentiated function, so periodic images carry the strain
through the cell. The energy is differentiable twice (force-matching losses), and

    Hessian H_(ia),(jb) = d^2 E / dr_ia dr_jb = -dF_ia/dr_jb   [n_node, 3, n_node, 3] eV/Angstrom^2

is forward-over-reverse (``jax.jacfwd`` of ``jax.grad``: 3 n_node forward passes through the
backward pass, so for molecules and small cells), with the neighbor graph held fixed.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jraph

from dpa2_jax.descriptor import Layout
from dpa2_jax.graph import fields
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.model.energy import (
    dtype_of,
    graph_energies,
    make_atomic_energy_core,
    make_atomic_energy_fn,
)
from dpa2_jax.typing import Array, Params


def _strained(graph: jraph.GraphsTuple, strain: Array) -> tuple[Array, Array]:
    positions, cells = fields.positions(graph), fields.cells(graph)
    deform = jnp.eye(3, dtype=strain.dtype) + strain  # [n_graph, 3, 3]
    node_graph = fields.node_graph(graph)
    positions = jnp.einsum("ni,nij->nj", positions.astype(strain.dtype), deform[node_graph])
    cells = jnp.einsum("gki,gij->gkj", cells.astype(strain.dtype), deform)
    return positions, cells


def make_forces_fn(
    cfg: ModelConfig,
    head: str | None = None,
    layout: Layout = Layout(),
    slots_on_device: bool = False,
    atomic_virial: bool = False,
) -> Callable[[Params, jraph.GraphsTuple], dict[str, Array]]:
    """``forces_fn(params, graph)``: energy, forces, virial and stress of a padded batch.

    Arguments as ``energy.make_atomic_energy_fn``; positions and cells are the graph's own.
    The returned function is pure and not jitted. It returns a dict:
      energy  [n_graph]        eV
      forces  [n_node, 3]      eV/Angstrom
      virial  [n_graph, 3, 3]  eV, DeePMD's sign
      stress  [n_graph, 3, 3]  eV/Angstrom^3, ASE's sign (zero for non-periodic graphs)
      atom_energy [n_node]     eV
      atom_virial [n_node, 3, 3]  eV, DeePMD's ``atom_virial`` (only with atomic_virial=True;
                                  four more backward passes)
    Frame and atomic parameters are read from the graph (``energy.fitting_parameters``).
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

        disp0 = jnp.zeros(fields.positions(graph).shape, dtype)
        strain0 = jnp.zeros((n_graph, 3, 3), dtype)
        (_, (energies, atomic)), (d_disp, d_strain) = jax.value_and_grad(
            total_energy, argnums=(0, 1), has_aux=True
        )(disp0, strain0)
        virial = -jnp.swapaxes(d_strain, -1, -2)
        volume = jnp.abs(jnp.linalg.det(fields.cells(graph).astype(dtype)))
        safe = jnp.where(volume > 0, volume, 1.0)
        stress = jnp.where((volume > 0)[:, None, None], -virial / safe[:, None, None], 0.0)
        return {
            "energy": energies,
            "forces": -d_disp,
            "virial": virial,
            "stress": stress,
            "atom_energy": atomic,
        }

    if not atomic_virial:
        return forces_fn
    core = make_atomic_energy_core(cfg, head, layout, slots_on_device)

    def forces_and_atomic_virial_fn(params: Params, graph: jraph.GraphsTuple) -> dict[str, Array]:
        out = forces_fn(params, graph)
        out["atom_virial"] = atom_virial(core, params, graph, cfg.descriptor.sel, dtype)
        return out

    return forces_and_atomic_virial_fn


def make_hessian_fn(
    cfg: ModelConfig,
    head: str | None = None,
    layout: Layout = Layout(),
    slots_on_device: bool = False,
) -> Callable[[Params, jraph.GraphsTuple], Array]:
    """``hessian_fn(params, graph)`` -> [n_node, 3, n_node, 3] eV/Angstrom^2: second
    derivatives of the summed energy of a padded batch (block diagonal over its graphs; rows and
    columns of padding nodes are meaningless). Arguments as ``make_forces_fn``; not jitted."""
    atomic_energy_fn = make_atomic_energy_fn(cfg, head, layout, slots_on_device)
    dtype = dtype_of(cfg)

    def hessian_fn(params: Params, graph: jraph.GraphsTuple) -> Array:
        positions = fields.positions(graph).astype(dtype)
        cells = fields.cells(graph).astype(dtype)

        def total_energy(disp):  # disp: [n_node, 3]
            atomic = atomic_energy_fn(params, graph, positions + disp, cells)
            return jnp.sum(graph_energies(graph, atomic))

        return jax.jacfwd(jax.grad(total_energy))(jnp.zeros_like(positions))

    return hessian_fn


def wrapped_positions(graph: jraph.GraphsTuple, dtype) -> Array:
    """Positions [n_node, 3] wrapped into their cells as DeePMD's ``normalize_coord`` does
    (unchanged for a non-periodic graph, whose cell is zero)."""
    positions = fields.positions(graph).astype(dtype)
    cells = fields.cells(graph).astype(dtype)
    node_graph = fields.node_graph(graph)
    periodic = jnp.abs(jnp.linalg.det(cells)) > 0  # [n_graph]
    safe = jnp.where(periodic[:, None, None], cells, jnp.eye(3, dtype=dtype))
    cell = safe[node_graph]  # [n_node, 3, 3]
    frac = jnp.einsum("ni,nij->nj", positions, jnp.linalg.inv(safe)[node_graph]) % 1.0
    wrapped = jnp.einsum("ni,nij->nj", frac, cell)
    return jnp.where(periodic[node_graph][:, None], wrapped, positions)


def atom_virial(core: Callable, params: Params, graph: jraph.GraphsTuple, sel: int, dtype) -> Array:
    """DeePMD-kit's per-atom virial [n_node, 3, 3] eV (formula in the module docstring).

    core: ``energy.make_atomic_energy_core``'s function; sel: its number of slots.
    """
    positions = fields.positions(graph).astype(dtype)
    cells = fields.cells(graph).astype(dtype)
    n_node = positions.shape[0]

    def atomic_of(delta):
        return core(params, graph, positions, cells, delta)

    delta0 = jnp.zeros((n_node, sel, 3), dtype)
    _, pullback, nb = jax.vjp(atomic_of, delta0, has_aux=True)
    c = wrapped_positions(graph, dtype)  # [n_node, 3]
    cotangents = jnp.concatenate([jnp.ones((1, n_node), dtype), c.T], axis=0)  # [4, n_node]
    grads = jax.vmap(lambda ct: pullback(ct)[0])(cotangents)  # [4, n_node, sel, 3]
    mask = nb.mask[..., None]
    g = jnp.where(mask, grads[0], 0.0)  # dE/dr_ij
    h = jnp.where(mask[None], grads[1:], 0.0)  # [3(y), n_node, sel, 3(x)]
    image = c[:, None, :] + nb.diff  # [n_node, sel, 3] neighbor image positions
    neighbor = jnp.where(nb.mask, nb.index, n_node).reshape(-1)  # drop empty slots
    on_neighbors = -jnp.einsum("nsx,nsy->nsxy", g, image).reshape(-1, 3, 3)
    on_neighbors = on_neighbors + jnp.einsum("ynsx->nsxy", h).reshape(-1, 3, 3)
    on_centers = jnp.einsum("nsx,ny->nxy", g, c) - jnp.einsum("ynsx->nxy", h)
    return (
        on_centers + jax.ops.segment_sum(on_neighbors, neighbor, num_segments=n_node + 1)[:n_node]
    )
