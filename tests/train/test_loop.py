"""dpa2_jax/train/loop.py end to end: `dpa2-jax train` on the tiny water config, lcurve.out,
checkpoints, the trained model loading, an exact restart, and bad input with clear errors."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

import dpa2_jax
import dpa2_jax.io.checkpoints
from dpa2_jax.cli.main import main
from dpa2_jax.train.lcurve import read_lcurve
from tests.conftest import ROOT, SYSTEMS

TINY = str(ROOT / "configs" / "water_tiny.py")
# six steps of the tiny config with one repformer layer and no three-body block: the training
# loop does not depend on them, and each compilation takes half the time
SHORT = ["--config.training.numb_steps=6", "--config.training.disp_freq=2",
         "--config.training.save_freq=3", "--config.model.descriptor.repformer.nlayers=1",
         "--config.model.descriptor.repinit.use_three_body=false"]  # fmt: skip


def _train(workdir, *extra):
    return main(["train", TINY, "--workdir", str(workdir), *SHORT, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    assert _train(workdir) == 0
    return workdir


def test_lcurve_has_deepmd_columns_and_rows(trained):
    columns = read_lcurve(str(trained / "lcurve.out"))
    assert columns["step"] == [1.0, 2.0, 4.0, 6.0]
    for name in ("rmse_e_val", "rmse_e_trn", "rmse_f_val", "rmse_f_trn", "lr"):
        assert name in columns and all(np.isfinite(columns[name])), name
    assert columns["lr"][0] > columns["lr"][-1]


def test_checkpoints_best_and_trained_model_load(trained, capsys):
    assert sorted(os.listdir(trained / "checkpoints")) == ["3", "6"]
    best = dpa2_jax.io.checkpoints.load_model(trained / "best")[2]
    rmse = read_lcurve(str(trained / "lcurve.out"))["rmse_val"]
    assert best["rmse"] == pytest.approx(min(rmse), rel=1e-2)  # lcurve.out rounds to 3 digits
    pot = dpa2_jax.load(trained)
    coord = np.load(SYSTEMS / "water" / "data_3" / "set.000" / "coord.npy")[:1].reshape(1, -1, 3)
    cell = np.load(SYSTEMS / "water" / "data_3" / "set.000" / "box.npy")[:1]
    types = np.loadtxt(SYSTEMS / "water" / "data_3" / "type.raw", dtype=int)
    out = pot.evaluate(coord, cell, types)
    assert np.all(np.isfinite(out["forces"]))
    # the energy bias comes from the data's statistics: near the DFT energy, not hundreds off
    energy = np.load(SYSTEMS / "water" / "data_3" / "set.000" / "energy.npy")[0]
    assert abs(out["energy"][0] - energy) / len(types) < 5.0  # eV/atom; ~156 without the bias


@pytest.mark.slow  # test_full_disk_at_save... restarts to the same numbers in the default suite
def test_restart_reproduces_the_uninterrupted_run(trained, tmp_path):
    """Cut the run back to its step-3 checkpoint, restart, and land on the same parameters."""
    workdir = tmp_path / "cut"
    shutil.copytree(trained, workdir)
    shutil.rmtree(workdir / "checkpoints" / "6")
    shutil.rmtree(workdir / "model")
    lines = (workdir / "lcurve.out").read_text().splitlines(keepends=True)
    (workdir / "lcurve.out").write_text("".join(lines[:4]))  # header (2 lines), steps 1 and 2
    assert _train(workdir, "--restart") == 0
    a, b = dpa2_jax.load(trained), dpa2_jax.load(workdir)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert read_lcurve(str(workdir / "lcurve.out")) == read_lcurve(str(trained / "lcurve.out"))


def test_unknown_key_names_the_nearest(tmp_path, capsys):
    assert _train(tmp_path / "w", "--config.training.numb_stepz=5") == 2
    err = capsys.readouterr().err
    assert "unknown key 'numb_stepz'" in err and "did you mean 'numb_steps'?" in err


def test_missing_system_path(tmp_path, capsys):
    assert _train(tmp_path / "w", '--config.training.training_data.systems=["nowhere"]') == 2
    assert "nowhere: no such system folder or file" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()  # a run that fails its checks leaves nothing behind


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.training.numb_steps=-5", "training.numb_steps: expected an integer >= 0"),
        ("--config.training.numb_steps=abc", "training.numb_steps: expected int, got 'abc'"),
        ("--config.learning_rate.start_lr=x", "learning_rate.start_lr: expected float, got 'x'"),
        ("--config.loss.start_pref_f=true", "loss.start_pref_f: expected float, got True"),
    ],
)
def test_bad_values_are_named_before_any_data_is_read(tmp_path, capsys, override, message):
    assert _train(tmp_path / "w", override) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dpa2-jax: error: {TINY}: {message}") and "Traceback" not in err
    assert not (tmp_path / "w").exists()


def test_misspelled_required_key_is_named_with_the_nearest(tmp_path, capsys):
    config = tmp_path / "input.json"
    section = {"model": {"type_map": ["O"], "descriptor": {"type": "se_e2_a", "sel": [4]}},
               "training": {"numb_step": 5, "training_data": {"systems": ["x"]}}}  # fmt: skip
    config.write_text(json.dumps(section))
    assert main(["train", str(config), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "training: unknown key 'numb_step'; did you mean 'numb_steps'?" in err


def test_workdir_that_is_a_file_and_restart_without_checkpoints(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    assert _train(notes) == 2
    assert f"--workdir {notes}: is a file, not a folder" in capsys.readouterr().err
    assert notes.read_text() == "keep me"
    assert _train(tmp_path / "new", "--restart") == 2
    assert "holds no checkpoints to continue from" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_frames_without_forces_when_forces_are_weighted(tmp_path, capsys):
    system = tmp_path / "no_forces"
    shutil.copytree(SYSTEMS / "water" / "data_3", system)
    for force in system.glob("set.*/force.npy"):
        force.unlink()
    assert _train(tmp_path / "w", f'--config.training.training_data.systems=["{system}"]') == 2
    err = capsys.readouterr().err
    assert "no_forces: no forces labels, but the loss weights them" in err


def test_existing_run_needs_restart_and_restart_needs_same_model(trained, tmp_path, capsys):
    workdir = tmp_path / "again"
    shutil.copytree(trained, workdir)
    assert _train(workdir) == 2
    assert "pass --restart" in capsys.readouterr().err
    assert _train(workdir, "--restart", "--config.model.fitting_net.neuron=[4,4]") == 2
    assert "'model' section differs" in capsys.readouterr().err


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch,
                                                                       capsys):  # fmt: skip
    import jax.numpy as jnp

    from dpa2_jax.train import parallel

    real = parallel.make_train_step  # what Devices.train_step jits on one device

    def poisoned(*args, **kwargs):
        step = real(*args, **kwargs)

        def wrapped(state, batch):
            new, metrics = step(state, batch)
            bad = state.step >= 4  # the 5th step and later go wrong
            return new, {**metrics, "loss": jnp.where(bad, jnp.nan, metrics["loss"])}

        return wrapped

    monkeypatch.setattr(parallel, "make_train_step", poisoned)
    workdir = tmp_path / "nan"
    assert _train(workdir) == 2
    err = capsys.readouterr().err
    assert "step 6: the loss is nan" in err
    assert "batches since the last display came from" in err and "water/data_" in err
    assert "the last good checkpoint (step 3) is kept" in err
    assert os.listdir(workdir / "checkpoints") == ["3"]


@pytest.mark.slow
def test_restart_of_a_finished_run_says_there_is_nothing_to_train(trained, tmp_path, capsys):
    workdir = tmp_path / "done"
    shutil.copytree(trained, workdir)
    assert _train(workdir, "--restart") == 0
    out = capsys.readouterr().out
    assert "nothing to train: the run is at its last step (6)" in out and "0.0 s" not in out


def test_x64_switch_is_one_log_line_not_a_warning(caplog, recwarn):
    from dpa2_jax.model.jax_setup import enable_x64_for

    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        with caplog.at_level("INFO", logger="dpa2_jax"):
            enable_x64_for("float64")
            enable_x64_for("float64")
    finally:
        jax.config.update("jax_enable_x64", previous)
    notes = [r for r in caplog.records if "jax_enable_x64" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelname == "WARNING" and not len(recwarn)


def test_killed_run_restarts_to_the_uninterrupted_numbers(tmp_path):
    """SIGKILL a `dpa2-jax train` process once its step-10 checkpoint exists (maybe mid-way
    through writing a later one), restart it, and land on an uninterrupted run's numbers."""
    import signal
    import subprocess
    import sys
    import time

    def command(workdir):
        return [sys.executable, "-m", "dpa2_jax.cli.main", "train", TINY, "--workdir",
                str(workdir), "--config.training.numb_steps=60", "--config.training.disp_freq=10",
                "--config.training.save_freq=10"]  # fmt: skip

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert subprocess.run(command(straight), capture_output=True).returncode == 0
    proc = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "10").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoints" / "10").exists() and not (killed / "model").exists()
    assert subprocess.run([*command(killed), "--restart"], capture_output=True).returncode == 0
    a, b = dpa2_jax.load(straight), dpa2_jax.load(killed)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_exported_trained_model_gives_deepmd_our_numbers(trained, tmp_path):
    """`dpa2-jax export WORKDIR` of a trained run: DeePMD-kit's numpy backend evaluates the
    .dp to our energy (1e-10) on a water frame (its numpy backend has no forces)."""
    pytest.importorskip("deepmd")
    from deepmd.dpmodel.model.base_model import BaseModel
    from deepmd.dpmodel.utils.serialization import load_dp_model

    assert main(["export", str(trained), str(tmp_path / "trained.dp")]) == 0
    model = BaseModel.deserialize(load_dp_model(str(tmp_path / "trained.dp"))["model"])
    water = SYSTEMS / "water" / "data_3"
    coord = np.load(water / "set.000" / "coord.npy")[:1].astype(np.float64)
    box = np.load(water / "set.000" / "box.npy")[:1].astype(np.float64)
    types = np.loadtxt(water / "type.raw", dtype=int)
    theirs = model.call(coord, types[None], box=box)
    ours = dpa2_jax.load(trained).evaluate(coord.reshape(1, -1, 3), box, types)
    scale = abs(float(ours["energy"][0]))
    np.testing.assert_allclose(theirs["energy"].reshape(1), ours["energy"], rtol=1e-10,
                               atol=1e-10 * scale)  # fmt: skip


def test_full_disk_at_save_keeps_earlier_checkpoints_and_restarts(trained, tmp_path, monkeypatch,
                                                                   capsys):  # fmt: skip
    """The step-6 save hits a full disk: the run stops with a message naming the folder, the
    step-3 checkpoint stays restorable, and a restart once there is room again lands on the
    uninterrupted run's parameters."""
    import errno

    import orbax.checkpoint as ocp

    real_save = ocp.CheckpointManager.save

    def save(self, step, *args, **kwargs):
        if step == 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    workdir = tmp_path / "full"
    assert _train(workdir) == 2
    err = capsys.readouterr().err
    assert f"{workdir / 'checkpoints'}: saving step 6 failed" in err
    assert "No space left on device" in err
    assert os.listdir(workdir / "checkpoints") == ["3"]
    monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
    assert _train(workdir, "--restart") == 0
    a, b = dpa2_jax.load(trained), dpa2_jax.load(workdir)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert read_lcurve(str(workdir / "lcurve.out")) == read_lcurve(str(trained / "lcurve.out"))
