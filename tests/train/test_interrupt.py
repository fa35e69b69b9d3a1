"""Interrupted training (train/interrupt.py, train/loop.py): SIGINT and SIGTERM stop `dpa2-jax
train` after the step in flight with a checkpoint, one line saying how to continue and the
shell's exit status, no traceback; SIGKILL loses at most the steps since the last checkpoint.
Restarted, the run writes what an uninterrupted one writes: lcurve.out byte for byte, the same
best/ model and the same final parameters."""

import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from dpa2_jax.io.checkpoints import load_model
from tests.conftest import ROOT, forced_devices_env

TINY = str(ROOT / "configs" / "water_tiny.py")
OPTIONS = ["--config.training.numb_steps=30", "--config.training.disp_freq=5",
           "--config.training.save_freq=10", "--config.model.descriptor.repformer.nlayers=1",
           "--config.model.descriptor.repinit.use_three_body=false"]  # fmt: skip


def _command(workdir, *extra):
    return [sys.executable, "-m", "dpa2_jax.cli.main", "train", TINY, "--workdir", str(workdir),
            *OPTIONS, *extra]  # fmt: skip


def _run(workdir, *extra):
    out = subprocess.run(_command(workdir, *extra), capture_output=True, text=True,
                         env=forced_devices_env(1), timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _rows(workdir) -> int:
    path = workdir / "lcurve.out"
    return sum(1 for line in path.read_text().splitlines() if not line.startswith("#")) if (
        path.exists()) else 0  # fmt: skip


def _interrupt(workdir, signum: int, after_rows: int) -> subprocess.CompletedProcess:
    """Starts a run, sends ``signum`` once lcurve.out has ``after_rows`` rows, waits for it."""
    proc = subprocess.Popen(_command(workdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=forced_devices_env(1))  # fmt: skip
    deadline = time.time() + 600
    # a SIGKILL is survivable only once a checkpoint exists (the first is at step 10)
    first = workdir / "checkpoints" / "10" if signum == signal.SIGKILL else workdir
    while ((_rows(workdir) < after_rows or not first.exists()) and proc.poll() is None
           and time.time() < deadline):  # fmt: skip
        time.sleep(0.01)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _same_model(a, b):
    cfg_a, params_a, meta_a = load_model(a)
    cfg_b, params_b, meta_b = load_model(b)
    assert cfg_a == cfg_b and meta_a == meta_b
    for x, y in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    _run(workdir)
    return workdir


def _check_restart_reproduces(straight, workdir, signum, after_rows):
    stopped = _interrupt(workdir, signum, after_rows)
    if signum == signal.SIGKILL:
        assert stopped.returncode == -signal.SIGKILL
    else:
        assert stopped.returncode == 128 + signum, stopped.stderr[-3000:]
        assert "Traceback" not in stopped.stderr
        last = stopped.stderr.strip().splitlines()[-1]
        assert last.startswith(f"dpa2-jax: stopped by {signal.Signals(signum).name} after step ")
        assert "continue with: dpa2-jax train" in last and last.endswith("--restart")
    assert not (workdir / "model").exists()
    _run(workdir, "--restart")
    assert (workdir / "lcurve.out").read_bytes() == (straight / "lcurve.out").read_bytes()
    _same_model(workdir / "best", straight / "best")
    _same_model(workdir / "model", straight / "model")


def test_sigterm_mid_run_restarts_to_the_uninterrupted_outputs(straight, tmp_path):
    _check_restart_reproduces(straight, tmp_path / "run", signal.SIGTERM, after_rows=3)


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, after_rows",  # rows 1, 2, 3, 5, 6: steps 1, 5, 10, 20, 25; saves at 10, 20, 30
    [(s, r) for s in (signal.SIGINT, signal.SIGTERM) for r in (1, 2, 5)]
    + [(signal.SIGKILL, r) for r in (3, 5, 6)],
)
def test_interrupted_at_any_point_restarts_to_the_uninterrupted_outputs(
    straight, tmp_path, signum, after_rows
):
    _check_restart_reproduces(straight, tmp_path / "run", signum, after_rows)


def test_a_second_ctrl_c_stops_at_once():
    """The handler's rule: the first SIGINT or SIGTERM asks for a stop after the step in flight,
    a second SIGINT raises KeyboardInterrupt at once (a second SIGTERM changes nothing)."""
    from dpa2_jax.train.interrupt import StopRequests

    stop = StopRequests()
    stop._handle(signal.SIGTERM, None)
    stop._handle(signal.SIGTERM, None)
    assert stop.signum == signal.SIGTERM and stop.name == "SIGTERM"
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)
