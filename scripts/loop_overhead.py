"""Where a training step's wall time goes outside the jitted step: prints JSON.

    python scripts/loop_overhead.py inner [--repeats 20]      # (a) and (b), in one process
    python scripts/loop_overhead.py runs --n1 10 --n2 60      # (c): whole `dpa2-jax train` runs

(a) the loop's jitted training step (``TaskSteps.train``, built as ``dpa2-jax train`` builds it on
configs/water_small.py) on one batch already on the device, blocked per step; the same on a host
(numpy) batch; (b) the per-step host work alone (``Devices.sample``: draw, batch, pad; then
``jax.device_put``); (c) wall time of whole runs of n1 and n2 steps (no display or checkpoint in
between), per step = (t2 - t1) / (n2 - n1). Medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "water_small.py"


def _timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def inner(repeats: int) -> dict:
    """(a) and (b), set up as ``train/loop.py`` sets up a run."""
    import jax
    import numpy as np

    sys.path.insert(0, str(REPO))
    from dpa2_jax.model.jax_setup import enable_compilation_cache, enable_x64_for
    from dpa2_jax.train import parallel
    from dpa2_jax.train.config import read_input
    from dpa2_jax.train.loop import initial_params
    from dpa2_jax.train.optimizer import make_optimizer
    from dpa2_jax.train.schedules import make_schedule
    from dpa2_jax.train.state import create_state
    from dpa2_jax.train.tasks import TaskSteps, read_task_data, training_layout

    run = read_input(CONFIG)
    tr = run.training
    enable_x64_for(run.model.descriptor.precision)
    enable_compilation_cache()
    data = read_task_data(run)
    schedule = make_schedule(run.learning_rate, tr.numb_steps)
    optimizer = make_optimizer(tr.gradient_max_norm, tr.freeze_descriptor, tr.descriptor_lr_scale)
    params = initial_params(run, data, tr.seed)
    devices = parallel.Devices(parallel.make_mesh())
    state = devices.place(create_state(params, optimizer))
    layout = training_layout(run.model, state.params,
                             [x for d in data.values() for x in d.datasets])  # fmt: skip
    steps = TaskSteps(run, optimizer, schedule, layout, devices)
    [name] = data
    rng = np.random.default_rng(0)
    _, host_batch = devices.sample(data[name].train, rng)
    dev_batch = jax.device_put(host_batch)
    start = time.perf_counter()
    state, m = jax.block_until_ready(steps.train(name, state, dev_batch))
    compile_s = time.perf_counter() - start
    holder = {"state": state}

    def step_on(batch):
        holder["state"], _ = jax.block_until_ready(steps.train(name, holder["state"], batch))

    step_dev = _timed(lambda: step_on(dev_batch), repeats)
    step_host = _timed(lambda: step_on(host_batch), repeats)
    sample = _timed(lambda: devices.sample(data[name].train, rng), repeats * 5)
    put = _timed(lambda: jax.block_until_ready(jax.device_put(host_batch)), repeats * 5)
    both = _timed(lambda: jax.block_until_ready(jax.device_put(
        devices.sample(data[name].train, rng)[1])), repeats * 5)  # fmt: skip
    loop = _loop_seconds(steps, devices, data[name].train, holder, name, rng, repeats)
    med = statistics.median
    return {
        "compile_or_load_s": round(compile_s, 2),
        "a_step_device_batch_s": round(med(step_dev), 4),
        "a_step_host_batch_s": round(med(step_host), 4),
        "b_sample_s": round(med(sample), 5),
        "b_device_put_s": round(med(put), 5),
        "b_sample_and_put_s": round(med(both), 5),
        "d_loop_s_per_step": round(loop, 4),
        "batch_leaves": len(jax.tree.leaves(host_batch)),
        "state_leaves": len(jax.tree.leaves(holder["state"])),
        "slots": list(layout.slots or ()),
    }


def _loop_seconds(steps, devices, dataset, holder, name, rng, n: int) -> float:
    """Mean wall time per step of ``n`` steps run as ``train/loop.py`` runs them: sample, then
    dispatch, then block on the previous step's loss (one step in flight)."""
    import jax

    in_flight = None
    start = time.perf_counter()
    for _ in range(n):
        _, batch = devices.sample(dataset, rng)
        holder["state"], metrics = steps.train(name, holder["state"], batch)
        if in_flight is not None:
            in_flight.block_until_ready()
        in_flight = metrics["loss"]
    jax.block_until_ready(holder["state"])
    return (time.perf_counter() - start) / n


def train_seconds(steps: int) -> float:
    """Wall time of ``dpa2-jax train configs/water_small.py`` for ``steps`` steps (subprocess)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "dpa2_jax.cli.main", "train", str(CONFIG),
               "--workdir", os.path.join(tmp, "w"), f"--config.training.numb_steps={steps}",
               "--config.training.disp_freq=100000", "--config.training.save_freq=100000"]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
        return time.perf_counter() - start


def runs(n1: int, n2: int, repeats: int) -> dict:
    """(c): per-step wall time of whole runs, from the difference of two step counts."""
    t1 = [train_seconds(n1) for _ in range(repeats)]
    t2 = [train_seconds(n2) for _ in range(repeats)]
    m1, m2 = statistics.median(t1), statistics.median(t2)
    return {"n1": n1, "n2": n2, "t1_s": [round(t, 2) for t in t1],
            "t2_s": [round(t, 2) for t in t2],
            "c_run_s_per_step": round((m2 - m1) / (n2 - n1), 4)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["inner", "runs"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--n1", type=int, default=10)
    parser.add_argument("--n2", type=int, default=60)
    parser.add_argument("--run-repeats", type=int, default=1)
    args = parser.parse_args()
    if args.part == "inner":
        print(json.dumps(inner(args.repeats)))
    else:
        print(json.dumps(runs(args.n1, args.n2, args.run_repeats)))


if __name__ == "__main__":
    main()
