"""``dpa2-jax md`` (cli/md.py, md/simulate.py, md/output.py) with the bundled tiny water model on a
192-atom water frame: NVE, NVT and NPT runs write a thermo.log and a trajectory that ASE reads back
(energies, forces, velocities, cell) and that agree with ``Potential.evaluate``; NVE conserves
energy; bad input gives exit status 2 and a message naming the file or value.
"""

from __future__ import annotations

import pathlib

import ase.io
import numpy as np
import pytest

pytest.importorskip("jax_md")

from dpa2_jax.cli.main import main
from dpa2_jax.data import read_npy_system, system_to_atoms
from dpa2_jax.md.output import read_thermo
from tests.conftest import ROOT, SYSTEMS

MODEL = ROOT / "examples" / "water_tiny" / "model.dp"
WATER = SYSTEMS / "water" / "data_0"
pytestmark = pytest.mark.filterwarnings(
    "ignore:scatter inputs have incompatible types:FutureWarning",
    "ignore:dpa2_jax. enabling jax_enable_x64:UserWarning",
)


@pytest.fixture(scope="module")
def pot(water_pot):
    return water_pot


@pytest.fixture(scope="module")
def water_xyz(tmp_path_factory) -> pathlib.Path:
    """Water data_0 frame 0 as an extxyz file (labels dropped)."""
    atoms = system_to_atoms(read_npy_system(WATER), 0)
    atoms.calc = None
    path = tmp_path_factory.mktemp("structure") / "water.extxyz"
    ase.io.write(path, atoms)
    return path


def _md(structure, out, *options) -> int:
    return main(["md", str(MODEL), str(structure), "--output-dir", str(out), *options])


def _check_outputs(pot, out: pathlib.Path, n_frames: int, periodic: bool = True):
    thermo = read_thermo(out / "thermo.log")
    frames = ase.io.read(out / "traj.extxyz", ":")
    assert len(frames) == n_frames == len(thermo["step"])
    np.testing.assert_allclose(thermo["time_fs"], thermo["step"] * 0.5)
    if periodic:
        assert {"pressure_bar", "volume_A3"} <= set(thermo)
    last = frames[-1]
    np.testing.assert_allclose(
        [f.get_potential_energy() for f in frames], thermo["potential_eV"], rtol=1e-9
    )
    np.testing.assert_allclose(last.get_temperature(), thermo["temperature_K"][-1], rtol=1e-8)
    np.testing.assert_allclose(last.get_kinetic_energy(), thermo["kinetic_eV"][-1], rtol=1e-8)
    ref = pot.evaluate(last.positions, last.cell.array if periodic else None,
                       last.get_chemical_symbols())  # fmt: skip
    np.testing.assert_allclose(last.get_potential_energy(), ref["energy"][0], rtol=1e-9)
    # extxyz keeps 8 decimals of positions and forces
    np.testing.assert_allclose(last.get_forces(), ref["forces"][0], atol=1e-5)
    return thermo, frames


def test_nve_from_npy_folder(pot, tmp_path, capsys):
    assert _md(WATER, tmp_path, "--steps", "20", "--traj-every", "10", "--log-every", "10") == 0
    thermo, frames = _check_outputs(pot, tmp_path, 3)
    assert thermo["temperature_K"][0] == pytest.approx(300.0)  # scaled to the target exactly
    momentum = (frames[0].get_velocities() * frames[0].get_masses()[:, None]).sum(0)
    np.testing.assert_allclose(momentum, 0.0, atol=1e-6)  # zero total momentum (8 decimals)
    drift = np.ptp(thermo["total_eV"]) / len(frames[0])
    assert drift < 1e-4  # eV/atom over 10 fs (3e-5 seen)
    np.testing.assert_allclose(thermo["volume_A3"], frames[0].cell.volume)
    assert "md: 20 NVE steps" in capsys.readouterr().out


def test_nvt_langevin_from_extxyz(pot, water_xyz, tmp_path):
    options = ["--ensemble", "nvt", "--thermostat", "langevin", "--steps", "20", "--seed", "3"]
    assert _md(water_xyz, tmp_path, *options, "--traj-every", "20", "--log-every", "5") == 0
    thermo = read_thermo(tmp_path / "thermo.log")
    np.testing.assert_array_equal(thermo["step"], [0, 5, 10, 15, 20])
    assert len(ase.io.read(tmp_path / "traj.extxyz", ":")) == 2


@pytest.mark.slow
def test_npt_changes_the_volume(pot, tmp_path):
    options = ["--ensemble", "npt", "--steps", "20", "--pressure", "1", "--tau-p", "200"]
    assert _md(WATER, tmp_path, *options) == 0
    thermo, frames = _check_outputs(pot, tmp_path, 3)
    assert thermo["volume_A3"][-1] != pytest.approx(thermo["volume_A3"][0], rel=1e-6)
    np.testing.assert_allclose(thermo["volume_A3"], [f.cell.volume for f in frames])


@pytest.mark.slow
def test_free_space_cluster_nvt(pot, water_cluster, tmp_path):
    """Four water molecules without a cell: space.free and an all-pairs neighbor list."""
    cluster = water_cluster(4)
    path = tmp_path / "cluster.xyz"
    ase.io.write(path, cluster)
    assert _md(path, tmp_path / "out", "--ensemble", "nvt", "--steps", "10") == 0
    thermo, _ = _check_outputs(pot, tmp_path / "out", 2, periodic=False)
    assert "pressure_bar" not in thermo


def test_help_explains_units_and_files(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["md", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    phrases = ["--timestep in fs", "--temperature in K", "--pressure in bar", "amu",
               "thermo.log", "traj.extxyz", "npy system folder"]  # fmt: skip
    assert [p for p in phrases if p not in text] == []


def test_bad_input_is_reported(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _md(WATER, tmp_path, "--ensemble", "nvx")
    assert exc.value.code == 2 and "'nvx'" in capsys.readouterr().err
    missing = tmp_path / "nowhere.xyz"
    assert _md(missing, tmp_path) == 2
    assert f"{missing}: no such structure" in capsys.readouterr().err
    assert main(["md", str(tmp_path / "no.dp"), str(WATER)]) == 2
    assert "no.dp: no such model" in capsys.readouterr().err


def test_npt_without_a_box_is_refused(tmp_path, capsys):
    atoms = system_to_atoms(read_npy_system(WATER), 0)[:3]
    atoms.pbc, atoms.cell = False, None
    ase.io.write(tmp_path / "h2o.xyz", atoms)
    assert _md(tmp_path / "h2o.xyz", tmp_path, "--ensemble", "npt") == 2
    assert "needs a periodic box" in capsys.readouterr().err


@pytest.mark.slow
def test_nve_drift_over_one_picosecond(tmp_path):
    """2,000 steps of 0.5 fs in float64 on the bundled 192-atom water (data_0, frame 0, 300 K)
    with examples/water_md/model.dp: the mean total energy of the last 100 fs is within 1e-4
    eV/atom of the first 100 fs' (3.8e-5 seen; largest excursion 1.2e-4). About 3 minutes."""
    model = ROOT / "examples" / "water_md" / "model.dp"
    options = ["--steps", "2000", "--traj-every", "0", "--log-every", "10"]
    assert main(["md", str(model), str(WATER), "--output-dir", str(tmp_path), *options]) == 0
    total = read_thermo(tmp_path / "thermo.log")["total_eV"]
    k = len(total) // 10
    drift = abs(total[-k:].mean() - total[:k].mean()) / 192
    print(f"NVE 1 ps: drift {drift:.3e} eV/atom, largest |E - E_0| "
          f"{np.abs(total - total[0]).max() / 192:.3e} eV/atom")  # fmt: skip
    assert drift < 1e-4
    assert np.abs(total - total[0]).max() / 192 < 5e-4
