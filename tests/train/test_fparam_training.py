"""Models with frame/atomic parameters (numb_fparam/numb_aparam) end to end: `dpa2-jax train`
carries fparam.npy/aparam.npy into the graphs and sets fparam/aparam statistics from the data,
and `dpa2-jax test` passes them to the model; a system without them is a clear error."""

import json
import shutil

import numpy as np
import pytest

import dpa2_jax
from dpa2_jax.cli.main import main
from dpa2_jax.data import read_npy_system
from dpa2_jax.data.stats import MIN_STD, fitting_input_statistics
from dpa2_jax.graph.dataset import Dataset
from dpa2_jax.errors import DataError
from dpa2_jax.fitting.energy import FittingConfig
from tests.conftest import SYSTEMS, plumbing_model

NFRAMES = 4
FPARAM = np.array([1.0, 2.0, 3.0, 5.0])  # one per frame


def _water_with_parameters(root, fparam=True, aparam=True):
    """The first NFRAMES frames of water/data_3 with fparam.npy and aparam.npy added."""
    src = SYSTEMS / "water" / "data_3"
    (root / "set.000").mkdir(parents=True)
    for name in ("type.raw", "type_map.raw"):
        shutil.copy(src / name, root / name)
    for name in ("coord.npy", "box.npy", "energy.npy", "force.npy"):
        np.save(root / "set.000" / name, np.load(src / "set.000" / name)[:NFRAMES])
    natoms = len(np.loadtxt(src / "type.raw", dtype=int))
    if fparam:
        np.save(root / "set.000" / "fparam.npy", FPARAM[:, None])
    if aparam:  # per atom: the frame's fparam plus a ramp over the atoms
        values = FPARAM[:, None] + np.linspace(0.0, 1.0, natoms)[None]
        np.save(root / "set.000" / "aparam.npy", values)
    return root


def _input(tmp_path, system, **fitting):
    model = plumbing_model()
    model["fitting_net"] = {**model["fitting_net"], "numb_fparam": 1, "numb_aparam": 1, **fitting}
    config = {
        "model": model,
        "learning_rate": {"type": "exp", "decay_steps": 100, "start_lr": 0.005, "stop_lr": 1e-4},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
                 "limit_pref_f": 1, "start_pref_v": 0, "limit_pref_v": 0},
        "training": {
            "training_data": {"systems": [str(system)], "batch_size": 2},
            "numb_steps": 3, "seed": 1, "disp_file": "lcurve.out", "disp_freq": 1,
            "save_freq": 3, "max_ckpt_keep": 1,
        },
    }  # fmt: skip
    path = tmp_path / "input.json"
    path.write_text(json.dumps(config))
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fparam")
    system = _water_with_parameters(tmp / "sys")
    workdir = tmp / "run"
    assert main(["train", _input(tmp, system), "--workdir", str(workdir)]) == 0
    return system, workdir


def test_training_sets_fparam_aparam_statistics_from_the_data(trained):
    system, workdir = trained
    pot = dpa2_jax.load(workdir)
    fitting = pot.params["heads"][pot.heads[0]]["fitting"]
    np.testing.assert_allclose(np.asarray(fitting["fparam_avg"]), [FPARAM.mean()])
    np.testing.assert_allclose(np.asarray(fitting["fparam_inv_std"]), [1.0 / FPARAM.std()])
    aparam = np.load(system / "set.000" / "aparam.npy")
    np.testing.assert_allclose(np.asarray(fitting["aparam_avg"]), [aparam.mean()])
    np.testing.assert_allclose(np.asarray(fitting["aparam_inv_std"]), [1.0 / aparam.std()])


def test_dpa2_jax_test_passes_the_parameters(trained, tmp_path, capsys):
    system, workdir = trained
    prefix = tmp_path / "detail"
    assert main(["test", str(workdir), str(system), "--detail-file", str(prefix)]) == 0
    assert "Energy RMSE" in capsys.readouterr().out
    pred = np.loadtxt(f"{prefix}.e.out")[:, 1]
    s = read_npy_system(system)
    pot = dpa2_jax.load(workdir)
    out = pot.evaluate(s.coords, s.cells, s.atom_types, fparam=s.fparams, aparam=s.aparams)
    np.testing.assert_allclose(pred, out["energy"], rtol=1e-6)
    other = pot.evaluate(s.coords, s.cells, s.atom_types, fparam=s.fparams + 1, aparam=s.aparams)
    assert not np.allclose(other["energy"], out["energy"])  # the parameters do matter


def test_dpa2_jax_test_without_fparam_is_a_clear_error(trained, tmp_path, capsys):
    _, workdir = trained
    bare = _water_with_parameters(tmp_path / "bare", fparam=False)
    assert main(["test", str(workdir), str(bare)]) == 2
    err = capsys.readouterr().err
    assert "bare: no fparam.npy" in err and "numb_fparam=1" in err


def test_training_without_fparam_is_a_clear_error(tmp_path, capsys):
    bare = _water_with_parameters(tmp_path / "bare", fparam=False)
    assert main(["train", _input(tmp_path, bare), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "bare: no fparam.npy" in err and "default_fparam" in err


def test_graphs_carry_the_parameters_and_padding_gets_zeros(tmp_path):
    s = read_npy_system(_water_with_parameters(tmp_path / "sys"))
    fit = FittingConfig(numb_fparam=1, numb_aparam=1)
    data = Dataset([s], 4.0, 40, batch_size=2, fitting=fit)
    batch = data.systems[0].all_batches()[1]  # frames 2 and 3, then a padding graph
    np.testing.assert_array_equal(batch.globals["fparam"][:, 0], [3.0, 5.0, 0.0])
    n = 2 * s.natoms
    np.testing.assert_array_equal(batch.nodes["aparam"][:n], s.aparams[2:].reshape(n, 1))
    assert not np.any(batch.nodes["aparam"][n:])
    plain = Dataset([s], 4.0, 40, batch_size=2).systems[0].all_batches()[0]
    assert "fparam" not in plain.globals and "aparam" not in plain.nodes  # as before


def test_default_fparam_fills_a_missing_file(tmp_path):
    s = read_npy_system(_water_with_parameters(tmp_path / "sys", fparam=False))
    fit = FittingConfig(numb_fparam=1, numb_aparam=1, default_fparam=(7.0,))
    batch = Dataset([s], 4.0, 40, batch_size=2, fitting=fit).systems[0].all_batches()[0]
    np.testing.assert_array_equal(batch.globals["fparam"][:, 0], [7.0, 7.0, 0.0])
    stats = fitting_input_statistics([s], fit)
    assert stats["fparam_avg"] == [7.0] and stats["fparam_inv_std"] == [1.0 / MIN_STD]
    with pytest.raises(DataError, match="no fparam.npy"):
        Dataset([s], 4.0, 40, batch_size=2, fitting=FittingConfig(numb_fparam=1))
