"""Run by tests/train/test_distributed.py: data-parallel training of the tiny model on water.

Mode "train": one of several processes (--distributed flags, 2 CPU devices each) takes STEPS
steps, saves a TrainCheckpoints checkpoint with the others at step STEPS, takes one more step,
and writes OUT/process_I.npz (parameters after STEPS and STEPS + 1) and OUT/process_I.json;
then all of them restore the checkpoint together and retake step STEPS + 1.
Mode "restore": a single process (as many devices as the run had) restores the checkpoint and
the data position, takes step STEPS + 1 and writes OUT/restored.npz and OUT/restored.json.
Modes "stream" and "union": streamed data, sharded over processes (``streamed``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from dpa2_jax.train import distributed  # noqa: E402

STEPS = 2


def flat(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {jax.tree_util.keystr(path): np.asarray(x) for path, x in leaves}


def build(mesh, streamed: bool = False):
    """(train step, replicated initial state, dataset) as the training loop builds them;
    ``streamed``: data_1 read per batch (data/npy_stream.py), not data_0 and data_1 whole."""
    from dpa2_jax.data.dataset import read_systems
    from dpa2_jax.graph.dataset import Dataset
    from dpa2_jax.model.statistics import apply_statistics, compute_statistics
    from dpa2_jax.io.deepmd_config import model_config
    from dpa2_jax.model import init
    from dpa2_jax.train import parallel
    from dpa2_jax.train.loss import EnergyLossConfig
    from dpa2_jax.train.optimizer import make_optimizer
    from dpa2_jax.train.schedules import LearningRateConfig, make_schedule
    from dpa2_jax.train.state import create_state
    from tests.conftest import SYSTEMS, plumbing_model

    cfg = model_config(plumbing_model())  # a smaller program: the plumbing is tested
    systems = read_systems([SYSTEMS / "water" / "data_0", SYSTEMS / "water" / "data_1"],
                           cfg.type_map)  # fmt: skip
    if streamed:
        from dpa2_jax.data.npy_stream import open_npy_system

        systems = [open_npy_system(SYSTEMS / "water" / "data_1", cfg.type_map)]
    data = Dataset(systems, cfg.descriptor.rcut, cfg.descriptor.sel, 1, None, np.float64)
    params = init(jax.random.key(0), cfg)
    params = apply_statistics(params, cfg, compute_statistics(cfg, systems, max_frames=2))
    optimizer = make_optimizer()
    schedule = make_schedule(LearningRateConfig(start_lr=1e-3, stop_lr=1e-5, decay_steps=1), 10)
    step = parallel.make_parallel_train_step(mesh, cfg, None, EnergyLossConfig(), optimizer,
                                             schedule)  # fmt: skip
    state = parallel.replicate(mesh, create_state(params, optimizer))
    return step, state, data


def train_steps(step, state, data, rng, mesh, n: int):
    from dpa2_jax.train import parallel

    losses = []
    for _ in range(n):
        _, local = parallel.sample_device_batches(data, rng, mesh)
        state, metrics = step(state, parallel.shard_batch(mesh, local))
        losses.append(float(parallel.unreplicate(metrics)["loss"]))
    return state, losses


def record_reads(data) -> list[int]:
    """From now on, every frame index the dataset's (one, streamed) system reads."""
    system, seen = data.systems[0].system, []
    real = system.select_frames

    def select_frames(idx):
        seen.extend(np.arange(system.nframes)[idx].tolist())
        return real(idx)

    system.select_frames = select_frames
    return seen


def streamed(args, mesh) -> None:
    """Mode "stream": each process trains on its share of streamed data_1, recording the frames
    it reads. Mode "union": one process, 4 devices, draws both shares as the two processes
    would (process p's two batches from share p) and takes the same steps on the union."""
    from dpa2_jax.train import parallel

    step, state, data = build(mesh, streamed=True)
    count = 2 if args.mode == "union" else jax.process_count()
    shares = [data] + [build(mesh, streamed=True)[2] for _ in range(count - 1)]
    for p, d in enumerate(shares):
        d.shard(p if args.mode == "union" else jax.process_index(), count)
    seen, rngs = record_reads(data), [np.random.default_rng(1) for _ in shares]
    # a process's draw: its two devices' batches (in "union", drawn as on a 2-device mesh)
    per_process = mesh if args.mode == "stream" else parallel.make_mesh(jax.devices()[:2])
    for _ in range(STEPS + 1):
        local = [parallel.sample_device_batches(d, r, per_process)[1]
                 for d, r in zip(shares, rngs)]  # fmt: skip
        union = jax.tree.map(lambda *xs: np.concatenate(xs), *local)  # process 0's, then 1's
        state, _ = step(state, parallel.shard_batch(mesh, union))
    name = f"{args.mode}_{jax.process_index()}"
    np.savez(os.path.join(args.out, f"{name}.npz"), **flat(parallel.unreplicate(state.params)))
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump({"read": seen}, f)


def main() -> None:
    parser = argparse.ArgumentParser()
    distributed.add_arguments(parser)
    parser.add_argument("mode", choices=("train", "restore", "stream", "union"))
    parser.add_argument("out")
    args = parser.parse_args()
    distributed.initialize(args)
    jax.config.update("jax_enable_x64", True)

    from dpa2_jax.io.training_checkpoints import TrainCheckpoints
    from dpa2_jax.train import parallel

    mesh = parallel.make_mesh()
    if args.mode in ("stream", "union"):
        return streamed(args, mesh)
    step, state, data = build(mesh)
    rng = np.random.default_rng(1)
    ckpts = TrainCheckpoints(os.path.join(args.out, "checkpoints"))
    if args.mode == "train":
        state, losses = train_steps(step, state, data, rng, mesh, STEPS)
        saved = flat(parallel.unreplicate(state.params))
        meta = {"rng": rng.bit_generator.state, "data": data.state()}
        ckpts.save(STEPS, state, meta)
        ckpts.close()
        state, more = train_steps(step, state, data, rng, mesh, 1)
        local_copies_equal = all(
            all(np.array_equal(np.asarray(s.data), np.asarray(x.addressable_shards[0].data))
                for s in x.addressable_shards)
            for x in jax.tree.leaves(state)
        )  # fmt: skip
        after = {f"after/{k}": v for k, v in flat(parallel.unreplicate(state.params)).items()}
        # every process restores the checkpoint together and retakes the step: the same bits
        again = TrainCheckpoints(os.path.join(args.out, "checkpoints"))
        restored, meta = again.restore(state)
        again.close()
        rng.bit_generator.state = meta["rng"]
        data.restore(meta["data"])
        restored, _ = train_steps(step, restored, data, rng, mesh, 1)
        restore_equal = all(
            np.array_equal(after[f"after/{k}"], v)
            for k, v in flat(parallel.unreplicate(restored.params)).items()
        )
        name = f"process_{jax.process_index()}"
        np.savez(os.path.join(args.out, f"{name}.npz"), **saved, **after)
        with open(os.path.join(args.out, f"{name}.json"), "w") as f:
            json.dump({"losses": losses + more, "chief": distributed.is_chief(),
                       "devices": jax.device_count(), "processes": jax.process_count(),
                       "local_copies_equal": local_copies_equal,
                       "restore_together_equal": restore_equal}, f)  # fmt: skip
    else:
        state, meta = ckpts.restore(state)
        ckpts.close()
        rng.bit_generator.state = meta["rng"]
        data.restore(meta["data"])
        restored = flat(parallel.unreplicate(state.params))
        state, losses = train_steps(step, state, data, rng, mesh, 1)
        after = {f"after/{k}": v for k, v in flat(parallel.unreplicate(state.params)).items()}
        np.savez(os.path.join(args.out, "restored.npz"), **restored, **after)
        with open(os.path.join(args.out, "restored.json"), "w") as f:
            json.dump({"losses": losses, "step": int(np.asarray(
                state.step.addressable_shards[0].data))}, f)  # fmt: skip


if __name__ == "__main__":
    main()
