"""dpa2_jax/train/parallel.py: a data-parallel step over 4 CPU devices against one device.

The test process has started JAX with one device already, so the 4-device checks run in a
subprocess (tests/train/parallel_check.py) with XLA_FLAGS forcing 4 host devices.
"""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from dpa2_jax.graph import batch_graphs, pad_graph
from dpa2_jax.train import parallel
from tests.conftest import ROOT, forced_devices_env

CHECK = ROOT / "tests" / "train" / "parallel_check.py"


def _run_check(*args: str) -> dict:
    env = forced_devices_env(4)
    proc = subprocess.run([sys.executable, str(CHECK), *args], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_matches_union_batch(out: dict) -> None:
    assert out["devices"] == 4 and out["steps"] == [2]
    assert out["identical_on_devices"]  # parameters and Adam state, bit for bit
    for k in range(2):  # two steps: the second also checks the Adam moments carried over
        assert out["loss_diff"][k] <= 1e-12 * out["loss"][k]
        assert out["param_diff"][k] <= 1e-12
        assert out["opt_diff"][k] <= 1e-12 * 1e3  # moments up to ~1e3 in size
    # rmse_f is a mean of per-device RMSEs, not the RMSE of the union (module docstring)
    assert 0 < out["rmse_f_diff"] < 1e-2


def test_four_devices_step_like_one_device_on_the_union_batch():
    """4 devices x 1 water frame == 1 device x the 4 frames, float64, two steps."""
    _assert_matches_union_batch(_run_check())


@pytest.mark.slow  # tests/train/test_multitask.py checks the same on one device
def test_multitask_other_head_stays_bit_for_bit_on_every_device():
    """A two-head model stepped twice on head "a" over 4 devices: head "b" and its Adam state
    keep their initial bits on every device; head "a" and the descriptor move. The parallel
    evaluation of the initial parameters gives the first step's loss."""
    out = _run_check("--multitask")
    assert out["devices"] == 4 and out["identical_on_devices"]
    assert out["other_head_unchanged"]
    assert out["stepped_head_moved"] and out["descriptor_moved"]
    assert out["eval_loss_diff"] <= 1e-12


def test_replicate_shard_and_back_on_one_device(enable_x64):
    mesh = parallel.make_mesh()
    assert mesh.axis_names == (parallel.DATA,)
    assert parallel.local_device_indices(mesh) == list(range(jax.device_count()))
    tree = {"w": np.arange(6.0).reshape(2, 3), "step": np.int32(3)}
    replicated = parallel.replicate(mesh, tree)
    assert replicated["w"].sharding.is_fully_replicated
    back = parallel.unreplicate(replicated)
    np.testing.assert_array_equal(back["w"], tree["w"])
    assert back["step"] == 3


def test_shard_batch_puts_one_batch_per_device(enable_x64):
    from jraph import GraphsTuple

    graph = GraphsTuple(
        nodes={"positions": np.zeros((2, 3)), "species": np.zeros(2, np.int32),
               "forces": np.zeros((2, 3))},
        edges={"shifts": np.zeros((1, 3)), "slot": np.zeros(1, np.int32)},
        senders=np.array([1]), receivers=np.array([0]), n_node=np.array([2]),
        n_edge=np.array([1]), globals={"cell": np.eye(3)[None], "energy": np.zeros(1)},
    )  # fmt: skip
    padded = pad_graph(batch_graphs([graph]), 4, 2, 2)
    mesh = parallel.make_mesh()
    n = jax.device_count()
    batch = parallel.shard_batch(mesh, parallel.stack_batches([padded] * n))
    assert batch.nodes["positions"].shape == (n, 4, 3)
    assert len(batch.nodes["positions"].addressable_shards) == n
    with pytest.raises(ValueError, match="pad all batches to the same sizes"):
        parallel.stack_batches([padded, pad_graph(batch_graphs([graph]), 8, 2, 2)])


@pytest.mark.slow
def test_train_command_on_four_forced_devices_reports_devices_and_global_batch(tmp_path):
    """`dpa2-jax train` with 4 forced CPU devices: the data-parallel step, from the CLI."""
    env = forced_devices_env(4, TQDM_DISABLE="1")
    cmd = [sys.executable, "-m", "dpa2_jax.cli.main", "train", str(ROOT / "configs/water_tiny.py"),
           "--workdir", str(tmp_path / "w"), "--config.training.numb_steps=2",
           "--config.training.disp_freq=1"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "training on 4 device(s) (cpu) in 1 process(es); global batch = 4 x" in proc.stderr
    assert "trained 2 steps" in proc.stdout and "on 4 device(s)" in proc.stdout
    rows = [ln for ln in (tmp_path / "w" / "lcurve.out").read_text().splitlines()
            if not ln.startswith("#")]  # fmt: skip
    assert len(rows) == 2
