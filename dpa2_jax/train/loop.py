"""``train_and_evaluate(run, workdir)``: a training run from data to a saved model, as a list
of calls.

    read systems -> graphs and batches (data/dataset.py) -> statistics (data/stats.py, cached)
    -> init -> jitted train step (train/step.py) -> lcurve.out, progress bar, checkpoints
    -> WORKDIR/model (a dpa2_jax model directory: dpa2_jax.load(WORKDIR) reads it)
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

from dpa2_jax.data.dataset import Dataset, read_systems
from dpa2_jax.data.stats import apply_statistics, compute_statistics
from dpa2_jax.descriptor import Layout, family_of
from dpa2_jax.errors import CheckpointError, DataError, TrainingError
from dpa2_jax.io.checkpoints import save_model
from dpa2_jax.io.training_checkpoints import TrainCheckpoints
from dpa2_jax.model import init
from dpa2_jax.model.jax_setup import compiler_options, enable_compilation_cache, enable_x64_for
from dpa2_jax.model.layout import compact_layout
from dpa2_jax.train.config import RunConfig
from dpa2_jax.train.lcurve import LCurve
from dpa2_jax.train.optimizer import make_optimizer
from dpa2_jax.train.schedules import make_schedule
from dpa2_jax.train.state import create_state
from dpa2_jax.train.step import make_eval_step, make_train_step

logger = logging.getLogger(__name__)

MODEL_DIR = "model"  # WORKDIR/model: the trained model as a dpa2_jax model directory
BEST_DIR = "best"  # WORKDIR/best: the parameters of the lowest validation rmse displayed


def _check_labels(run: RunConfig, datasets: list[Dataset]) -> None:
    """Frames without a label whose loss prefactor is non-zero: a clear error."""
    loss = run.loss
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


def train_and_evaluate(run: RunConfig, workdir: str, restart: bool = False) -> dict:
    """Trains ``run`` in ``workdir``; returns the final validation (or training) metrics."""
    cfg, tr = run.model, run.training
    enable_x64_for(cfg.descriptor.precision)
    enable_compilation_cache()
    os.makedirs(workdir, exist_ok=True)
    dtype = np.float64 if cfg.descriptor.precision == "float64" else np.float32
    rcut, sel = cfg.descriptor.rcut, cfg.descriptor.sel

    train_systems = read_systems(tr.training_data.systems, cfg.type_map)
    fitting = cfg.fitting(cfg.head_names[0])  # its fparam/aparam go into the graphs
    train = Dataset(train_systems, rcut, sel, tr.training_data.batch_size,
                    tr.training_data.sys_probs, dtype, fitting)  # fmt: skip
    valid = None
    if tr.validation_data is not None:
        valid_systems = read_systems(tr.validation_data.systems, cfg.type_map)
        valid = Dataset(
            valid_systems, rcut, sel, tr.validation_data.batch_size, None, dtype, fitting
        )
    _check_labels(run, [d for d in (train, valid) if d is not None])

    seed = tr.seed if tr.seed is not None else 0
    schedule = make_schedule(run.learning_rate, tr.numb_steps)
    start_lr = float(schedule(0))
    optimizer = make_optimizer(tr.gradient_max_norm)
    params = init(jax.random.key(seed), cfg)
    if not restart:  # a restart restores the statistics with the rest of the state
        stats = compute_statistics(cfg, train_systems, max_frames=run.data_stat_nbatch * max(
            sb.batch_size for sb in train.systems), head=cfg.head_names[0])  # fmt: skip
        params = apply_statistics(params, cfg, stats)
    state = create_state(params, optimizer)
    rng, valid_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    best = {"step": 0, "rmse": math.inf}  # lowest validation rmse seen: WORKDIR/best

    ckpts = TrainCheckpoints(os.path.join(workdir, "checkpoints"), tr.max_ckpt_keep)
    if restart:
        _explain_config_change(ckpts.read_meta().get("config", {}), run.source)
        state, meta = ckpts.restore(state)
        rng.bit_generator.state = meta["rng"]
        train.restore(meta["data"])
        valid_rng.bit_generator.state = meta["valid_rng"]
        best = meta.get("best", best)
        if valid is not None:
            valid.restore(meta["valid_data"])
        logger.info("restarted from step %d", int(state.step))
    elif ckpts.latest_step() is not None:
        raise CheckpointError(
            f"{workdir}: holds checkpoints of an earlier run; pass --restart to continue it or "
            "choose another --workdir"
        )

    head = cfg.head_names[0]
    layout = training_layout(cfg, state.params, [d for d in (train, valid) if d is not None])
    logger.info("neighbor slots laid out per compactable block: %s", layout.slots)
    step_fn = jax.jit(make_train_step(cfg, head, run.loss, optimizer, schedule, start_lr, layout),
                      donate_argnums=0, compiler_options=compiler_options())  # fmt: skip
    eval_fn = jax.jit(make_eval_step(cfg, head, run.loss, start_lr, layout),
                      compiler_options=compiler_options())  # fmt: skip

    def validate(lr, every_frame: bool = False) -> dict | None:
        """Validation metrics: ``numb_btch`` sampled batches (DeePMD's display), or all frames."""
        if valid is None:
            return None
        if every_frame:
            batches = [b for sb in valid.systems for b in sb.all_batches()]
        else:
            batches = [valid.sample(valid_rng)[1] for _ in range(tr.validation_data.numb_btch)]
        out = _mean_metrics([eval_fn(state.params, b, lr) for b in batches])
        out.pop("loss", None)
        return out

    first = int(state.step)
    lcurve = LCurve(os.path.join(workdir, tr.disp_file), append=restart and first > 0,
                    resume_step=first)  # fmt: skip
    progress = tqdm(total=tr.numb_steps, initial=first, desc="training", unit="step",
                    dynamic_ncols=True)  # fmt: skip
    since_display: list[str] = []
    train_metrics: list[dict] = []
    t0, last_valid, in_flight = time.perf_counter(), None, None
    try:
        for step in range(first, tr.numb_steps):
            k, batch = train.sample(rng)
            since_display.append(train.systems[k].system.path)
            state, metrics = step_fn(state, batch)
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
                last_valid = validate(lr)
                if last_valid is not None and last_valid["rmse"] < best["rmse"]:
                    best = {"step": step + 1, "rmse": last_valid["rmse"]}
                    save_model(os.path.join(workdir, BEST_DIR), cfg,
                               jax.tree.map(np.asarray, state.params), metadata=best,
                               overwrite=True)  # fmt: skip
                lcurve.write(step + 1, m, last_valid, lr)
                shown = last_valid or m
                progress.set_postfix(
                    {k2: f"{v:.3g}" for k2, v in shown.items()} | {"lr": f"{lr:.1e}"}
                )
                train_metrics.append(m)
                since_display = []
            progress.update(1)
            if (step + 1) % tr.save_freq == 0 or step + 1 == tr.numb_steps:
                ckpts.save(step + 1, state, {**_meta(run, rng, train, valid_rng, valid),
                                             "best": best})  # fmt: skip
    finally:
        progress.close()
        lcurve.close()
        ckpts.close()
    seconds = time.perf_counter() - t0
    save_model(os.path.join(workdir, MODEL_DIR), cfg, jax.tree.map(np.asarray, state.params),
               metadata={"trained_steps": int(state.step)}, overwrite=True)  # fmt: skip
    final = validate(float(schedule(state.step)), every_frame=True)
    final = final or (train_metrics[-1] if train_metrics else {})
    return {"steps": int(state.step), "seconds": seconds, **final}


def _meta(run: RunConfig, rng, train: Dataset, valid_rng, valid: Dataset | None) -> dict:
    """What a restart needs beside the state: the config, host RNGs and data positions."""
    return {
        "config": json.loads(json.dumps(run.source)),
        "rng": rng.bit_generator.state,
        "data": train.state(),
        "valid_rng": valid_rng.bit_generator.state,
        "valid_data": valid.state() if valid is not None else [],
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
