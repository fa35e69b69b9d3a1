"""``train_and_evaluate(run, workdir)``: a training run from data to a saved model, as a list
of calls.

    read each task's systems -> graphs and batches (data/dataset.py) -> statistics
    (model/statistics.py) or a pretrained model (train/finetune.py) -> jitted train step per task
    (train/step.py) -> lcurve.out, progress bar, checkpoints
    -> WORKDIR/model (a dpa2_jax model directory: dpa2_jax.load(WORKDIR) reads it)

With several devices (GPUs, TPU cores, forced CPU devices, or several processes started by
``--distributed``) the step is data parallel (``train/parallel.py``): each device takes its own
batch of the configured size from the same system, so the global batch is devices x batch_size;
process 0 alone writes lcurve.out, the progress bar and the model.

Multi-task runs draw a task per step with the tasks' probabilities (from the same seeded host
generator as the data), then a batch of that task's data; the step updates the task's head and
the shared descriptor. Each task's batches are padded to one shape, so there is one compiled
training step per task (and one evaluation step); compilations are logged as they happen.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from dpa2_jax.data.dataset import read_systems
from dpa2_jax.graph.dataset import Dataset
from dpa2_jax.model.statistics import apply_statistics, task_statistics
from dpa2_jax.descriptor import Layout, family_of
from dpa2_jax.errors import CheckpointError, ConfigError, DataError, TrainingError
from dpa2_jax.io.checkpoints import save_model
from dpa2_jax.io.training_checkpoints import TrainCheckpoints
from dpa2_jax.model import init
from dpa2_jax.model.jax_setup import compiler_options, enable_compilation_cache, enable_x64_for
from dpa2_jax.model.layout import compact_layout
from dpa2_jax.train.config import RunConfig
from dpa2_jax.train.lcurve import LCurve
from dpa2_jax.train import parallel
from dpa2_jax.train.optimizer import make_optimizer
from dpa2_jax.train.schedules import make_schedule
from dpa2_jax.train.state import create_state
from dpa2_jax.train.step import make_eval_step, make_train_step

logger = logging.getLogger(__name__)

MODEL_DIR = "model"  # WORKDIR/model: the trained model as a dpa2_jax model directory
BEST_DIR = "best"  # WORKDIR/best: the parameters of the lowest validation rmse displayed


def _check_labels(loss, datasets: list[Dataset]) -> None:
    """Frames without a label whose loss prefactor is non-zero: a clear error."""
    needs = {
        "energies": max(loss.start_pref_e, loss.limit_pref_e) > 0,
        "forces": max(loss.start_pref_f, loss.limit_pref_f) > 0,
    }
    for data in datasets:
        for sb in data.systems:
            missing = [k for k, need in needs.items() if need and getattr(sb.system, k) is None]
            if missing:
                raise DataError(
                    f"{sb.system.path}: no {', '.join(missing)} labels, but the loss weights them "
                    "(set their start_pref_*/limit_pref_* to 0, or remove the system)"
                )


def training_layout(cfg, params, datasets: list[Dataset]) -> Layout:
    """The descriptor layout for every frame of the data: blocks that give the same numbers
    with fewer slots (their statistics stay fixed during training) lay out only as many as the
    most neighbors any atom has (``model/layout.py``); one layout, so one compilation."""
    blocks = family_of(cfg.descriptor).compactable_blocks(params["descriptor"], cfg.descriptor)
    graphs = [g for data in datasets for sb in data.systems for g in sb.graphs]
    return compact_layout(blocks, graphs)


def _mean_metrics(items: list[dict]) -> dict[str, float]:
    """Averages RMSE-like metrics over batches as DeePMD does (mean of per-batch values)."""
    keys = items[0].keys()
    return {k: float(np.mean([float(m[k]) for m in items])) for k in keys}


class TaskData:
    """One task's training and validation data, read in the model's type map."""

    def __init__(self, run: RunConfig, task, one_shape: bool):
        cfg = run.model
        dtype = np.float64 if cfg.descriptor.precision == "float64" else np.float32
        rcut, sel, fitting = cfg.descriptor.rcut, cfg.descriptor.sel, cfg.fitting(task.name)
        self.task = task
        self.train_systems = read_systems(task.training_data.systems, cfg.type_map)
        self.train = Dataset(self.train_systems, rcut, sel, task.training_data.batch_size,
                             task.training_data.sys_probs, dtype, fitting, one_shape)  # fmt: skip
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


def initial_params(run: RunConfig, data: dict[str, TaskData], seed: int, finetune=None):
    """Parameters at step 0: initialised and with statistics from the data (descriptor moments
    of every task's frames pooled, as DeePMD-kit merges shared descriptors; energy bias and
    fitting-input statistics per head), or prepared from a pretrained model (``finetune``)."""
    cfg = run.model
    if finetune is not None:
        from dpa2_jax.train.finetune import finetune_params

        [task] = run.tasks
        return finetune_params(cfg, finetune, data[task.name].train_systems,
                               data[task.name].stat_frames(run), seed)  # fmt: skip
    params = init(jax.random.key(seed), cfg)
    stats = task_statistics(
        cfg, {name: (d.train_systems, d.stat_frames(run)) for name, d in data.items()}
    )
    for name, head_stats in stats["heads"].items():
        params = apply_statistics(params, cfg, {"descriptor": stats["descriptor"], **head_stats},
                                  head=name)  # fmt: skip
    return params


def train_and_evaluate(run: RunConfig, workdir: str, restart: bool = False, finetune=None) -> dict:
    """Trains ``run`` in ``workdir``; returns the final validation (or training) metrics, with
    a ``_NAME`` suffix per task for a multi-task run. ``finetune``: a ``train.finetune.Finetune``
    (the pretrained model and the head to start from)."""
    cfg, tr = run.model, run.training
    enable_x64_for(cfg.descriptor.precision)
    enable_compilation_cache()
    os.makedirs(workdir, exist_ok=True)
    if finetune is not None and run.multi_task:
        raise ConfigError("--finetune: fine-tuning into a multi-task model is not supported; "
                          "fine-tune one task (a single-task input)")  # fmt: skip
    data = {t.name: TaskData(run, t, one_shape=run.multi_task) for t in run.tasks}
    names = [t.name for t in run.tasks]
    probs = np.array([t.prob for t in run.tasks])

    seed = tr.seed if tr.seed is not None else 0
    schedule = make_schedule(run.learning_rate, tr.numb_steps)
    start_lr = float(schedule(0))
    optimizer = make_optimizer(tr.gradient_max_norm, tr.freeze_descriptor, tr.descriptor_lr_scale)
    if restart:  # the statistics come back with the rest of the state
        params = init(jax.random.key(seed), cfg)
    else:
        params = initial_params(run, data, seed, finetune)
    mesh = parallel.make_mesh()
    n_device, chief = mesh.devices.size, jax.process_index() == 0
    state = create_state(params, optimizer)
    if n_device > 1:
        state = parallel.replicate(mesh, state)
    logger.info(
        "training on %d device(s) (%s) in %d process(es); global batch = %d x the per-device "
        "batch_size", n_device, jax.devices()[0].platform, jax.process_count(), n_device,
    )  # fmt: skip
    rng, valid_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    best = {"step": 0, "rmse": math.inf}  # lowest validation rmse seen: WORKDIR/best

    ckpts = TrainCheckpoints(os.path.join(workdir, "checkpoints"), tr.max_ckpt_keep)
    if restart:
        _explain_config_change(ckpts.read_meta().get("config", {}), run.source)
        state, meta = ckpts.restore(state)
        rng.bit_generator.state = meta["rng"]
        valid_rng.bit_generator.state = meta["valid_rng"]
        best = meta.get("best", best)
        for name, d in data.items():
            d.train.restore(meta["data"][name])
            if d.valid is not None:
                d.valid.restore(meta["valid_data"][name])
        logger.info("restarted from step %d", int(state.step))
    elif ckpts.latest_step() is not None:
        raise CheckpointError(
            f"{workdir}: holds checkpoints of an earlier run; pass --restart to continue it or "
            "choose another --workdir"
        )

    layout = training_layout(cfg, state.params, [x for d in data.values() for x in d.datasets])
    logger.info("neighbor slots laid out per compactable block: %s", layout.slots)
    step_fns, eval_fns, compiled = {}, {}, set()
    for t in run.tasks:
        if n_device > 1:
            step_fns[t.name] = parallel.make_parallel_train_step(
                mesh, cfg, t.name, t.loss, optimizer, schedule, start_lr, layout,
                compiler_options(),
            )  # fmt: skip
        else:
            step_fns[t.name] = jax.jit(
                make_train_step(cfg, t.name, t.loss, optimizer, schedule, start_lr, layout),
                donate_argnums=0, compiler_options=compiler_options(),
            )  # fmt: skip
        eval_fns[t.name] = jax.jit(make_eval_step(cfg, t.name, t.loss, start_lr, layout),
                                   compiler_options=compiler_options())  # fmt: skip

    def count_compilation(kind: str, name: str, batch) -> None:
        key = (kind, name, batch.nodes["species"].shape[-1], batch.senders.shape[-1],
               batch.n_node.shape[-1])  # fmt: skip
        if key not in compiled:
            compiled.add(key)
            logger.info("compiling the %s step of task %r for batches of %d atoms, %d edges, "
                        "%d graphs (%d compilations so far)", kind, name, *key[2:],
                        len(compiled))  # fmt: skip

    def validate(name: str, lr, every_frame: bool = False) -> dict | None:
        """Validation metrics: ``numb_btch`` sampled batches (DeePMD's display), or all frames."""
        valid = data[name].valid
        if valid is None:
            return None
        if every_frame:
            batches = [b for sb in valid.systems for b in sb.all_batches()]
        else:
            nb = data[name].task.validation_data.numb_btch
            batches = [valid.sample(valid_rng)[1] for _ in range(nb)]
        for b in batches:
            count_compilation("evaluation", name, b)
        params = parallel.unreplicate(state.params) if n_device > 1 else state.params
        out = _mean_metrics([eval_fns[name](params, b, lr) for b in batches])
        out.pop("loss", None)
        return out

    first = int(state.step)
    lcurve = LCurve(os.path.join(workdir, tr.disp_file) if chief else os.devnull,
                    append=restart and first > 0, resume_step=first,
                    tasks=names if run.multi_task else None)  # fmt: skip
    progress = tqdm(total=tr.numb_steps, initial=first, desc="training", unit="step",
                    dynamic_ncols=True, disable=not chief)  # fmt: skip
    since_display: list[str] = []
    train_metrics: list[dict] = []
    t0, in_flight = time.perf_counter(), None
    try:
        for step in range(first, tr.numb_steps):
            name = names[int(rng.choice(len(names), p=probs))] if run.multi_task else names[0]
            train = data[name].train
            if n_device > 1:
                k, local = parallel.sample_device_batches(train, rng, mesh)
                batch = parallel.shard_batch(mesh, local)
            else:
                k, batch = train.sample(rng)
            since_display.append(f"{name}:{train.systems[k].system.path}")
            count_compilation("training", name, batch)
            state, metrics = step_fns[name](state, batch)
            if in_flight is not None:  # one step queued at most: the progress bar tells the truth
                in_flight.block_until_ready()
            in_flight = metrics["loss"]
            display = (step + 1) % tr.disp_freq == 0 or step == first or step + 1 == tr.numb_steps
            if display:
                m = {key: float(v) for key, v in metrics.items()}
                if not math.isfinite(m["loss"]):
                    raise TrainingError(
                        f"step {step + 1}: the loss is {m['loss']} (batches since the last "
                        f"display came from {sorted(set(since_display))}); the last good "
                        f"checkpoint (step {ckpts.latest_step()}) is kept in {ckpts.directory}"
                    )
                lr = m.pop("lr")
                m.pop("loss")
                rows = {}
                for other in names:  # DeePMD shows every task: others on a fresh training batch
                    if other == name:
                        trn = m
                    else:
                        other_batch = data[other].train.sample(rng)[1]
                        count_compilation("evaluation", other, other_batch)
                        params = (parallel.unreplicate(state.params) if n_device > 1
                                  else state.params)  # fmt: skip
                        trn = {key: float(v) for key, v in
                               eval_fns[other](params, other_batch, lr).items()}  # fmt: skip
                        trn.pop("loss")
                    rows[other] = (trn, validate(other, lr))
                valids = [v for _, v in rows.values() if v is not None]
                if valids:
                    rmse = float(np.mean([v["rmse"] for v in valids]))
                    if rmse < best["rmse"]:
                        best = {"step": step + 1, "rmse": rmse}
                        if chief:
                            save_model(os.path.join(workdir, BEST_DIR), cfg,
                                       jax.tree.map(np.asarray, state.params), metadata=best,
                                       overwrite=True)  # fmt: skip
                if run.multi_task:
                    lcurve.write_tasks(step + 1, rows, lr)
                    shown = {f"{n} f": (v or t)["rmse_f"] for n, (t, v) in rows.items()
                             if "rmse_f" in (v or t)}  # fmt: skip
                else:
                    lcurve.write(step + 1, *rows[name], lr)
                    shown = rows[name][1] or m
                progress.set_postfix(
                    {k2: f"{v:.3g}" for k2, v in shown.items()} | {"lr": f"{lr:.1e}"}
                )
                train_metrics.append({f"{key}_{n}" if run.multi_task else key: v
                                      for n, (t, _) in rows.items() for key, v in t.items()})  # fmt: skip
                since_display = []
            progress.update(1)
            if (step + 1) % tr.save_freq == 0 or step + 1 == tr.numb_steps:
                ckpts.save(step + 1, state, {**_meta(run, rng, data, valid_rng), "best": best})
    finally:
        progress.close()
        lcurve.close()
        ckpts.close()
    seconds = time.perf_counter() - t0
    logger.info("%d compilations for %d tasks: %s", len(compiled), len(names),
                sorted(compiled))  # fmt: skip
    if chief:
        save_model(os.path.join(workdir, MODEL_DIR), cfg,
                   jax.tree.map(np.asarray, state.params),
                   metadata={"trained_steps": int(state.step), "devices": n_device},
                   overwrite=True)  # fmt: skip
    lr = float(schedule(state.step))
    final = {}
    for name in names:
        v = validate(name, lr, every_frame=True)
        if v is not None:
            final.update({f"{k}_{name}" if run.multi_task else k: x for k, x in v.items()})
    final = final or (train_metrics[-1] if train_metrics else {})
    return {"steps": int(state.step), "seconds": seconds, "compilations": len(compiled),
            "devices": n_device, **final}  # fmt: skip


def _meta(run: RunConfig, rng, data: dict[str, TaskData], valid_rng) -> dict:
    """What a restart needs beside the state: the config, host RNGs and data positions."""
    return {
        "config": json.loads(json.dumps(run.source)),
        "rng": rng.bit_generator.state,
        "data": {name: d.train.state() for name, d in data.items()},
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
