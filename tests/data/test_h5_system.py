"""DeePMD-kit HDF5 systems (data/h5_path.py): read whole and streamed as the npy folder they were
written from, found in a file of several systems, trained on by `dpa2-jax train`, and bad input
named by file, group and dataset."""

import json

import h5py
import numpy as np
import pytest

import dpa2_jax

from dpa2_jax.cli.main import main
from dpa2_jax.data.dataset import open_systems, read_systems
from dpa2_jax.data.npy_stream import NpyFrames, open_npy_system
from dpa2_jax.data.npy_system import find_systems, read_npy_system
from dpa2_jax.errors import DataError
from tests.conftest import SYSTEMS, plumbing_model

WATER = SYSTEMS / "water" / "data_0"
FIELDS = ("coords", "cells", "energies", "forces", "virials")


def _write_group(group, system, sets=(0, 3, 5), nopbc=False):
    """``system``'s frames in dpdata's deepmd/hdf5 layout (its ``formats/deepmd/hdf5.py`` dump):
    set.00k holds frames [sets[k], sets[k+1]); virials made up (not stored in the npy folder) so that they are read too."""
    group.create_dataset("type.raw", data=system.atom_types)
    group.create_dataset("type_map.raw", data=np.array(system.type_map, dtype="S"))
    if nopbc:
        group.create_dataset("nopbc", data=True)
    nf = sets[-1]
    virials = np.arange(nf * 9, dtype=np.float64).reshape(nf, 9) / 7.0
    for k, (start, stop) in enumerate(zip(sets[:-1], sets[1:])):
        s = group.create_group(f"set.{k:03d}")
        s.create_dataset("coord.npy", data=system.coords[start:stop].reshape(stop - start, -1))
        if not nopbc:
            s.create_dataset("box.npy", data=system.cells[start:stop].reshape(-1, 9))
        s.create_dataset("energy.npy", data=system.energies[start:stop, None])  # as dpdata
        s.create_dataset("force.npy", data=system.forces[start:stop].reshape(stop - start, -1))
        s.create_dataset("virial.npy", data=virials[start:stop].astype(np.float32))
    return virials.reshape(nf, 3, 3)


@pytest.fixture(scope="module")
def water():
    return read_npy_system(WATER)


@pytest.fixture(scope="module")
def h5file(tmp_path_factory, water):
    """water.h5 with the first 5 frames at the root (two sets) and as group /sys1 (no pbc)."""
    path = tmp_path_factory.mktemp("h5") / "water.h5"
    with h5py.File(path, "w") as f:
        virials = _write_group(f, water)
        _write_group(f.create_group("sys1"), water, nopbc=True)
    return path, virials


def _assert_same_frames(got, want, virials, frames):
    np.testing.assert_array_equal(got.atom_types, want.atom_types)
    assert got.type_map == want.type_map
    for name in FIELDS:
        expected = virials[frames] if name == "virials" else getattr(want, name)[frames]
        np.testing.assert_allclose(getattr(got, name), expected, rtol=1e-6, err_msg=name)


def test_whole_read_equals_the_npy_frames(h5file, water):
    path, virials = h5file
    system = read_npy_system(path)
    assert system.nframes == 5 and system.path == str(path)
    _assert_same_frames(system, water, virials, np.arange(5))
    group = read_npy_system(f"{path}#/sys1", ["H", "O"])
    assert group.cells is None and group.path == f"{path}#/sys1" and group.type_map == ("H", "O")
    np.testing.assert_array_equal(group.coords, water.coords[:5])


def test_streamed_frames_equal_the_npy_frames(h5file, water):
    path, virials = h5file
    lazy = open_npy_system(path)
    assert (lazy.nframes, lazy.natoms, lazy.pbc, lazy.frames_read) == (5, water.natoms, True, 0)
    assert lazy.labels == {*FIELDS}
    idx = [4, 1, 3, 1]  # across the two sets, unsorted, one repeated
    _assert_same_frames(lazy.select_frames(idx), water, virials, np.array(idx))
    assert lazy.frames_read == 4
    [streamed] = open_systems([f"{path}#/sys1"], stream_frames=0)
    assert isinstance(streamed, NpyFrames) and not streamed.pbc and streamed.path == f"{path}#/sys1"


def test_a_file_lists_every_system_group_in_it(h5file):
    path, _ = h5file
    assert find_systems(path) == [str(path), f"{path}#/sys1"]  # as DeePMD-kit's expand_sys_str
    assert [s.nframes for s in read_systems([path])] == [5, 5]
    assert [s.path for s in read_systems([f"{path}#sys1"])] == [f"{path}#/sys1"]


@pytest.mark.parametrize(
    "where, edit, message",
    [
        ("#/nothere", None, "group /nothere does not exist"),
        ("#/sys1/set.000", None, "no DeePMD system in it"),
        ("", lambda f: f["sys1/set.001"].pop("force.npy"),
         "force.npy is present in some sets but missing in ['{p}#/sys1/set.001']"),
        ("", lambda f: f["sys1/set.000"].pop("coord.npy"),
         "{p}#/sys1/set.000: no coord.npy"),
        ("", lambda f: f.pop("type_map.raw"), "{p}#/type_map.raw: missing"),
    ],
)  # fmt: skip
def test_bad_input_names_file_group_and_dataset(tmp_path, water, where, edit, message):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        _write_group(f, water)
        _write_group(f.create_group("sys1"), water, nopbc=True)
        if edit is not None:
            edit(f)
    with pytest.raises(DataError) as err:
        read_systems([f"{path}{where}"])
    assert message.format(p=path) in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="no.h5: no such HDF5 file"):
        read_systems([f"{tmp_path}/no.h5#/sys1"])


def test_train_on_an_h5_system(h5file, tmp_path):
    path, _ = h5file
    config = {
        "model": plumbing_model(),
        "learning_rate": {"type": "exp", "decay_steps": 100, "start_lr": 0.005, "stop_lr": 1e-4},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
                 "limit_pref_f": 1, "start_pref_v": 0, "limit_pref_v": 0},
        "training": {
            "training_data": {"systems": ["water.h5#/sys1"], "batch_size": 2},  # relative
            "numb_steps": 2, "seed": 1, "disp_file": "lcurve.out", "disp_freq": 1,
            "save_freq": 2, "max_ckpt_keep": 1,
        },
    }  # fmt: skip
    (path.parent / "input.json").write_text(json.dumps(config))
    assert main(["train", str(path.parent / "input.json"), "--workdir", str(tmp_path / "w")]) == 0
    rows = np.loadtxt(tmp_path / "w" / "lcurve.out", ndmin=2)
    assert rows.shape[0] == 2 and np.all(np.isfinite(rows))


def test_a_whole_read_leaves_the_file_closed(tmp_path, water):
    path = tmp_path / "again.h5"
    with h5py.File(path, "w") as f:
        _write_group(f, water)
    read_systems([path])
    with h5py.File(path, "w") as f:  # h5py refuses to truncate a file that is still open
        _write_group(f, water.select_frames([0, 1, 2]), sets=(0, 3))
    assert read_npy_system(path).nframes == 3


def test_dpa2_jax_test_on_an_h5_file(h5file, water, tiny_dp, tmp_path, capsys):
    path, _ = h5file
    assert main(["test", str(tiny_dp), str(path), "--numb-test", "2",
                 "--detail-file", str(tmp_path / "x")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"# testing system : {path}\n" in out and f"# testing system : {path}#/sys1" in out
    assert "Virial RMSE" in out
    e = np.loadtxt(tmp_path / "x.e.out")  # the root's two frames, then /sys1's
    assert e.shape == (4, 2)
    np.testing.assert_allclose(e[:, 0], np.tile(water.energies[:2], 2), rtol=1e-12)
    first = water.select_frames([0, 1])
    pred = dpa2_jax.load(tiny_dp).evaluate(first.coords, first.cells, first.atom_types)
    np.testing.assert_allclose(e[:2, 1], pred["energy"], rtol=1e-10)
