"""dpa2_jax/train/distributed.py: flags, shards, and a two-process run on localhost.

Two processes (2 CPU devices each, gloo collectives, coordinator on 127.0.0.1) train the tiny
model with the data-parallel step (tests/train/distributed_worker.py), save a TrainCheckpoints
checkpoint together, and take one more step, then restore the checkpoint together and take that
step again; then a single process with 4 devices restores the checkpoint and the data position
and takes that step once more.
"""

import argparse
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from dpa2_jax.errors import ConfigError
from dpa2_jax.train import distributed
from tests.conftest import ROOT, forced_devices_env

WORKER = ROOT / "tests" / "train" / "distributed_worker.py"
TIMEOUT = 300  # seconds; a process waiting for a dead peer would otherwise hang the test


def _env(devices: int) -> dict:
    return forced_devices_env(devices)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The two-process run's output folder."""
    out = tmp_path_factory.mktemp("distributed")
    _two_processes("train", out)
    return out


def _two_processes(mode: str, out) -> None:
    """Runs the worker's ``mode`` in two processes of 2 CPU devices each; asserts both succeed."""
    address = f"127.0.0.1:{_free_port()}"
    command = [sys.executable, str(WORKER), "--distributed", "--coordinator-address", address,
               "--num-processes", "2", mode, str(out)]  # fmt: skip
    out_err = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    procs = [subprocess.Popen([*command, "--process-id", str(i)], env=_env(2), **out_err)
             for i in range(2)]  # fmt: skip
    try:
        logs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]


def test_two_processes_train_to_identical_parameters_and_save(run):
    reports = [json.loads((run / f"process_{i}.json").read_text()) for i in range(2)]
    assert [r["chief"] for r in reports] == [True, False]
    assert all(r["devices"] == 4 and r["processes"] == 2 for r in reports)
    assert all(r["local_copies_equal"] for r in reports)
    assert all(r["restore_together_equal"] for r in reports)  # a restart of both processes
    assert reports[0]["losses"] == reports[1]["losses"]  # the replicated metrics
    a, b = np.load(run / "process_0.npz"), np.load(run / "process_1.npz")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert sorted(os.listdir(run / "checkpoints")) == ["2"]


def test_one_process_restores_the_checkpoint_and_continues(run):
    proc = subprocess.run([sys.executable, str(WORKER), "restore", str(run)], env=_env(4),
                          capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    saved, restored = np.load(run / "process_0.npz"), np.load(run / "restored.npz")
    for key in saved.files:
        if key.startswith("after/"):  # step 3: other reduction order (gloo), same batches
            np.testing.assert_allclose(restored[key], saved[key], rtol=0, atol=1e-12)
        else:  # step 2 as saved by two processes, bit for bit
            np.testing.assert_array_equal(restored[key], saved[key], err_msg=key)
    report = json.loads((run / "restored.json").read_text())
    original = json.loads((run / "process_0.json").read_text())
    assert report["step"] == 3
    assert report["losses"][0] == pytest.approx(original["losses"][-1], rel=1e-12)


def test_flags_parse_and_need_distributed():
    parser = argparse.ArgumentParser()
    distributed.add_arguments(parser)
    args = parser.parse_args(["--distributed", "--coordinator-address", "10.0.0.1:1234",
                              "--num-processes", "4", "--process-id", "3"])  # fmt: skip
    assert (args.distributed, args.coordinator_address, args.num_processes,
            args.process_id) == (True, "10.0.0.1:1234", 4, 3)  # fmt: skip
    assert distributed.initialize(parser.parse_args([])) is False
    with pytest.raises(ConfigError, match="--process-id needs --distributed"):
        distributed.initialize(parser.parse_args(["--process-id", "1"]))
    assert distributed.is_chief()  # a single process is the chief


@pytest.mark.parametrize("n, count", [(10, 3), (2, 4), (0, 2), (7, 1)])
def test_shard_frames_are_disjoint_and_cover_all(n, count):
    shards = [distributed.shard_frames(n, i, count) for i in range(count)]
    assert np.array_equal(np.sort(np.concatenate(shards)), np.arange(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ValueError, match="process_index=5"):
        distributed.shard_frames(n, 5, count)


@pytest.mark.slow  # two processes and one, each compiling: ~2 minutes on 2 cores
def test_streamed_shares_are_disjoint_and_train_as_the_union_batch(tmp_path):
    """Two processes on streamed data_1 (160 frames, sharded 80 + 80) read disjoint frames, and
    their parameters equal one process's with the union of their batches (1e-12, float64)."""
    _two_processes("stream", tmp_path)
    union = subprocess.run([sys.executable, str(WORKER), "union", str(tmp_path)], env=_env(4),
                           capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert union.returncode == 0, union.stderr[-4000:]
    reads = [json.loads((tmp_path / f"stream_{i}.json").read_text())["read"] for i in range(2)]
    assert len(reads[0]) == len(reads[1]) == 3 * 2  # 3 steps x 2 devices x batch 1
    assert set(reads[0]) <= set(range(80)) and set(reads[1]) <= set(range(80, 160))
    a, b = np.load(tmp_path / "stream_0.npz"), np.load(tmp_path / "union_0.npz")
    assert a.files == b.files
    for key in a.files:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-12, err_msg=key)
