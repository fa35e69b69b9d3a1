"""fparam.npy / aparam.npy in DeePMD npy systems (data/npy_system.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dpa2_jax.data.npy_system import read_npy_system, read_npy_systems
from dpa2_jax.errors import DataError

NATOMS = 3


def _system(root, nframes=(2, 1), fparam=2, aparam=3, mixed=False):
    root.mkdir()
    (root / "type.raw").write_text("0 1 1\n")
    (root / "type_map.raw").write_text("O\nH\n")
    (root / "nopbc").write_text("")
    rng = np.random.default_rng(0)
    for k, n in enumerate(nframes):
        d = root / f"set.{k:03d}"
        d.mkdir()
        np.save(d / "coord.npy", rng.standard_normal((n, 3 * NATOMS)))
        if fparam:
            np.save(d / "fparam.npy", rng.standard_normal((n, fparam)))
        if aparam:
            np.save(d / "aparam.npy", rng.standard_normal((n, NATOMS * aparam)))
        if mixed:
            np.save(d / "real_atom_types.npy", np.tile([[1, -1, 0]], (n, 1)))
    return root


def test_reads_fparam_and_aparam(tmp_path):
    root = _system(tmp_path / "sys")
    system = read_npy_system(root)
    assert system.fparams.shape == (3, 2) and system.aparams.shape == (3, NATOMS, 3)
    first = np.load(root / "set.000" / "aparam.npy")
    np.testing.assert_array_equal(system.aparams[:2], first.reshape(2, NATOMS, 3))
    np.testing.assert_array_equal(system.fparams[2], np.load(root / "set.001" / "fparam.npy")[0])
    assert system.select_frames([2]).fparams.shape == (1, 2)


def test_absent_parameters_are_none(tmp_path):
    system = read_npy_system(_system(tmp_path / "sys", fparam=0, aparam=0))
    assert system.fparams is None and system.aparams is None


def test_aparam_width_must_be_a_multiple_of_natoms(tmp_path):
    root = _system(tmp_path / "sys", aparam=0)
    np.save(root / "set.000" / "aparam.npy", np.zeros((2, 4)))
    np.save(root / "set.001" / "aparam.npy", np.zeros((1, 4)))
    with pytest.raises(DataError, match=r"aparam.npy: expected natoms \* nap values per frame"):
        read_npy_system(root)


def test_fparam_frames_must_match_coord(tmp_path):
    root = _system(tmp_path / "sys")
    np.save(root / "set.000" / "fparam.npy", np.zeros((3, 2)))
    with pytest.raises(DataError, match="fparam.npy: 3 frames, but coord.npy"):
        read_npy_system(root)


def test_fparam_width_must_agree_between_sets(tmp_path):
    root = _system(tmp_path / "sys")
    np.save(root / "set.001" / "fparam.npy", np.zeros((1, 4)))
    with pytest.raises(DataError, match="fparam.npy has different widths"):
        read_npy_system(root)


def test_fparam_in_some_sets_only(tmp_path):
    root = _system(tmp_path / "sys")
    (root / "set.001" / "fparam.npy").unlink()
    with pytest.raises(DataError, match="fparam.npy is present in some sets"):
        read_npy_system(root)


def test_mixed_type_drops_virtual_atoms_from_aparam(tmp_path):
    root = _system(tmp_path / "sys", mixed=True)
    (system,) = read_npy_systems(root)
    aparam = np.concatenate(
        [np.load(root / f"set.{k:03d}" / "aparam.npy") for k in range(2)]
    ).reshape(3, NATOMS, 3)
    np.testing.assert_array_equal(system.aparams, aparam[:, [0, 2]])
    assert system.fparams.shape == (3, 2)
