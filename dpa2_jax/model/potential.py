"""The evaluation API: ``pot = dpa2_jax.load(path)``; ``pot.evaluate(coord, cell, atom_types)``.

A thin host-side wrapper around the model's pure functions: frames are checked
(``data/frames.py``), turned into neighbor graphs, grouped into padded batches of a few bucket
sizes (``graph/batching.py``), given a descriptor layout (``model/layout.py``) and evaluated by
the compiled ``make_forces_fn`` (``model/compiled.py``): repeated calls with frames of the same
size never recompile, and with the persistent compilation cache a new process does not either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from dpa2_jax.data.frames import as_cells, atom_type_indices, check_coords
from dpa2_jax.descriptor import Layout, family_of
from dpa2_jax.errors import ConfigError
from dpa2_jax.graph import BucketPadder, batch_graphs, frame_to_graph, node_mask
from dpa2_jax.graph.batching import EVAL_MANTISSA_BITS, plan_batches
from dpa2_jax.model.compiled import compiled_forces_fn
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.model.derivatives import make_hessian_fn
from dpa2_jax.model.layout import compact_layout
from dpa2_jax.typing import Params

logger = logging.getLogger(__name__)
_HESSIAN_FNS: dict[tuple, Callable] = {}  # one jit per (config, head, layout)


class Potential:
    """A loaded model: configuration, parameters and compiled evaluation.

    Args:
      config: the static ModelConfig.
      params: the parameter tree.
      atoms_per_batch: most atoms evaluated in one compiled call.
      node_chunk: centers per chunk of the per-atom blocks (memory, not numbers).

    A float64 model needs ``jax_enable_x64`` on before it is built (``dpa2_jax.load`` does
    that; see ``model/jax_setup.py``).
    """

    def __init__(
        self,
        config: ModelConfig,
        params: Params,
        atoms_per_batch: int = 2048,
        node_chunk: int = 1024,
    ):
        if config.descriptor.precision == "float64" and not jax.config.jax_enable_x64:
            raise ConfigError(
                "this model computes in float64 but jax_enable_x64 is off: call "
                "jax.config.update('jax_enable_x64', True) first (dpa2_jax.load does it for you)"
            )
        self.config = config
        dtype = jnp.float64 if config.descriptor.precision == "float64" else jnp.float32
        self.params = jax.tree.map(lambda x: jnp.asarray(x, dtype=dtype), params)
        self.atoms_per_batch = atoms_per_batch
        self.node_chunk = node_chunk
        self.padder = BucketPadder(mantissa_bits=EVAL_MANTISSA_BITS)
        self._blocks = family_of(config.descriptor).compactable_blocks(
            self.params["descriptor"], config.descriptor
        )
        self.dtype = np.float64 if dtype == jnp.float64 else np.float32  # of graphs fed in

    @property
    def type_map(self) -> tuple[str, ...]:
        return self.config.type_map

    @property
    def heads(self) -> tuple[str, ...]:
        return self.config.head_names

    @property
    def rcut(self) -> float:
        return self.config.descriptor.rcut

    def hessian(
        self,
        coord: np.ndarray,
        cell: np.ndarray | None,
        atom_types: Sequence[int] | Sequence[str] | np.ndarray,
        head: str | None = None,
    ) -> np.ndarray:
        """Hessians d^2E/dr dr [nframes, 3 natoms, 3 natoms] eV/A^2 (row and column index
        3 * atom + xyz), by forward-over-reverse autodiff (``derivatives.make_hessian_fn``).

        Arguments as ``evaluate`` (no fparam/aparam). Frames are evaluated one at a time; the
        cost is about 3 natoms gradient evaluations, so this is for molecules and small cells.
        """
        head = self.config.resolve_head(head)
        types = atom_type_indices(atom_types, self.type_map)
        coord = check_coords(coord, len(types))
        cells = as_cells(cell, coord.shape[0])
        desc = self.config.descriptor
        check_parameters(self.config.fitting(head), None, None, coord.shape[0], len(types))
        out = []
        for k in range(coord.shape[0]):
            graph = frame_to_graph(coord[k], types, None if cells is None else cells[k],
                                   desc.rcut, desc.sel, dtype=self.dtype)  # fmt: skip
            _, shape = plan_batches([len(types)], [int(graph.n_edge[0])], self.atoms_per_batch)
            batch = batch_graphs([graph])
            layout = self.layout([batch])
            key = (self.config, head, layout)
            if key not in _HESSIAN_FNS:
                _HESSIAN_FNS[key] = jax.jit(make_hessian_fn(*key))
            batch = self.padder.pad_to(batch, shape)
            h = np.asarray(_HESSIAN_FNS[key](self.params, batch))  # [n_node, 3, n_node, 3]
            real = np.flatnonzero(np.asarray(node_mask(batch)))[: len(types)]
            n = 3 * len(types)
            out.append(h[real][:, :, real].reshape(n, n))
        return np.stack(out)

    def layout(self, batches: Sequence[jraph.GraphsTuple]) -> Layout:
        """The descriptor layout ``evaluate`` uses for these unpadded batches."""
        return compact_layout(self._blocks, batches, self.node_chunk)

    def evaluate(
        self,
        coord: np.ndarray,
        cell: np.ndarray | None,
        atom_types: Sequence[int] | Sequence[str] | np.ndarray,
        head: str | None = None,
        fparam: np.ndarray | None = None,
        aparam: np.ndarray | None = None,
        atomic_virial: bool = False,
    ) -> dict[str, np.ndarray]:
        """Energies, forces and virials of frames sharing one list of atoms.

        Args:
          coord: [nframes, natoms, 3] (or [natoms, 3]) Angstrom.
          cell: [nframes, 3, 3] (or [3, 3], or [nframes, 9]) Angstrom with rows the lattice
            vectors, or None for non-periodic frames.
          atom_types: [natoms] indices into ``type_map``, or element symbols.
          head: fitting head; may be omitted for single-head models.
          fparam: frame parameters [nframes, numb_fparam] (or [numb_fparam], the same for every
            frame), for models with numb_fparam (optional if the model has default_fparam).
          aparam: atomic parameters [nframes, natoms, numb_aparam] (or [natoms, numb_aparam]),
            for models with numb_aparam.
          atomic_virial: also return atom_virial (DeePMD-kit's, about 4 times the cost).

        Returns:
          dict of numpy arrays: energy [nframes] eV, forces [nframes, natoms, 3] eV/A,
          virial [nframes, 3, 3] eV (DeePMD's sign), stress [nframes, 3, 3] eV/A^3 (ASE's sign;
          zero without a cell), atom_energy [nframes, natoms] eV, and with atomic_virial
          atom_virial [nframes, natoms, 3, 3] eV (sums over the atoms to virial).
        """
        head = self.config.resolve_head(head)
        types = atom_type_indices(atom_types, self.type_map)
        coord = check_coords(coord, len(types))
        cells = as_cells(cell, coord.shape[0])
        desc = self.config.descriptor
        fparam, aparam = check_parameters(
            self.config.fitting(head), fparam, aparam, coord.shape[0], len(types)
        )
        graphs = [
            frame_to_graph(coord[k], types, None if cells is None else cells[k], desc.rcut,
                           desc.sel, dtype=self.dtype,
                           fparam=None if fparam is None else fparam[k],
                           aparam=None if aparam is None else aparam[k])
            for k in range(coord.shape[0])
        ]  # fmt: skip
        groups, shape = plan_batches(
            [len(types)] * len(graphs), [int(g.n_edge[0]) for g in graphs], self.atoms_per_batch
        )
        batches = [batch_graphs(graphs[g]) for g in groups]
        layout = self.layout(batches)
        forces_fn = compiled_forces_fn(self.config, head, layout, atomic_virial=atomic_virial)
        results = []
        for batch in batches:
            n = len(batch.n_node)
            batch = self.padder.pad_to(batch, shape)
            out = forces_fn(self.params, batch)
            mask = np.asarray(node_mask(batch))
            results.append(
                {
                    "energy": np.asarray(out["energy"])[:n],
                    "forces": np.asarray(out["forces"])[mask].reshape(n, -1, 3),
                    "virial": np.asarray(out["virial"])[:n],
                    "stress": np.asarray(out["stress"])[:n],
                    "atom_energy": np.asarray(out["atom_energy"])[mask].reshape(n, -1),
                }
            )
            if atomic_virial:
                atom_virial = np.asarray(out["atom_virial"])[mask].reshape(n, -1, 3, 3)
                results[-1]["atom_virial"] = atom_virial
        return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


def check_parameters(
    fit, fparam, aparam, nframes: int, natoms: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """fparam [nframes, nfp] and aparam [nframes, natoms, nap] as the head needs them.

    A [nfp] fparam (or [natoms, nap] aparam) is the same for every frame. Raises ConfigError
    naming the field and the expected shape when one is missing, unexpected or mis-shaped.
    """
    out = []
    for name, value, n, shape, default in (
        ("fparam", fparam, fit.numb_fparam, (nframes, fit.numb_fparam), fit.default_fparam),
        ("aparam", aparam, fit.numb_aparam, (nframes, natoms, fit.numb_aparam), None),
    ):
        if value is None:
            if n and default is None:
                raise ConfigError(
                    f"this model needs {name} of shape {list(shape)} (numb_{name}={n}); none given"
                )
            out.append(None)
            continue
        if not n:
            raise ConfigError(f"{name} given, but this model has numb_{name}=0")
        value = np.asarray(value, dtype=np.float64)
        if value.shape == shape[1:]:
            value = np.broadcast_to(value, shape)
        if value.shape != shape:
            raise ConfigError(
                f"{name}: expected shape {list(shape)} (or {list(shape[1:])}), "
                f"got {list(value.shape)}"
            )
        out.append(value)
    return out[0], out[1]

