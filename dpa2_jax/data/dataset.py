"""Training data: systems -> neighbor graphs -> padded batches, sampled as DeePMD-kit samples.

    batch size per system    an int, "auto" (at least 32 atoms per batch) or "auto:N" (at least
                             N atoms), DeePMD-kit's ``training_data.batch_size`` rule
    system probabilities     DeePMD-kit's default ``prob_sys_size`` (proportional to the number of
                             batches in a system, nframes // batch_size) or explicit ``sys_probs``
    order within a system    frames visited in a shuffled order, reshuffled after each pass

Each system's batches are padded to one shape (its batch size plus one graph, its atoms plus one,
and its largest frame's edges times the batch size, rounded to bucket sizes), so the number of
compilations is at most the number of systems and in practice the few distinct bucket shapes.
Atoms are rounded finely (``NODE_MANTISSA_BITS``: at most 6 % padding, since all the dense
per-atom work of a step scales with them), edges coarsely (only the neighbor table reads them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import jraph
import numpy as np

from dpa2_jax.data.ase_io import read_ase
from dpa2_jax.data.npy_system import find_systems, read_npy_systems
from dpa2_jax.data.system import System
from dpa2_jax.errors import ConfigError, DataError
from dpa2_jax.graph import batch_graphs, bucket_size, pad_graph, system_to_graphs

logger = logging.getLogger(__name__)

NODE_MANTISSA_BITS = 5  # 193 atoms (192 + the padding graph's) -> 200, not 224


def read_systems(paths: Sequence[str | os.PathLike], type_map=None) -> list[System]:
    """Systems from npy folders, folders searched for them, or ASE-readable files.

    A mixed-type npy folder (set.*/real_atom_types.npy) gives one System per composition.
    """
    systems = []
    for path in map(os.fspath, paths):
        if os.path.isdir(path):
            found = find_systems(path)
            if not found:
                raise DataError(f"{path}: no DeePMD npy system (a folder with type.raw) in it")
            for folder in found:
                systems += read_npy_systems(folder, type_map)
        elif os.path.exists(path):
            systems.append(read_ase(path, type_map=type_map))
        else:
            raise DataError(f"{path}: no such system folder or file")
    return systems


def batch_size_of(spec: int | str, natoms: int) -> int:
    """Frames per batch from DeePMD's ``batch_size`` (an int, "auto" or "auto:N")."""
    if isinstance(spec, bool):
        raise ConfigError(f"batch_size: expected an integer, 'auto' or 'auto:N', got {spec!r}")
    if isinstance(spec, int | np.integer):
        if spec < 1:
            raise ConfigError(f"batch_size: expected a positive integer, got {spec}")
        return int(spec)
    words = str(spec).split(":")
    if words[0] != "auto" or len(words) > 2 or (len(words) == 2 and not words[1].isdigit()):
        raise ConfigError(f"batch_size: expected an integer, 'auto' or 'auto:N', got {spec!r}")
    rule = int(words[1]) if len(words) == 2 else 32
    return max(1, -(-rule // natoms))  # the fewest frames holding at least `rule` atoms


def system_probabilities(
    nbatches: Sequence[int], sys_probs: Sequence[float] | None = None
) -> np.ndarray:
    """DeePMD's ``prob_sys_size`` (proportional to batches per system) or normalised weights."""
    if sys_probs is not None:
        probs = np.asarray(sys_probs, np.float64)
        if probs.shape != (len(nbatches),) or np.any(probs < 0) or probs.sum() <= 0:
            raise ConfigError(
                f"sys_probs: expected {len(nbatches)} non-negative weights, got {list(probs)}"
            )
        return probs / probs.sum()
    counts = np.asarray(nbatches, np.float64)
    return counts / counts.sum()


def model_parameters(
    system: System, numb_fparam: int = 0, numb_aparam: int = 0, default_fparam=None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The system's frame and atomic parameters as a fitting with these counts takes them.

    Returns (fparams [nframes, numb_fparam] or None, aparams [nframes, natoms, numb_aparam] or
    None): None where the count is 0. A system without fparam.npy gets ``default_fparam`` in
    every frame when the fitting has one (DeePMD-kit's data requirement with a default).

    Raises:
      DataError: the file is missing (and no default) or its width is not the model's.
    """
    fparams = aparams = None
    if numb_fparam:
        fparams = system.fparams
        if fparams is None:
            if default_fparam is None:
                raise DataError(
                    f"{system.path}: no fparam.npy, but the model has numb_fparam={numb_fparam} "
                    "(add set.*/fparam.npy, or give the fitting a default_fparam)"
                )
            fparams = np.tile(np.asarray(default_fparam, np.float64), (system.nframes, 1))
        if fparams.shape[1] != numb_fparam:
            raise DataError(
                f"{system.path}: fparam.npy has {fparams.shape[1]} values per frame, the model "
                f"numb_fparam={numb_fparam}"
            )
    if numb_aparam:
        aparams = system.aparams
        if aparams is None:
            raise DataError(
                f"{system.path}: no aparam.npy, but the model has numb_aparam={numb_aparam}"
            )
        if aparams.shape[2] != numb_aparam:
            raise DataError(
                f"{system.path}: aparam.npy has {aparams.shape[2]} values per atom, the model "
                f"numb_aparam={numb_aparam}"
            )
    return fparams, aparams


def fitting_parameters(system: System, fitting) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``model_parameters`` for a ``FittingConfig`` (numb_fparam, numb_aparam, default_fparam)."""
    return model_parameters(
        system, fitting.numb_fparam, fitting.numb_aparam, fitting.default_fparam
    )


class SystemBatches:
    """One system's graphs, batch size and padded shape, with a shuffled frame order."""

    def __init__(self, system: System, graphs: list[jraph.GraphsTuple], batch_size: int):
        self.system, self.graphs, self.batch_size = system, graphs, batch_size
        most_edges = max(int(g.n_edge[0]) for g in graphs)
        self.shape = (
            bucket_size(batch_size * system.natoms + 1, NODE_MANTISSA_BITS),
            bucket_size(batch_size * most_edges),
            batch_size + 1,
        )
        self.order: np.ndarray = np.arange(0)
        self.cursor = 0

    @property
    def nbatches(self) -> int:
        return max(1, self.system.nframes // self.batch_size)

    def next_batch(self, rng: np.random.Generator) -> jraph.GraphsTuple:
        """The next batch of the shuffled order, padded to ``self.shape``."""
        if self.cursor + self.batch_size > len(self.order):
            self.order, self.cursor = rng.permutation(len(self.graphs)), 0
            if len(self.order) < self.batch_size:  # fewer frames than a batch: repeat them
                self.order = np.resize(self.order, self.batch_size)
        idx = self.order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return pad_graph(batch_graphs([self.graphs[i] for i in idx]), *self.shape)

    def all_batches(self) -> list[jraph.GraphsTuple]:
        """Every frame once, in order, in padded batches (the last one may hold fewer)."""
        out = []
        for start in range(0, len(self.graphs), self.batch_size):
            chunk = self.graphs[start : start + self.batch_size]
            out.append(pad_graph(batch_graphs(chunk), *self.shape))
        return out


class Dataset:
    """Systems ready for training: ``sample(rng)`` draws a system, then its next batch.

    Args:
      systems: systems already in the model's type map.
      rcut, sel: the model's graph cutoff (Angstrom) and neighbors per atom.
      batch_size: DeePMD's ``batch_size`` (int, "auto", "auto:N"), or one per system.
      sys_probs: explicit system weights; None for DeePMD's ``prob_sys_size``.
      dtype: float dtype of the graphs (the model's precision).
      fitting: the head's ``FittingConfig``; with numb_fparam/numb_aparam each frame's fparam
        (``globals["fparam"]``) and aparam (``nodes["aparam"]``) go into its graph, padding
        graphs and atoms getting zeros (``model_parameters`` gives the rules). None or a
        fitting without them: no such fields.
      one_shape: pad every system's batches to one shape (the largest of each dimension), so
        the data set needs one compilation (multi-task training: one per task).
    """

    def __init__(
        self,
        systems: Sequence[System],
        rcut: float,
        sel: int,
        batch_size: int | str | Sequence[int | str] = "auto",
        sys_probs: Sequence[float] | None = None,
        dtype=np.float64,
        fitting=None,
        one_shape: bool = False,
    ):
        if not systems:
            raise DataError("no training systems")
        specs = batch_size if isinstance(batch_size, list | tuple) else [batch_size] * len(systems)
        if len(specs) != len(systems):
            raise ConfigError(f"batch_size: {len(specs)} values given for {len(systems)} systems")
        self.systems = []
        for s, b in zip(systems, specs):
            fparams, aparams = (None, None) if fitting is None else fitting_parameters(s, fitting)
            graphs = system_to_graphs(s, rcut, sel, dtype, fparams=fparams, aparams=aparams)
            self.systems.append(SystemBatches(s, graphs, batch_size_of(b, s.natoms)))
        self.probs = system_probabilities([s.nbatches for s in self.systems], sys_probs)
        if one_shape:
            self.pad_to(np.max([s.shape for s in self.systems], axis=0))
        shapes = sorted({s.shape for s in self.systems})
        logger.info(
            "%d systems, %d frames; %d padded batch shapes (one compilation each): %s",
            len(self.systems), sum(s.system.nframes for s in self.systems), len(shapes), shapes,
        )  # fmt: skip

    def pad_to(self, shape) -> None:
        """Pads every system's batches to ``shape`` (n_node, n_edge, n_graph), which must be at
        least each system's own."""
        shape = tuple(int(x) for x in shape)
        for s in self.systems:
            if any(a < b for a, b in zip(shape, s.shape)):
                raise ValueError(f"pad_to{shape}: smaller than {s.system.path}'s {s.shape}")
            s.shape = shape

    @property
    def shapes(self) -> set[tuple[int, int, int]]:
        """The distinct padded batch shapes (n_node, n_edge, n_graph)."""
        return {s.shape for s in self.systems}

    def state(self) -> list[dict]:
        """Where each system is in its shuffled order (JSON-ready), for an exact restart."""
        return [{"order": s.order.tolist(), "cursor": s.cursor} for s in self.systems]

    def restore(self, state: list[dict]) -> None:
        """Inverse of ``state``."""
        if len(state) != len(self.systems):
            raise ConfigError(
                f"the checkpoint's data position has {len(state)} systems, the config "
                f"{len(self.systems)}: restart with the same training systems"
            )
        for s, st in zip(self.systems, state):
            s.order, s.cursor = np.asarray(st["order"], np.int64), int(st["cursor"])

    def sample(self, rng: np.random.Generator) -> tuple[int, jraph.GraphsTuple]:
        """(system index, padded batch) drawn by the system probabilities."""
        k = int(rng.choice(len(self.systems), p=self.probs))
        return k, self.systems[k].next_batch(rng)
