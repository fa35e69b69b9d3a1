"""``dpa2-jax model-devi`` (cli/model_devi.py): model_devi.out of two models on a trajectory
equals the deviation computed directly from their ``evaluate``; bad input gives exit status 2
and a message naming it."""

from __future__ import annotations

import warnings

import ase
import ase.io
import numpy as np
import pytest

import dpa2_jax
from dpa2_jax.cli.main import main
from dpa2_jax.data import read_npy_system, select_frames, system_to_atoms
from dpa2_jax.data.npy_system import write_npy_system
from dpa2_jax.model.deviation import read_model_devi
from tests.conftest import ROOT, SYSTEMS

TEACHER = ROOT / "examples" / "water_tiny" / "model.dp"
pytestmark = pytest.mark.filterwarnings("ignore:dpa2_jax. enabling jax_enable_x64:UserWarning")


@pytest.fixture(scope="module")
def frames():
    """Frames 0 and 5 of water data_3 (192 atoms)."""
    return select_frames(read_npy_system(SYSTEMS / "water" / "data_3"), [0, 5])


@pytest.fixture(scope="module")
def traj(frames, tmp_path_factory):
    path = tmp_path_factory.mktemp("traj") / "traj.extxyz"
    ase.io.write(path, [system_to_atoms(frames, k) for k in range(frames.nframes)])
    return path


def _direct(models, frames):
    """max/min/avg force deviation per frame, from the definition."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        forces = np.stack([dpa2_jax.load(m).evaluate(frames.coords, frames.cells,
                                                     frames.atom_types)["forces"]
                           for m in models])  # fmt: skip
    eps = np.sqrt(np.mean(np.sum((forces - forces.mean(axis=0)) ** 2, axis=-1), axis=0))
    return eps.max(axis=1), eps.min(axis=1), eps.mean(axis=1)


def test_matches_direct_computation(frames, traj, tiny_dp, tmp_path, capsys):
    models = [str(TEACHER), str(tiny_dp)]
    out = tmp_path / "model_devi.out"
    assert main(["model-devi", *models, str(traj), "-o", str(out), "--frequency", "10"]) == 0
    assert "2 models, 2 frames" in capsys.readouterr().out
    cols = read_model_devi(out)
    np.testing.assert_array_equal(cols["step"], [0, 10])
    expected = _direct(models, frames)
    for name, value in zip(("max_devi_f", "min_devi_f", "avg_devi_f"), expected):
        np.testing.assert_allclose(cols[name], value, rtol=1e-5)  # 7 significant digits written
    assert out.read_text().splitlines()[1].split() == ["#", "step", "max_devi_v", "min_devi_v",
        "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e"]  # fmt: skip
    # a DeePMD npy system gives the same table
    folder = write_npy_system(frames, tmp_path / "sys")
    out2 = tmp_path / "npy.out"
    assert main(["model-devi", *models, folder, "-o", str(out2), "--frequency", "10"]) == 0
    np.testing.assert_allclose(read_model_devi(out2)["max_devi_f"], cols["max_devi_f"], rtol=1e-6)


def test_bad_input_is_reported(traj, tmp_path, capsys):
    missing = tmp_path / "no.dp"
    assert main(["model-devi", str(TEACHER), str(missing), str(traj)]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err
    assert main(["model-devi", str(TEACHER), str(traj)]) == 2
    assert "at least two models" in capsys.readouterr().err
    carbon = tmp_path / "co.xyz"
    ase.io.write(carbon, ase.Atoms("COH", positions=[[0, 0, 0], [1.2, 0, 0], [0, 1, 0]]))
    assert main(["model-devi", str(TEACHER), str(TEACHER), str(carbon)]) == 2
    err = capsys.readouterr().err
    assert f"{TEACHER}: type map ['O', 'H'] lacks element(s) ['C']" in err
    assert main(["model-devi", str(TEACHER), str(TEACHER), str(tmp_path / "none.xyz")]) == 2
    assert "none.xyz: no such file" in capsys.readouterr().err
