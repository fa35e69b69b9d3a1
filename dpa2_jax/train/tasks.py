"""A run's tasks: each task's data (``TaskData``) and its jitted steps (``TaskSteps``).

Each task's batches are padded to one shape in a multi-task run, so there is one compiled
training step per task (and one evaluation step); ``TaskSteps`` logs compilations as they
happen. A task is drawn per step with the tasks' probabilities (``draw_task``) from the same
seeded host generator as the data.
"""

from __future__ import annotations

import logging

import jax
import numpy as np

from dpa2_jax.data.dataset import open_systems, read_systems
from dpa2_jax.descriptor import Layout, family_of
from dpa2_jax.errors import DataError
from dpa2_jax.graph import fields
from dpa2_jax.graph.dataset import Dataset
from dpa2_jax.model.jax_setup import compiler_options
from dpa2_jax.model.layout import compact_layout
from dpa2_jax.train.config import RunConfig
from dpa2_jax.train.optimizer import Optimizer
from dpa2_jax.train.parallel import Devices
from dpa2_jax.train.schedules import ExpDecay
from dpa2_jax.train.step import make_eval_step

logger = logging.getLogger(__name__)


def _check_labels(loss, datasets: list[Dataset]) -> None:
    """Frames without a label whose loss prefactor is non-zero: a clear error."""
    needs = {
        "energies": max(loss.start_pref_e, loss.limit_pref_e) > 0,
        "forces": max(loss.start_pref_f, loss.limit_pref_f) > 0,
    }
    for data in datasets:
        for sb in data.systems:
            missing = [k for k, need in needs.items() if need and not sb.system.has(k)]
            if missing:
                raise DataError(
                    f"{sb.system.path}: no {', '.join(missing)} labels, but the loss weights them "
                    "(set their start_pref_*/limit_pref_* to 0, or remove the system)"
                )


class TaskData:
    """One task's training and validation data, read in the model's type map."""

    def __init__(self, run: RunConfig, task, one_shape: bool):
        cfg = run.model
        dtype = np.float64 if cfg.descriptor.precision == "float64" else np.float32
        rcut, sel, fitting = cfg.descriptor.rcut, cfg.descriptor.sel, cfg.fitting(task.name)
        self.task = task
        self.train_systems = open_systems(task.training_data.systems, cfg.type_map)
        self.train = Dataset(self.train_systems, rcut, sel, task.training_data.batch_size,
                             task.training_data.sys_probs, dtype, fitting, one_shape)  # fmt: skip
        self.train.shard(jax.process_index(), jax.process_count())  # streamed: frames per host
        self.valid = None
        if task.validation_data is not None:
            systems = read_systems(task.validation_data.systems, cfg.type_map)
            self.valid = Dataset(systems, rcut, sel, task.validation_data.batch_size, None,
                                 dtype, fitting, one_shape)  # fmt: skip
        _check_labels(task.loss, [d for d in (self.train, self.valid) if d is not None])
        if one_shape and self.valid is not None:  # one compiled evaluation step too
            common = np.max([*self.train.shapes, *self.valid.shapes], axis=0)
            self.train.pad_to(common)
            self.valid.pad_to(common)

    @property
    def datasets(self) -> list[Dataset]:
        return [d for d in (self.train, self.valid) if d is not None]

    def stat_frames(self, run: RunConfig) -> int:
        return run.data_stat_nbatch * max(sb.batch_size for sb in self.train.systems)


def read_task_data(run: RunConfig) -> dict[str, TaskData]:
    """Every task's data by task name (one padded shape per task in a multi-task run)."""
    return {t.name: TaskData(run, t, one_shape=run.multi_task) for t in run.tasks}


def draw_task(run: RunConfig, rng: np.random.Generator) -> str:
    """This step's task: drawn with the tasks' probabilities (multi-task), else the one task."""
    if not run.multi_task:
        return run.tasks[0].name
    return run.tasks[int(rng.choice(len(run.tasks), p=[t.prob for t in run.tasks]))].name


def training_layout(cfg, params, datasets: list[Dataset]) -> Layout:
    """The descriptor layout for every frame of the data: blocks that give the same numbers
    with fewer slots (their statistics stay fixed during training) lay out only as many as the
    most neighbors any atom has (``model/layout.py``): one layout, so one compilation, and
    every slot less is work less in every step. Exactly as many over data in memory; a
    streamed system's frames are known from a sample only (``SystemBatches``), so the slots
    are rounded up to a multiple of 8 and its batches are checked against them as they are
    built."""
    blocks = family_of(cfg.descriptor).compactable_blocks(params["descriptor"], cfg.descriptor)
    systems = [sb for data in datasets for sb in data.systems]
    graphs = [g for sb in systems for g in sb.sample_graphs]
    streamed = any(sb.streamed for sb in systems)
    layout = compact_layout(blocks, graphs, multiple=8 if streamed else 1)
    limits = [(b.rcut, n) for b, n in zip(blocks, layout.slots) if b.exact and n < b.sel]
    for data in datasets:
        data.limit_neighbors(limits)
    return layout


class TaskSteps:
    """Per task: the jitted training step (on every device, ``Devices.train_step``) and the
    jitted evaluation (one device, host parameters); ``compiled`` holds a key per compilation."""

    def __init__(self, run: RunConfig, optimizer: Optimizer, schedule: ExpDecay, layout: Layout,
                 devices: Devices):  # fmt: skip
        cfg, options = run.model, compiler_options()
        self.devices, self.compiled = devices, set()
        self._train = {t.name: devices.train_step(cfg, t.name, t.loss, optimizer, schedule, layout,
                                                  compiler_options=options)  # fmt: skip
                       for t in run.tasks}  # fmt: skip
        self._eval = {t.name: jax.jit(make_eval_step(cfg, t.name, t.loss, schedule.start_lr,
                                                     layout), compiler_options=options)  # fmt: skip
                      for t in run.tasks}  # fmt: skip

    def train(self, name: str, state, batch):
        """``(state, metrics)`` after one optimizer step of task ``name`` on ``batch``."""
        self._count("training", name, batch)
        return self._train[name](state, batch)

    def evaluate(self, name: str, params, batches: list, lr) -> dict[str, float]:
        """Task ``name``'s metrics (no ``loss``) averaged over ``batches`` as DeePMD does (mean
        of per-batch values); ``params`` from ``Devices.host``."""
        for b in batches:
            self._count("evaluation", name, b)
        items = [self._eval[name](params, b, lr) for b in batches]
        out = {k: float(np.mean([float(m[k]) for m in items])) for k in items[0]}
        out.pop("loss", None)
        return out

    def _count(self, kind: str, name: str, batch) -> None:
        key = (kind, name, fields.species(batch).shape[-1], batch.senders.shape[-1],
               batch.n_node.shape[-1])  # fmt: skip
        if key not in self.compiled:
            self.compiled.add(key)
            logger.info("compiling the %s step of task %r for batches of %d atoms, %d edges, "
                        "%d graphs (%d compilations so far)", kind, name, *key[2:],
                        len(self.compiled))  # fmt: skip
