"""What a run shows and keeps while it trains: every ``disp_freq`` steps a row of lcurve.out
(every task's training and validation metrics, as DeePMD-kit displays them), the progress bar,
and WORKDIR/best (the parameters of the lowest mean validation rmse displayed); at the end the
validation metrics on every frame. Only process 0 (``chief``) writes files and the bar."""

from __future__ import annotations

import math
import os
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from dpa2_jax.errors import TrainingError
from dpa2_jax.io.checkpoints import save_model
from dpa2_jax.train.config import RunConfig
from dpa2_jax.train.lcurve import LCurve
from dpa2_jax.train.tasks import TaskData, TaskSteps

BEST_DIR = "best"  # WORKDIR/best: the parameters of the lowest validation rmse displayed


class Report:
    """Display rows, validation and the best model of one run, from step ``first`` on.

    Args:
        run, workdir: the run and its folder.
        data, steps: each task's data and steps (``train/tasks.py``).
        first: the step the run starts (or restarts) from.
        best: ``{"step", "rmse"}`` of the best model so far (from the checkpoint on restart).
        valid_rng: the host generator of validation batches.
        chief: whether this process writes files.
    """

    def __init__(self, run: RunConfig, workdir: str, data: dict[str, TaskData],
                 steps: TaskSteps, first: int, best: dict, valid_rng, chief: bool):  # fmt: skip
        tr = run.training
        self.run, self.workdir, self.data, self.steps = run, workdir, data, steps
        self.best, self.valid_rng, self.chief, self.first = best, valid_rng, chief, first
        names = [t.name for t in run.tasks]
        self.lcurve = LCurve(os.path.join(workdir, tr.disp_file) if chief else os.devnull,
                             append=first > 0, resume_step=first,
                             tasks=names if run.multi_task else None)  # fmt: skip
        self.progress = tqdm(total=tr.numb_steps, initial=first, desc="training", unit="step",
                             dynamic_ncols=True, disable=not chief, smoothing=0)  # fmt: skip
        self.since_display: list[str] = []  # "task:system" of each batch since the last row
        self.train_metrics: list[dict] = []  # the training metrics of each row
        self._in_flight = None

    def step_done(self, step: int, name: str, system: str, state, metrics: dict,
                  ckpts) -> None:  # fmt: skip
        """After the optimizer step ``step`` (from 0) of task ``name`` on a batch of ``system``:
        a display row every ``disp_freq`` steps (the other tasks' rows on batches peeked at
        with a generator seeded by (seed, step): the training stream is left as it was).

        Raises:
            TrainingError: the loss is not finite at a display (naming the last good
                checkpoint of ``ckpts``, a ``TrainCheckpoints``).
        """
        tr = self.run.training
        self.since_display.append(f"{name}:{system}")
        if self._in_flight is not None:  # one step queued at most: the progress bar tells the truth
            self._in_flight.block_until_ready()
        self._in_flight = metrics["loss"]
        if (step + 1) % tr.disp_freq == 0 or step == 0 or step + 1 == tr.numb_steps:
            m = {key: float(v) for key, v in metrics.items()}
            if not math.isfinite(m["loss"]):
                raise TrainingError(
                    f"step {step + 1}: the loss is {m['loss']} (batches since the last display "
                    f"came from {sorted(set(self.since_display))}); the last good checkpoint "
                    f"(step {ckpts.latest_step()}) is kept in {ckpts.directory}"
                )
            self._display(step + 1, name, state, m)
            self.since_display = []
        self.progress.update(1)
        if step == self.first:  # rate and ETA count from here: the compilation is done
            bar, now = self.progress, time.time()
            bar.initial, bar.start_t, bar.last_print_t, bar.last_print_n = bar.n, now, now, bar.n

    def _display(self, step: int, name: str, state, m: dict) -> None:
        """One row: task ``name``'s training metrics ``m``, the other tasks' on a fresh training
        batch (DeePMD shows every task), validation, the best model, lcurve.out, the bar."""
        lr = m.pop("lr")
        m.pop("loss")
        params = self.steps.devices.host(state.params)
        rng = np.random.default_rng([self.run.training.seed or 0, step])
        rows = {}
        for other, d in self.data.items():
            trn = m if other == name else self.steps.evaluate(other, params,
                                                              [d.train.peek(rng)[1]], lr)
            rows[other] = (trn, self.validate(other, params, lr))
        self._keep_best(step, state, [v for _, v in rows.values() if v is not None])
        if self.run.multi_task:
            self.lcurve.write_tasks(step, rows, lr)
            shown = {f"{n} f": (v or t)["rmse_f"] for n, (t, v) in rows.items()
                     if "rmse_f" in (v or t)}  # fmt: skip
        else:
            self.lcurve.write(step, *rows[name], lr)
            shown = rows[name][1] or m
        self.progress.set_postfix({k: f"{v:.3g}" for k, v in shown.items()} | {"lr": f"{lr:.1e}"})
        multi = self.run.multi_task
        self.train_metrics.append({f"{key}_{n}" if multi else key: v
                                   for n, (t, _) in rows.items() for key, v in t.items()})

    def validate(self, name: str, params, lr, every_frame: bool = False) -> dict | None:
        """Validation metrics: ``numb_btch`` sampled batches (DeePMD's display), or all frames."""
        valid = self.data[name].valid
        if valid is None:
            return None
        if every_frame:
            batches = [b for sb in valid.systems for b in sb.all_batches()]
        else:
            nb = self.data[name].task.validation_data.numb_btch
            batches = [valid.sample(self.valid_rng)[1] for _ in range(nb)]
        return self.steps.evaluate(name, params, batches, lr)

    def _keep_best(self, step: int, state, valids: list[dict]) -> None:
        """WORKDIR/best when the mean validation rmse of this row is the lowest so far."""
        if not valids:
            return
        rmse = float(np.mean([v["rmse"] for v in valids]))
        if rmse < self.best["rmse"]:
            self.best = {"step": step, "rmse": rmse}
            if self.chief:
                save_model(os.path.join(self.workdir, BEST_DIR), self.run.model,
                           jax.tree.map(np.asarray, state.params), metadata=self.best,
                           overwrite=True)  # fmt: skip

    def final(self, state, lr) -> dict[str, float]:
        """Validation metrics on every frame (``_TASK`` suffixes in a multi-task run), or the
        last row's training metrics without validation data."""
        params = self.steps.devices.host(state.params)
        final = {}
        for name in self.data:
            v = self.validate(name, params, lr, every_frame=True)
            if v is not None:
                suffix = f"_{name}" if self.run.multi_task else ""
                final.update({f"{k}{suffix}": x for k, x in v.items()})
        return final or (self.train_metrics[-1] if self.train_metrics else {})

    def close(self) -> None:
        self.progress.close()
        self.lcurve.close()
