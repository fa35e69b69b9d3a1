"""The evaluation API: ``pot = dpa2_jax.load(path)``; ``pot.evaluate(coord, cell, atom_types)``.

Frames are turned into neighbor graphs on the host, grouped into padded batches of a few bucket
sizes, and evaluated by one jitted function per (head, padded shape): repeated calls with frames
of the same size never recompile.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dpa2_jax.errors import CheckpointError, ConfigError, DataError
from dpa2_jax.graph import BucketPadder, batch_graphs, frame_to_graph, node_mask
from dpa2_jax.descriptor.dpa2 import truncation_is_exact
from dpa2_jax.model.compile_options import compiler_options
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.model.derivatives import energy_and_derivatives
from dpa2_jax.typing import Params

logger = logging.getLogger(__name__)


def _evaluate_batch(params, cfg: ModelConfig, head: str, graph, slots=None):
    """Energy, forces, virial of a padded batch: one compilation per (cfg, head, slots, shape)."""
    return _compiled_evaluator()(params, cfg, head, graph, slots)


@functools.cache
def _compiled_evaluator():
    return jax.jit(
        lambda params, cfg, head, graph, slots: energy_and_derivatives(
            params, cfg, graph, head, slots=slots
        ),
        static_argnums=(1, 2, 4),
        compiler_options=compiler_options(),
    )


def enable_x64_for(cfg: ModelConfig) -> None:
    """float64 models need ``jax_enable_x64``; turn it on (once, with a log line) if needed."""
    if cfg.descriptor.precision == "float64" and not jax.config.jax_enable_x64:
        logger.info("enabling jax_enable_x64 for a float64 model")
        jax.config.update("jax_enable_x64", True)


class Potential:
    """A loaded model: configuration, parameters and a compiled evaluator.

    Attributes:
      config: the static ModelConfig.
      params: the parameter tree (device arrays).
      type_map: element symbols, atom type t is ``type_map[t]``.
      heads: names of the fitting heads.
    """

    def __init__(self, config: ModelConfig, params: Params, atoms_per_batch: int = 2048):
        enable_x64_for(config)
        self.config = config
        dtype = jnp.float64 if config.descriptor.precision == "float64" else jnp.float32
        self.params = jax.tree.map(lambda x: jnp.asarray(x, dtype=dtype), params)
        self.atoms_per_batch = atoms_per_batch
        # 4 significant bits: at most 12.5 % padding (the dense per-atom work scales with it)
        self.padder = BucketPadder(mantissa_bits=4)
        self._exact_truncation = truncation_is_exact(self.params["descriptor"], config.descriptor)
        self._dtype = np.float64 if dtype == jnp.float64 else np.float32

    @property
    def type_map(self) -> tuple[str, ...]:
        return self.config.type_map

    @property
    def heads(self) -> tuple[str, ...]:
        return self.config.head_names

    @property
    def rcut(self) -> float:
        return self.config.descriptor.rcut

    def atom_types(self, atom_types: Sequence[int] | Sequence[str] | np.ndarray) -> np.ndarray:
        """Type indices [natoms] from indices or element symbols, checked against the type map."""
        values = list(np.asarray(atom_types).reshape(-1))
        if values and isinstance(values[0], str | np.str_):
            missing = sorted({str(s) for s in values} - set(self.type_map))
            if missing:
                raise DataError(
                    f"atom_types: element(s) {missing} are not in the model's type map "
                    f"{list(self.type_map)}"
                )
            return np.array([self.type_map.index(str(s)) for s in values], np.int32)
        types = np.asarray(atom_types)
        if types.ndim != 1 or not np.issubdtype(types.dtype, np.integer):
            raise DataError(
                f"atom_types: expected a 1-D list of integers or element symbols, got "
                f"shape {types.shape} dtype {types.dtype}"
            )
        bad = types[(types < 0) | (types >= len(self.type_map))]
        if bad.size:
            raise DataError(
                f"atom_types: type(s) {sorted(set(bad.tolist()))} out of range for the type map "
                f"{list(self.type_map)} (valid 0..{len(self.type_map) - 1})"
            )
        return types.astype(np.int32)

    def slots(self, batches) -> tuple[int, int]:
        """Static (three-body, repformer) slot counts for these batches: the most neighbors any
        atom has within each block's cutoff, rounded up to a multiple of 8 (so few shapes
        compile), wherever laying out fewer than sel slots gives the same numbers."""
        ri, rf = self.config.descriptor.repinit, self.config.descriptor.repformer
        exact3, exactf = self._exact_truncation
        n3 = _max_neighbors(batches, ri.three_body_rcut) if exact3 else ri.three_body_sel
        nf = _max_neighbors(batches, rf.rcut) if exactf else rf.nsel
        return (min(ri.three_body_sel, _round8(n3)), min(rf.nsel, _round8(nf)))

    def evaluate(
        self,
        coord: np.ndarray,
        cell: np.ndarray | None,
        atom_types: Sequence[int] | Sequence[str] | np.ndarray,
        head: str | None = None,
    ) -> dict[str, np.ndarray]:
        """Energies, forces and virials of frames sharing one list of atoms.

        Args:
          coord: [nframes, natoms, 3] (or [natoms, 3]) Angstrom.
          cell: [nframes, 3, 3] (or [3, 3], or [nframes, 9]) Angstrom with rows the lattice
            vectors, or None for non-periodic frames.
          atom_types: [natoms] indices into ``type_map``, or element symbols.
          head: fitting head; may be omitted for single-head models.

        Returns:
          dict of numpy arrays: energy [nframes] eV, forces [nframes, natoms, 3] eV/A,
          virial [nframes, 3, 3] eV (DeePMD's sign), stress [nframes, 3, 3] eV/A^3 (ASE's sign;
          zero without a cell), atom_energy [nframes, natoms] eV.
        """
        head = self.config.resolve_head(head)
        types = self.atom_types(atom_types)
        coord = _check_coord(coord, len(types))
        cells = _check_cell(cell, coord.shape[0])
        graphs = [
            frame_to_graph(
                coord[k], types, None if cells is None else cells[k], self.rcut,
                self.config.descriptor.sel, dtype=self._dtype,
            )
            for k in range(coord.shape[0])
        ]  # fmt: skip
        per_batch = max(1, self.atoms_per_batch // max(len(types), 1))
        batches = [
            batch_graphs(graphs[start : start + per_batch])
            for start in range(0, len(graphs), per_batch)
        ]
        # Every batch of this call (a short last one too) gets the largest one's bucket.
        sizes = [self.padder.sizes(b, n_graph=per_batch + 1) for b in batches]
        shape = tuple(max(s[k] for s in sizes) for k in range(3))
        slots = self.slots(batches)
        results = []
        for batch in batches:
            n = len(batch.n_node)
            batch = self.padder.pad_to(batch, shape)
            out = _evaluate_batch(self.params, self.config, head, batch, slots)
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
        return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


def _round8(n: int) -> int:
    return max(8, -(-n // 8) * 8)


def _max_neighbors(batches, rcut: float) -> int:
    """The most neighbors within rcut (plus 1e-6 A) of any atom in unpadded host batches."""
    most = 0
    for b in batches:
        node_graph = np.repeat(np.arange(len(b.n_node)), b.n_node)
        edge_graph = node_graph[b.receivers]
        cells = b.globals["cell"][edge_graph]  # [n_edge, 3, 3]
        pos = b.nodes["positions"]
        diff = pos[b.senders] - pos[b.receivers] + np.einsum("ek,ekd->ed", b.edges["shifts"], cells)
        within = np.linalg.norm(diff, axis=-1) <= rcut + 1e-6
        counts = np.bincount(b.receivers[within], minlength=len(pos))
        most = max(most, int(counts.max(initial=0)))
    return most


def _as_float(value, name: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name}: expected an array of numbers ({err})") from err


def _check_coord(coord, natoms: int) -> np.ndarray:
    coord = _as_float(coord, "coord")
    if coord.ndim == 2:
        coord = coord[None]
    if coord.ndim != 3 or coord.shape[1:] != (natoms, 3) or coord.shape[0] == 0:
        raise DataError(
            f"coord: expected shape (nframes, {natoms}, 3) for {natoms} atoms, got {coord.shape}"
        )
    if not np.all(np.isfinite(coord)):
        frame = int(np.argwhere(~np.isfinite(coord))[0, 0])
        raise DataError(f"coord: NaN or inf in frame {frame}")
    return coord


def _check_cell(cell, nframes: int) -> np.ndarray | None:
    if cell is None:
        return None
    cell = _as_float(cell, "cell")
    if cell.shape in ((3, 3), (9,)):
        cell = np.broadcast_to(cell.reshape(1, 3, 3), (nframes, 3, 3))
    elif cell.ndim == 2 and cell.shape == (nframes, 9):
        cell = cell.reshape(nframes, 3, 3)
    if cell.shape != (nframes, 3, 3):
        raise DataError(f"cell: expected shape ({nframes}, 3, 3), (3, 3) or None, got {cell.shape}")
    if not np.all(np.isfinite(cell)):
        frame = int(np.argwhere(~np.isfinite(cell))[0, 0])
        raise DataError(f"cell: NaN or inf in frame {frame}")
    volume = np.abs(np.linalg.det(cell))
    if np.any(volume < 1e-6):
        frame = int(np.argmin(volume))
        raise DataError(f"cell: frame {frame} has a singular cell (volume {volume[frame]:.3g} A^3)")
    return cell


def load(path: str | os.PathLike, atoms_per_batch: int = 2048) -> Potential:
    """Loads a DeePMD ``.dp`` file or a dpa2_jax model directory (see ``dpa2-jax convert``)."""
    from dpa2_jax.io.checkpoints import load_model
    from dpa2_jax.io.deepmd_model import from_deepmd, model_json
    from dpa2_jax.io.dp_format import read_dp

    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such model file or directory")
    if os.path.isdir(path):
        cfg, params, _ = load_model(path)
    elif path.endswith(".dp"):
        try:
            cfg, params = from_deepmd(model_json(read_dp(path)))
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err
    else:
        raise ConfigError(f"{path}: expected a .dp file or a dpa2_jax model directory")
    return Potential(cfg, params, atoms_per_batch=atoms_per_batch)
