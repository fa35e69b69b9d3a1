"""``train_and_evaluate(run, workdir)``: a training run from data to a saved model, as a list
of calls.

    read each task's systems -> graphs and batches (train/tasks.py) -> statistics
    (model/statistics.py) or a pretrained model (train/finetune.py) or a checkpoint (--restart)
    -> jitted train step per task (train/tasks.py, train/step.py, train/parallel.py), fed by
       batches prepared one step ahead (train/pipeline.py; large data streamed from disk)
    -> lcurve.out, progress bar, best model (train/report.py), checkpoints
    -> WORKDIR/model (a dpa2_jax model directory: dpa2_jax.load(WORKDIR) reads it)

With several devices (GPUs, TPU cores, forced CPU devices, or several processes started by
``--distributed``) the step is data parallel (``train/parallel.py``): each device takes its own
batch of the configured size from the same system, so the global batch is devices x batch_size;
process 0 alone writes lcurve.out, the progress bar and the model.

Multi-task runs draw a task per step with the tasks' probabilities (from the same seeded host
generator as the data), then a batch of that task's data; the step updates the task's head and
the shared descriptor (``train/tasks.py``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

import jax
import numpy as np

from dpa2_jax.errors import CheckpointError, ConfigError, Interrupted
from dpa2_jax.io.checkpoints import save_model
from dpa2_jax.io.training_checkpoints import TrainCheckpoints
from dpa2_jax.model import init
from dpa2_jax.model.jax_setup import enable_compilation_cache, enable_x64_for
from dpa2_jax.model.statistics import apply_statistics, task_statistics
from dpa2_jax.train import parallel
from dpa2_jax.train.config import RunConfig
from dpa2_jax.train.finetune import finetune_params
from dpa2_jax.train.interrupt import StopRequests
from dpa2_jax.train.optimizer import make_optimizer
from dpa2_jax.train.report import BEST_DIR, Report
from dpa2_jax.train.schedules import make_schedule
from dpa2_jax.train.state import create_state
from dpa2_jax.train.pipeline import BatchStream
from dpa2_jax.train.tasks import TaskData, TaskSteps, read_task_data, training_layout

__all__ = ["BEST_DIR", "MODEL_DIR", "initial_params", "train_and_evaluate", "training_layout"]

logger = logging.getLogger(__name__)

MODEL_DIR = "model"  # WORKDIR/model: the trained model as a dpa2_jax model directory


def train_and_evaluate(run: RunConfig, workdir: str, restart: bool = False, finetune=None) -> dict:
    """Trains ``run`` in ``workdir``; returns the final validation (or training) metrics, with
    a ``_NAME`` suffix per task for a multi-task run. ``finetune``: a ``train.finetune.Finetune``
    (the pretrained model and the head to start from)."""
    with StopRequests() as stop:
        return _train(run, workdir, restart, finetune, stop)


def _train(run: RunConfig, workdir: str, restart: bool, finetune, stop: StopRequests) -> dict:
    """``train_and_evaluate`` with ``stop`` watching for SIGINT and SIGTERM."""
    tr = run.training
    _prepare(run, workdir, restart, finetune)
    data = read_task_data(run)
    seed = tr.seed if tr.seed is not None else 0
    schedule = make_schedule(run.learning_rate, tr.numb_steps)
    optimizer = make_optimizer(tr.gradient_max_norm, tr.freeze_descriptor, tr.descriptor_lr_scale)
    params = init(jax.random.key(seed), run.model) if restart else initial_params(
        run, data, seed, finetune)  # the statistics come back with the state on restart
    devices = parallel.Devices(parallel.make_mesh())
    state = devices.place(create_state(params, optimizer))
    _log_devices(devices)
    rng, valid_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    ckpts = TrainCheckpoints(os.path.join(workdir, "checkpoints"), tr.max_ckpt_keep)
    state, best = _resume(run, workdir, ckpts, state, data, rng, valid_rng, restart)
    layout = training_layout(run.model, state.params,
                             [x for d in data.values() for x in d.datasets])  # fmt: skip
    logger.info("neighbor slots laid out per compactable block: %s", layout.slots)
    steps = TaskSteps(run, optimizer, schedule, layout, devices)
    report = Report(run, workdir, data, steps, int(state.step), best, valid_rng,
                    chief=jax.process_index() == 0)  # fmt: skip
    t0, first = time.perf_counter(), int(state.step)
    batches = BatchStream(run, data, devices, rng, first, tr.numb_steps)
    try:
        for step in range(first, tr.numb_steps):
            name, k, batch = batches.next()
            state, metrics = steps.train(name, state, batch)
            report.step_done(step, name, data[name].train.systems[k].system.path, state, metrics,
                             ckpts)  # fmt: skip
            if (step + 1) % tr.save_freq == 0 or step + 1 == tr.numb_steps or stop.signum:
                meta = {**_meta(run, batches.position(), data, valid_rng), "best": report.best}
                ckpts.save(step + 1, state, meta)
            if stop.signum:
                raise Interrupted(f"stopped by {stop.name} after step {step + 1}; its "
                                  f"checkpoint is in {ckpts.directory}", stop.signum)  # fmt: skip
    finally:
        batches.close()
        report.close()
        ckpts.close()
    seconds = time.perf_counter() - t0
    if first < tr.numb_steps:
        logger.info("%d compilations for %d tasks: %s", len(steps.compiled), len(data),
                    sorted(steps.compiled))  # fmt: skip
    _save_trained(run, workdir, state, devices.count, chief=jax.process_index() == 0)
    final = report.final(state, float(schedule(state.step)))
    return {"steps": int(state.step), "first_step": first, "seconds": seconds,
            "compilations": len(steps.compiled), "devices": devices.count, **final}  # fmt: skip


def _prepare(run: RunConfig, workdir: str, restart: bool, finetune) -> None:
    """JAX's precision and compilation cache for ``run``, and clear errors for a workdir that
    is a file and a fine-tuning it cannot do. The workdir itself is made once the data and
    the parameters are ready (``TrainCheckpoints``), so a run that fails its checks leaves
    nothing behind."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir}: is a file, not a folder")
    if restart and not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise CheckpointError(f"--restart: {workdir} holds no checkpoints to continue from")
    enable_x64_for(run.model.descriptor.precision)
    enable_compilation_cache()
    if finetune is not None and run.multi_task:
        raise ConfigError("--finetune: fine-tuning into a multi-task model is not supported; "
                          "fine-tune one task (a single-task input)")  # fmt: skip


def initial_params(run: RunConfig, data: dict[str, TaskData], seed: int, finetune=None):
    """Parameters at step 0: initialised and with statistics from the data (descriptor moments
    of every task's frames pooled, as DeePMD-kit merges shared descriptors; energy bias and
    fitting-input statistics per head), or prepared from a pretrained model (``finetune``)."""
    cfg = run.model
    if finetune is not None:
        [task] = run.tasks
        return finetune_params(cfg, finetune, data[task.name].train_systems,
                               data[task.name].stat_frames(run), seed,
                               run.bias_prior)  # fmt: skip
    params = init(jax.random.key(seed), cfg)
    stats = task_statistics(
        cfg,
        {name: (d.train_systems, d.stat_frames(run)) for name, d in data.items()},
        bias_prior=run.bias_prior,
    )
    for name, head_stats in stats["heads"].items():
        params = apply_statistics(params, cfg, {"descriptor": stats["descriptor"], **head_stats},
                                  head=name)  # fmt: skip
    return params


def _log_devices(devices: parallel.Devices) -> None:
    logger.info(
        "training on %d device(s) (%s) in %d process(es); global batch = %d x the per-device "
        "batch_size", devices.count, jax.devices()[0].platform, jax.process_count(), devices.count,
    )  # fmt: skip


def _resume(run: RunConfig, workdir: str, ckpts: TrainCheckpoints, state, data, rng, valid_rng,
            restart: bool):  # fmt: skip
    """``(state, best)``: on ``restart`` the latest checkpoint's state, with the host generators
    and data positions set back in place; else ``state`` as given, refusing a workdir that
    holds an earlier run's checkpoints."""
    best = {"step": 0, "rmse": math.inf}  # lowest validation rmse seen: WORKDIR/best
    if not restart:
        if ckpts.latest_step() is not None:
            raise CheckpointError(
                f"{workdir}: holds checkpoints of an earlier run; pass --restart to continue it "
                "or choose another --workdir"
            )
        return state, best
    _explain_config_change(ckpts.read_meta().get("config", {}), run.source)
    state, meta = ckpts.restore(state)
    rng.bit_generator.state = meta["rng"]
    valid_rng.bit_generator.state = meta["valid_rng"]
    for name, d in data.items():
        d.train.restore(meta["data"][name])
        if d.valid is not None:
            d.valid.restore(meta["valid_data"][name])
    logger.info("restarted from step %d", int(state.step))
    return state, meta.get("best", best)


def _save_trained(run: RunConfig, workdir: str, state, n_device: int, chief: bool) -> None:
    """WORKDIR/model: the trained parameters (process 0 only)."""
    if chief:
        save_model(os.path.join(workdir, MODEL_DIR), run.model,
                   jax.tree.map(np.asarray, state.params),
                   metadata={"trained_steps": int(state.step), "devices": n_device},
                   overwrite=True)  # fmt: skip


def _meta(run: RunConfig, position: dict, data: dict[str, TaskData], valid_rng) -> dict:
    """What a restart needs beside the state: the config, host RNGs and data positions
    (``position``: the training stream's, ``BatchStream.position``)."""
    return {
        "config": json.loads(json.dumps(run.source)),
        "rng": position["rng"],
        "data": position["data"],
        "valid_rng": valid_rng.bit_generator.state,
        "valid_data": {name: d.valid.state() for name, d in data.items() if d.valid is not None},
    }


def _explain_config_change(saved: dict, current: dict) -> None:
    """Raises CheckpointError naming the first field of the model, learning-rate or loss
    sections that differs from the checkpoint's (training options may change on restart)."""
    current = json.loads(json.dumps(current))
    for section in ("model", "learning_rate", "loss"):
        a, b = saved.get(section), current.get(section)
        if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            raise CheckpointError(f"--restart: the config's {section!r} section differs from the "
                      f"checkpoint's ({_first_difference(a, b, section)})")  # fmt: skip


def _first_difference(a, b, path: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if json.dumps(a.get(key), sort_keys=True) != json.dumps(b.get(key), sort_keys=True):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}")
    return f"{path}: {a!r} in the checkpoint, {b!r} now"
