"""Run by tests/train/test_parallel.py in a process with 4 forced CPU devices (XLA_FLAGS): one
data-parallel step over 4 devices (one water frame each) against one single-device step over
the union batch of the 4 frames; prints JSON of the differences.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 \
        python tests/train/parallel_check.py [--multitask]
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
jax.config.update("jax_enable_x64", True)

from dpa2_jax.data.dataset import read_systems  # noqa: E402
from dpa2_jax.graph.dataset import Dataset  # noqa: E402
from dpa2_jax.model.statistics import apply_statistics, compute_statistics  # noqa: E402
from dpa2_jax.graph import batch_graphs, bucket_size, pad_graph  # noqa: E402
from dpa2_jax.io.deepmd_config import model_config  # noqa: E402
from dpa2_jax.model import init  # noqa: E402
from dpa2_jax.train import parallel  # noqa: E402
from dpa2_jax.train.loss import EnergyLossConfig  # noqa: E402
from dpa2_jax.train.optimizer import make_optimizer  # noqa: E402
from dpa2_jax.train.schedules import LearningRateConfig, make_schedule  # noqa: E402
from dpa2_jax.train.state import create_state  # noqa: E402
from dpa2_jax.train.step import make_train_step  # noqa: E402
from tests.conftest import SYSTEMS, plumbing_model  # noqa: E402

N_DEVICE = 4


def setup(multitask: bool):
    cfg = model_config(plumbing_model())
    if multitask:
        fitting = cfg.heads[0][1]
        cfg = dataclasses.replace(cfg, heads=(("a", fitting), ("b", fitting)))
    systems = read_systems([SYSTEMS / "water" / "data_0"], cfg.type_map)
    data = Dataset(systems, cfg.descriptor.rcut, cfg.descriptor.sel, 1, None, np.float64)
    graphs = data.systems[0].graphs[:N_DEVICE]
    params = init(jax.random.key(0), cfg)
    stats = compute_statistics(cfg, systems, max_frames=4, head=cfg.head_names[0])
    for head in cfg.head_names:  # both heads fit the same data here
        params = apply_statistics(params, cfg, stats, head)
    per_device = [pad_graph(batch_graphs([g]), *data.systems[0].shape) for g in graphs]
    union = batch_graphs(graphs)
    n_edge = int(np.sum(union.n_edge))
    union = pad_graph(union, bucket_size(int(np.sum(union.n_node)) + 1, 5),
                      bucket_size(n_edge), N_DEVICE + 1)  # fmt: skip
    return cfg, params, per_device, union


def max_diff(a, b) -> float:
    diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)),
                                                   initial=0.0)), a, b)  # fmt: skip
    return max(jax.tree.leaves(diffs))


def shards_identical(tree) -> bool:
    """Every device's copy of every leaf is the same, bit for bit."""
    return all(
        all(np.array_equal(np.asarray(s.data), np.asarray(x.addressable_shards[0].data))
            for s in x.addressable_shards)
        for x in jax.tree.leaves(tree)
    )  # fmt: skip


def training(multitask: bool):
    """(config, initial state on the host, single-device step, 4-device step, mesh, ...)."""
    cfg, params, per_device, union = setup(multitask)
    head = cfg.head_names[0]
    optimizer = make_optimizer()
    schedule = make_schedule(LearningRateConfig(start_lr=1e-3, stop_lr=1e-5, decay_steps=1), 10)
    host0 = jax.tree.map(np.asarray, create_state(params, optimizer))
    args = (cfg, head, EnergyLossConfig(), optimizer, schedule)
    mesh = parallel.make_mesh()
    step = parallel.make_parallel_train_step(mesh, *args)
    batch = parallel.shard_batch(mesh, parallel.stack_batches(per_device))
    return cfg, host0, args, mesh, step, batch, union


def compare_with_union() -> dict:
    """Two steps on 4 devices against two single-device steps on the union batch."""
    cfg, host0, args, mesh, step, batch, union = training(multitask=False)
    single = jax.jit(make_train_step(*args))
    one, state = jax.device_put(host0, jax.devices()[0]), parallel.replicate(mesh, host0)
    out = {"loss_diff": [], "param_diff": [], "opt_diff": [], "loss": []}
    for _ in range(2):  # the second step runs on Adam moments of the first
        one, m1 = single(one, union)
        state, m = step(state, batch)
        out["loss"].append(float(m1["loss"]))
        out["loss_diff"].append(abs(float(m["loss"]) - float(m1["loss"])))
        out["param_diff"].append(max_diff(parallel.unreplicate(state.params), one.params))
        out["opt_diff"].append(max_diff(parallel.unreplicate(state.opt_state), one.opt_state))
    out["rmse_f_diff"] = abs(float(m["rmse_f"]) - float(m1["rmse_f"]))
    out["identical_on_devices"] = shards_identical(state)
    out["steps"] = [int(x) for x in np.unique(np.asarray(state.step))]
    out["devices"] = len(jax.tree.leaves(state.params)[0].addressable_shards)
    return out


def multitask_check() -> dict:
    """Two steps of head "a" of a two-head model on 4 devices: what happened to head "b"."""
    cfg, host0, args, mesh, step, batch, _ = training(multitask=True)
    state = parallel.replicate(mesh, host0)
    losses = []
    for _ in range(2):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    # the parallel evaluation of the initial parameters gives the first step's loss
    evaluate = parallel.make_parallel_eval_step(mesh, cfg, "a", args[2], 1e-3)
    loss = float(evaluate(parallel.replicate(mesh, host0.params), batch, 1e-3)["loss"])
    b_now = jax.tree.leaves((state.params["heads"]["b"], state.opt_state["head/b"]))
    b_before = jax.tree.leaves((host0.params["heads"]["b"], host0.opt_state["head/b"]))
    return {
        "identical_on_devices": shards_identical(state),
        "other_head_unchanged": all(
            all(np.array_equal(np.asarray(s.data), y) for s in x.addressable_shards)
            for x, y in zip(b_now, b_before, strict=True)
        ),
        "stepped_head_moved": max_diff(parallel.unreplicate(state.params["heads"]["a"]),
                                       host0.params["heads"]["a"]) > 0,
        "descriptor_moved": max_diff(parallel.unreplicate(state.params["descriptor"]),
                                     host0.params["descriptor"]) > 0,
        "devices": len(jax.tree.leaves(state.params)[0].addressable_shards),
        "eval_loss_diff": abs(loss - losses[0]) / losses[0],
    }  # fmt: skip


if __name__ == "__main__":
    assert jax.device_count() == N_DEVICE, jax.devices()
    print(json.dumps(multitask_check() if "--multitask" in sys.argv[1:] else compare_with_union()))
