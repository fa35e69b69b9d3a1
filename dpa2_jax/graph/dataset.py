"""Training batches: systems -> neighbor graphs -> padded batches, drawn as DeePMD-kit draws them
(batch sizes and system probabilities: ``data/dataset.py``).

Each system's batches are padded to one shape (its batch size plus one graph, its atoms plus one,
and its largest frame's edges times the batch size, rounded to bucket sizes), so the number of
compilations is at most the number of systems and in practice the few distinct bucket shapes.
Atoms are rounded finely (``NODE_MANTISSA_BITS``: at most 6 % padding, since all the dense
per-atom work of a step scales with them), edges coarsely (only the neighbor table reads them);
then the systems sharing a shape pad their atoms only to the most any of them needs
(``tighten_nodes``).

Systems in memory have every graph built up front; streamed systems (``data/npy_stream.py``,
pretraining-sized data) have theirs built per batch (``SystemBatches``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import jraph
import numpy as np

from dpa2_jax.data.dataset import batch_size_of, fitting_parameters, system_probabilities
from dpa2_jax.data.system import System
from dpa2_jax.errors import ConfigError, DataError
from dpa2_jax.graph import fields
from dpa2_jax.graph.graph import batch_graphs, system_to_graphs
from dpa2_jax.graph.padding import bucket_size, pad_graph

logger = logging.getLogger(__name__)

NODE_MANTISSA_BITS = 5  # 193 atoms (192 + the padding graph's) -> 200, not 224
SHAPE_SAMPLE_FRAMES = 128  # frames of a streamed system whose graphs set its padded shape
EDGE_MARGIN = 1.1  # a streamed system's edges padded to 1.1 x its sample's most (then bucketed)


class SystemBatches:
    """One system's batch size and padded shape, with a shuffled frame order.

    ``system`` in memory (a ``System``): its graphs are built here, all of them, and the padded
    edges fit its largest frame. Streamed (``NpyFrames``, ``data/npy_stream.py``): graphs are
    built per batch from the frames read for it; the padded edges come from a spread sample of
    ``SHAPE_SAMPLE_FRAMES`` frames with an ``EDGE_MARGIN``, as do the descriptor's slots
    (``neighbor_limits``, set by the training layout; a batch beyond either is a DataError),
    and each pass's order is a permutation drawn from a seed the generator gives, so the data
    position is two numbers (``state``) however many frames the system has.
    """

    def __init__(self, system, batch_size: int, to_graphs: Callable):
        self.system, self.batch_size, self.to_graphs = system, batch_size, to_graphs
        self.streamed = not isinstance(system, System)
        if self.streamed:
            spread = np.linspace(0, system.nframes - 1, SHAPE_SAMPLE_FRAMES).astype(int)
            self.graphs = None
            self.sample_graphs = to_graphs(system.select_frames(np.unique(spread)))
            most_edges = math.ceil(EDGE_MARGIN * max(int(g.n_edge[0]) for g in self.sample_graphs))
        else:
            self.graphs = self.sample_graphs = to_graphs(system)
            most_edges = max(int(g.n_edge[0]) for g in self.graphs)
        self.shape = (
            bucket_size(batch_size * system.natoms + 1, NODE_MANTISSA_BITS),
            bucket_size(batch_size * most_edges),
            batch_size + 1,
        )
        self.order: np.ndarray = np.arange(0)
        self.cursor, self.order_seed = 0, None
        self.neighbor_limits: Sequence[tuple[float, int]] = ()  # streamed: (rcut A, most)
        self.share: np.ndarray | None = None  # streamed, several processes: this one's frames

    @property
    def nbatches(self) -> int:
        return max(1, self.system.nframes // self.batch_size)

    def next_frames(self, rng: np.random.Generator) -> np.ndarray:
        """[batch_size] frame indices of the next batch of the shuffled order."""
        if self.cursor + self.batch_size > len(self.order):
            if self.streamed:
                self.order_seed = int(rng.integers(2**63))
                self.order = self._permutation()
            else:
                self.order = rng.permutation(self.system.nframes)
            self.cursor = 0
            if len(self.order) < self.batch_size:  # fewer frames than a batch: repeat them
                self.order = np.resize(self.order, self.batch_size)
        idx = self.order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return idx

    def _permutation(self) -> np.ndarray:
        """A pass's order: of every frame, or of this process's share (``shard``)."""
        frames = self.system.nframes if self.share is None else self.share
        return np.random.default_rng(self.order_seed).permutation(frames)

    def shard(self, index: int, count: int) -> None:
        """Streamed: draw from (and so read) only process ``index``'s share of the frames, the
        ``index``-th of ``count`` contiguous blocks of nframes // count (the last nframes %
        count frames unused), so every process's position moves in step with the others'."""
        size = self.system.nframes // count
        if size == 0:
            raise DataError(f"{self.system.path}: {self.system.nframes} frames, fewer than the "
                            f"{count} processes that share them")  # fmt: skip
        self.share = np.arange(index * size, (index + 1) * size) if count > 1 else None

    def batch(self, idx: np.ndarray) -> jraph.GraphsTuple:
        """The frames ``idx`` as one batch padded to ``self.shape``."""
        if not self.streamed:
            return pad_graph(batch_graphs([self.graphs[i] for i in idx]), *self.shape)
        batch = batch_graphs(self.to_graphs(self.system.select_frames(idx)))
        self._check_sampled(batch, np.asarray(idx).tolist())
        return pad_graph(batch, *self.shape)

    def _check_sampled(self, batch: jraph.GraphsTuple, frames: list[int]) -> None:
        """A streamed batch within the shape and slots set from the sample (else DataError)."""
        where = f"{self.system.path}: frames {frames}"
        for rcut, slots in self.neighbor_limits:
            if (most := fields.max_neighbors([batch], rcut)) > slots:
                raise DataError(
                    f"{where} have an atom with {most} neighbors within {rcut} A, more than the "
                    f"{slots} slots laid out from a sample of {SHAPE_SAMPLE_FRAMES} frames per "
                    "system; raise graph.dataset.SHAPE_SAMPLE_FRAMES or read the data whole "
                    "(data.dataset.STREAM_FRAMES)"
                )
        if batch.senders.shape[0] > self.shape[1]:
            raise DataError(
                f"{where} have {batch.senders.shape[0]} edges, more than the {self.shape[1]} "
                f"padded for this system from a sample of {SHAPE_SAMPLE_FRAMES} frames; raise "
                "graph.dataset.EDGE_MARGIN"
            )

    def next_batch(self, rng: np.random.Generator) -> jraph.GraphsTuple:
        """The next batch of the shuffled order, padded to ``self.shape``."""
        return self.batch(self.next_frames(rng))

    def all_batches(self) -> list[jraph.GraphsTuple]:
        """Every frame once, in order, in padded batches (the last one may hold fewer)."""
        n, b = self.system.nframes, self.batch_size
        return [self.batch(np.arange(start, min(start + b, n))) for start in range(0, n, b)]

    def position(self) -> tuple:
        """The position in the shuffled order, taken in O(1) (an order is replaced on each
        pass, never changed in place); ``position_state`` makes it JSON-ready."""
        return (None if self.streamed else self.order), self.order_seed, self.cursor

    def state(self) -> dict:
        """The position in the shuffled order (JSON-ready)."""
        return position_state(self.position())

    def restore(self, state: dict) -> None:
        """Inverse of ``state``."""
        self.cursor = int(state["cursor"])
        if "order" in state:
            self.order = np.asarray(state["order"], np.int64)
            return
        self.order_seed = state["order_seed"]
        self.order = np.arange(0) if self.order_seed is None else self._permutation()
        if 0 < len(self.order) < self.batch_size:
            self.order = np.resize(self.order, self.batch_size)


def position_state(position: tuple) -> dict:
    """``SystemBatches.position`` as JSON-ready ``state``: the whole order of a system in
    memory, the pass's seed of a streamed one."""
    order, order_seed, cursor = position
    if order is None:
        return {"order_seed": order_seed, "cursor": cursor}
    return {"order": order.tolist(), "cursor": cursor}


def tighten_nodes(systems: Sequence[SystemBatches]) -> None:
    """Systems sharing a padded shape pad their atoms to the most any of them has plus one (the
    padding graph's), not to the bucket: as many compilations, fewer padding atoms (one
    192-atom frame: 193, not 200; every per-atom array of a step is that much smaller)."""
    groups: dict[tuple, list[SystemBatches]] = {}
    for s in systems:
        groups.setdefault(s.shape, []).append(s)
    for shape, group in groups.items():
        nodes = max(s.batch_size * s.system.natoms + 1 for s in group)
        for s in group:
            s.shape = (nodes, *shape[1:])


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
        def to_graphs(s: System) -> list[jraph.GraphsTuple]:
            fparams, aparams = (None, None) if fitting is None else fitting_parameters(s, fitting)
            return system_to_graphs(s, rcut, sel, dtype, fparams=fparams, aparams=aparams)

        self.systems = [SystemBatches(s, batch_size_of(b, s.natoms), to_graphs)
                        for s, b in zip(systems, specs)]  # fmt: skip
        self.probs = system_probabilities([s.nbatches for s in self.systems], sys_probs)
        tighten_nodes(self.systems)
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

    def limit_neighbors(self, limits: Sequence[tuple[float, int]]) -> None:
        """Streamed systems check each batch against ``limits``: (rcut A, most neighbors of an
        atom within it) per compacted descriptor block (a DataError beyond)."""
        for s in self.systems:
            s.neighbor_limits = tuple(limits) if s.streamed else ()

    def shard(self, index: int, count: int) -> None:
        """Streamed systems: process ``index`` of ``count`` draws from its own share of each
        system's frames (``SystemBatches.shard``); in-memory systems are drawn from whole."""
        for s in self.systems:
            if s.streamed:
                s.shard(index, count)

    @property
    def shapes(self) -> set[tuple[int, int, int]]:
        """The distinct padded batch shapes (n_node, n_edge, n_graph)."""
        return {s.shape for s in self.systems}

    def state(self) -> list[dict]:
        """Where each system is in its shuffled order (JSON-ready), for an exact restart."""
        return [s.state() for s in self.systems]

    def restore(self, state: list[dict]) -> None:
        """Inverse of ``state``."""
        if len(state) != len(self.systems):
            raise ConfigError(
                f"the checkpoint's data position has {len(state)} systems, the config "
                f"{len(self.systems)}: restart with the same training systems"
            )
        for s, st in zip(self.systems, state):
            s.restore(st)

    def sample(self, rng: np.random.Generator) -> tuple[int, jraph.GraphsTuple]:
        """(system index, padded batch) drawn by the system probabilities."""
        k, idx = self.plan(rng)
        return k, self.systems[k].batch(idx)

    def peek(self, rng: np.random.Generator) -> tuple[int, jraph.GraphsTuple]:
        """(system index, padded batch) like ``sample``, its frames drawn at random without
        moving the data position (``state``): safe beside a thread drawing with ``plan``."""
        k = int(rng.choice(len(self.systems), p=self.probs))
        sb = self.systems[k]
        n = sb.system.nframes
        return k, sb.batch(rng.choice(n, sb.batch_size, replace=n < sb.batch_size))

    def plan(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        """What ``sample`` draws, without building the batch: (system index, [batch_size]
        frame indices); ``self.systems[k].batch(idx)`` builds it (in any thread)."""
        k = int(rng.choice(len(self.systems), p=self.probs))
        return k, self.systems[k].next_frames(rng)
