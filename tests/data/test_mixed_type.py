"""Tests for DeePMD's mixed-type npy layout (set.*/real_atom_types.npy) in npy_system.py."""

import pathlib

import numpy as np
import pytest

from dpa2_jax.data import read_npy_system, read_npy_systems
from dpa2_jax.data.dataset import read_systems
from dpa2_jax.errors import DataError

SYSTEMS = pathlib.Path(__file__).parents[1] / "systems"
MIXED_WATER = SYSTEMS / "water_mixed_type"


def write_mixed(root, real_types, type_map=("O", "H"), hessian=False, sets=1, seed=0):
    """Writes a mixed-type system; `real_types` [nframes, natoms] is split evenly into sets."""
    root = pathlib.Path(root)
    real_types = np.asarray(real_types)
    nframes, natoms = real_types.shape
    root.mkdir(parents=True, exist_ok=True)
    (root / "type.raw").write_text("0\n" * natoms)
    if type_map is not None:
        (root / "type_map.raw").write_text("\n".join(type_map) + "\n")
    rng = np.random.default_rng(seed)
    arrays = {
        "coord": rng.uniform(0, 5, (nframes, natoms * 3)),
        "box": np.tile(np.diag([6.0, 7.0, 8.0]).ravel(), (nframes, 1)),
        "energy": rng.normal(size=nframes),
        "force": rng.normal(size=(nframes, natoms * 3)),
        "virial": rng.normal(size=(nframes, 9)),
        "real_atom_types": real_types,
    }
    if hessian:
        arrays["hessian"] = rng.normal(size=(nframes, (3 * natoms) ** 2))
    for k, frames in enumerate(np.array_split(np.arange(nframes), sets)):
        d = root / f"set.{k:03d}"
        d.mkdir()
        for name, value in arrays.items():
            np.save(d / f"{name}.npy", value[frames])
    return root, arrays


def test_mixed_water_matches_real_atom_types():
    systems = read_npy_systems(MIXED_WATER)
    d = MIXED_WATER / "set.000"
    real = np.load(d / "real_atom_types.npy")  # [nframes, natoms]
    coord, force = np.load(d / "coord.npy"), np.load(d / "force.npy")
    energy, box = np.load(d / "energy.npy"), np.load(d / "box.npy")
    assert sum(s.nframes for s in systems) == len(real) == 4
    seen = []
    for k, s in enumerate(systems):
        assert s.path == f"{MIXED_WATER}[composition {k}]"
        assert s.type_map == ("O", "H")
        # the frames whose real types (virtual atoms dropped) equal this system's atom types
        frames = [f for f, row in enumerate(real) if np.array_equal(row[row >= 0], s.atom_types)]
        assert len(frames) == s.nframes
        seen += frames
        for i, f in enumerate(frames):
            keep = real[f] >= 0
            np.testing.assert_array_equal(s.coords[i], coord[f].reshape(-1, 3)[keep])
            np.testing.assert_array_equal(s.forces[i], force[f].reshape(-1, 3)[keep])
            np.testing.assert_array_equal(s.cells[i], box[f].reshape(3, 3))
            assert s.energies[i] == energy[f]
        assert s.virials is None and s.hessians is None
    assert sorted(seen) == list(range(len(real)))
    # this set has 64 O and 128 H in every frame
    assert np.bincount(systems[0].atom_types).tolist() == [64, 128]


def test_mixed_water_with_model_type_map_and_read_systems():
    (s,) = read_npy_systems(MIXED_WATER, type_map=["H", "C", "O"])
    (ref,) = read_npy_systems(MIXED_WATER)
    assert s.type_map == ("H", "C", "O")
    np.testing.assert_array_equal(s.atom_types, np.where(ref.atom_types == 0, 2, 0))
    found = read_systems([MIXED_WATER])
    assert [x.path for x in found] == [ref.path]
    np.testing.assert_array_equal(found[0].coords, ref.coords)


def test_read_npy_system_points_to_read_npy_systems():
    with pytest.raises(DataError, match="read_npy_systems") as err:
        read_npy_system(MIXED_WATER)
    assert "real_atom_types.npy" in str(err.value)


def test_standard_folder_gives_one_system():
    (s,) = read_npy_systems(SYSTEMS / "water/data_0")
    ref = read_npy_system(SYSTEMS / "water/data_0")
    assert s.path == ref.path
    np.testing.assert_array_equal(s.atom_types, ref.atom_types)
    np.testing.assert_array_equal(s.coords, ref.coords)


def test_synthetic_split_drops_virtual_atoms(tmp_path):
    # frames 0, 2: O H H; frame 3: O H H with the virtual atom elsewhere; frame 1: H O -1 H
    real = np.array([[0, 1, 1, -1], [1, 0, -1, 1], [0, 1, 1, -1], [0, -1, 1, 1]])
    root, arrays = write_mixed(tmp_path / "mixed", real, hessian=True, sets=2)
    systems = read_npy_systems(root)
    assert [s.path for s in systems] == [f"{root}[composition 0]", f"{root}[composition 1]"]
    assert [s.atom_types.tolist() for s in systems] == [[0, 1, 1], [1, 0, 1]]
    assert [s.nframes for s in systems] == [3, 1]
    for s, frames in zip(systems, ([0, 2, 3], [1])):
        assert s.natoms == 3
        for i, f in enumerate(frames):
            keep = real[f] >= 0
            dof = np.repeat(keep, 3)
            np.testing.assert_array_equal(s.coords[i], arrays["coord"][f].reshape(-1, 3)[keep])
            np.testing.assert_array_equal(s.forces[i], arrays["force"][f].reshape(-1, 3)[keep])
            hess = arrays["hessian"][f].reshape(12, 12)[dof][:, dof]
            np.testing.assert_array_equal(s.hessians[i], hess)
            np.testing.assert_array_equal(s.virials[i], arrays["virial"][f].reshape(3, 3))
            assert s.energies[i] == arrays["energy"][f]
            np.testing.assert_array_equal(s.cells[i], np.diag([6.0, 7.0, 8.0]))


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((2, 3), np.int64), r"expected shape \(2, 4\)"),  # one atom short
        (np.zeros((3, 4), np.int64), r"expected shape \(2, 4\)"),  # one frame too many
        (np.array([[0, 1, 1, 2], [0, 1, 1, -1]]), "type index 2 of atom 3 in frame 0"),
        (np.array([[0, 1, 1, -2], [0, 1, 1, -1]]), "type index -2 of atom 3 in frame 0"),
        (np.array([[0, 1, 1, 0.5], [0, 1, 1, -1]]), "integer"),
        (np.array([[-1, -1, -1, -1], [0, 1, 1, -1]]), "only virtual atoms"),
    ],
)
def test_bad_real_atom_types_name_the_file(tmp_path, bad, match):
    root, _ = write_mixed(tmp_path / "mixed", [[0, 1, 1, -1], [0, 1, 1, -1]])
    file = root / "set.000" / "real_atom_types.npy"
    np.save(file, bad)
    with pytest.raises(DataError, match=match) as err:
        read_npy_systems(root)
    assert str(file) in str(err.value)


def test_mixed_and_standard_sets_in_one_folder(tmp_path):
    root, _ = write_mixed(tmp_path / "mixed", [[0, 1, 1, -1], [0, 1, 1, -1]], sets=2)
    (root / "set.001" / "real_atom_types.npy").unlink()
    with pytest.raises(DataError, match="same layout"):
        read_npy_systems(root)


def test_mixed_without_type_map(tmp_path):
    root, _ = write_mixed(tmp_path / "mixed", [[0, 1, 1, -1], [1, 0, 2, 1]], type_map=None)
    with pytest.raises(DataError, match="type_map.raw"):
        read_npy_systems(root)
    with pytest.warns(UserWarning, match="real_atom_types.npy"):
        systems = read_npy_systems(root, type_map=["O", "H", "C"])
    assert [s.atom_types.tolist() for s in systems] == [[0, 1, 1], [1, 0, 2, 1]]
    with pytest.warns(UserWarning), pytest.raises(DataError, match="type index 2 of atom 2"):
        read_npy_systems(root, type_map=["O", "H"])  # real_atom_types index the model map
