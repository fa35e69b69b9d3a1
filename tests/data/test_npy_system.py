"""Tests for dpa2_jax/data/npy_system.py and dpa2_jax/data/system.py."""

import logging
import pathlib
import shutil

import numpy as np
import pytest

from dpa2_jax.data import System, find_systems, read_npy_system, select_frames
from dpa2_jax.errors import DataError

SYSTEMS = pathlib.Path(__file__).parents[1] / "systems"

# folder, nframes, natoms, type_map, periodic, has virial, has hessian (README table)
BUNDLED = [
    ("water/data_0", 80, 192, ("O", "H"), True, False, False),
    ("water/data_1", 160, 192, ("O", "H"), True, False, False),
    ("water/data_2", 80, 192, ("O", "H"), True, False, False),
    ("water/data_3", 80, 192, ("O", "H"), True, False, False),
    ("water_virial_384", 30, 384, ("O", "H"), True, True, False),
    ("cho_molecules/C1H4O2", 1562, 7, ("C", "H", "O"), False, False, False),
    ("cho_molecules/C3H3O4", 485, 10, ("C", "H", "O"), False, False, False),
    ("cho_molecules/C4H3O1", 15, 8, ("C", "H", "O"), False, False, False),
    ("chno_molecules/H10C5N2O", 9, 18, ("C", "H", "N", "O"), True, False, True),
    ("chno_molecules/H8C4N2O", 11, 15, ("C", "H", "N", "O"), True, False, True),
    ("gete", 36, 216, ("Ge", "Te"), True, False, False),
]


def write_system(
    root,
    nframes=2,
    natoms=3,
    types=(0, 1, 1),
    type_map=("O", "H"),
    sets=1,
    pbc=True,
    with_virial=False,
    **overrides,
):
    """Writes a small valid npy system to `root`; `overrides` replace set.000 arrays."""
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "type.raw").write_text("\n".join(str(t) for t in types) + "\n")
    if type_map is not None:
        (root / "type_map.raw").write_text("\n".join(type_map) + "\n")
    if not pbc:
        (root / "nopbc").write_text("")
    rng = np.random.default_rng(0)
    for k in range(sets):
        d = root / f"set.{k:03d}"
        d.mkdir()
        arrays = {
            "coord": rng.uniform(0, 5, (nframes, natoms * 3)),
            "energy": rng.normal(size=nframes),
            "force": rng.normal(size=(nframes, natoms * 3)),
        }
        if pbc:
            arrays["box"] = np.tile(np.diag([6.0, 7.0, 8.0]).ravel(), (nframes, 1))
        if with_virial:
            arrays["virial"] = rng.normal(size=(nframes, 9))
        if k == 0:
            arrays.update(overrides)
        for name, value in arrays.items():
            if value is not None:
                np.save(d / f"{name}.npy", value)
    return root


@pytest.mark.parametrize("folder,nframes,natoms,type_map,pbc,virial,hessian", BUNDLED)
def test_bundled_systems(folder, nframes, natoms, type_map, pbc, virial, hessian):
    s = read_npy_system(SYSTEMS / folder)
    assert (s.nframes, s.natoms, s.type_map, s.pbc) == (nframes, natoms, type_map, pbc)
    assert s.path == str(SYSTEMS / folder)
    assert s.atom_types.dtype == np.int32 and s.atom_types.shape == (natoms,)
    assert s.coords.shape == (nframes, natoms, 3) and s.coords.dtype == np.float64
    assert s.energies.shape == (nframes,) and s.energies.dtype == np.float64
    assert s.forces.shape == (nframes, natoms, 3) and s.forces.dtype == np.float64
    assert (s.cells is not None) == pbc
    if pbc:
        assert s.cells.shape == (nframes, 3, 3) and s.cells.dtype == np.float64
    assert (s.virials is not None) == virial
    if virial:
        assert s.virials.shape == (nframes, 3, 3)
    assert (s.hessians is not None) == hessian
    if hessian:
        assert s.hessians.shape == (nframes, 3 * natoms, 3 * natoms)


def test_values_match_files():
    s = read_npy_system(SYSTEMS / "water/data_1")  # two sets, concatenated in order
    sets = [SYSTEMS / "water/data_1" / f"set.00{k}" for k in (0, 1)]
    coord = np.concatenate([np.load(d / "coord.npy") for d in sets])
    box = np.concatenate([np.load(d / "box.npy") for d in sets])
    np.testing.assert_array_equal(s.coords.reshape(160, -1), coord.astype(np.float64))
    np.testing.assert_array_equal(s.cells.reshape(160, 9), box.astype(np.float64))
    types = np.loadtxt(SYSTEMS / "water/data_1/type.raw", dtype=int)
    np.testing.assert_array_equal(s.atom_types, types)


def test_find_systems(tmp_path):
    found = find_systems(SYSTEMS)
    mixed = str(SYSTEMS / "water_mixed_type")  # tests/data/test_mixed_type.py reads it
    assert found == sorted([*(str(SYSTEMS / b[0]) for b in BUNDLED), mixed])
    assert find_systems(SYSTEMS / "water/data_0") == [str(SYSTEMS / "water/data_0")]
    with pytest.raises(DataError, match="no DeePMD system"):
        find_systems(tmp_path)
    with pytest.raises(DataError, match="not a directory"):
        find_systems(tmp_path / "absent")


def test_find_systems_warns_about_a_folder_without_type_raw(tmp_path, caplog):
    write_system(tmp_path / "a")
    write_system(tmp_path / "nested" / "b")
    (tmp_path / "nested" / "b" / "type.raw").unlink()
    (tmp_path / "notes").mkdir()  # neither a system nor like one: no warning
    with caplog.at_level(logging.WARNING, logger="dpa2_jax.data"):
        assert find_systems(tmp_path) == [str(tmp_path / "a")]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'nested' / 'b'}: no type.raw, so it is not read as a DeePMD system; skipped"
    ]
    assert caplog.records[0].levelno == logging.WARNING


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64_input(tmp_path, dtype):
    src = SYSTEMS / "chno_molecules/H8C4N2O"  # stored as float64
    dst = shutil.copytree(src, tmp_path / "sys")
    for f in dst.glob("set.*/*.npy"):
        np.save(f, np.load(f).astype(dtype))
    ref, new = read_npy_system(src), read_npy_system(dst)
    assert new.coords.dtype == np.float64
    for name in ("coords", "cells", "energies", "forces", "hessians"):
        a, b = getattr(ref, name), getattr(new, name)
        np.testing.assert_allclose(b, a, rtol=2e-7, atol=2e-7 * np.abs(a).max())
        if dtype == np.float64:
            np.testing.assert_array_equal(b, a)


def test_nopbc_ignores_box(tmp_path):
    root = write_system(tmp_path / "s", pbc=False, box=np.zeros((2, 9)))  # singular, ignored
    assert read_npy_system(root).cells is None


def test_map_into_model_type_map():
    ref = read_npy_system(SYSTEMS / "water/data_0")
    s = read_npy_system(SYSTEMS / "water/data_0", type_map=["H", "C", "N", "O"])
    assert s.type_map == ("H", "C", "N", "O")
    np.testing.assert_array_equal(s.atom_types, np.where(ref.atom_types == 0, 3, 0))
    np.testing.assert_array_equal(s.coords, ref.coords)


def test_missing_type_map_raw(tmp_path):
    root = write_system(tmp_path / "s", type_map=None)
    with pytest.raises(DataError, match="type_map.raw: missing"):
        read_npy_system(root)
    with pytest.warns(UserWarning, match="no type_map.raw"):
        s = read_npy_system(root, type_map=["O", "H", "C"])
    assert s.type_map == ("O", "H", "C")
    np.testing.assert_array_equal(s.atom_types, [0, 1, 1])


def test_single_frame_flat_arrays(tmp_path):
    root = write_system(
        tmp_path / "s",
        nframes=1,
        coord=np.ones(9),
        energy=np.ones(1),
        force=np.ones(9),
        box=np.eye(3).ravel() * 5,
    )
    s = read_npy_system(root)
    assert s.coords.shape == (1, 3, 3) and s.cells.shape == (1, 3, 3)


def test_select_frames():
    s = read_npy_system(SYSTEMS / "water/data_1")
    sub = select_frames(s, [5, 2])
    np.testing.assert_array_equal(sub.coords, s.coords[[5, 2]])
    np.testing.assert_array_equal(sub.energies, s.energies[[5, 2]])
    assert s.select_frames(3).nframes == 1
    assert select_frames(s, slice(0, 10, 2)).nframes == 5
    assert select_frames(s, s.energies < np.median(s.energies)).nframes == 80
    with pytest.raises(DataError, match="cannot select frames"):
        select_frames(s, [160])
    with pytest.raises(DataError, match="empty"):
        select_frames(s, [])


def test_system_validates_on_construction():
    with pytest.raises(DataError, match="mem: forces: expected shape"):
        System("mem", ("H",), np.zeros(2, int), np.zeros((1, 2, 3)), forces=np.zeros((1, 3, 3)))
    with pytest.raises(DataError, match="mem: atom_types must be integers"):
        System("mem", ("H",), np.zeros(2), np.zeros((1, 2, 3)))


# ---- bad input: every message names the file (or set) and the problem ----------------------


def test_missing_type_raw(tmp_path):
    root = write_system(tmp_path / "s")
    (root / "type.raw").unlink()
    with pytest.raises(DataError, match=r"type\.raw: missing"):
        read_npy_system(root)


def test_bad_type_raw(tmp_path):
    root = write_system(tmp_path / "s")
    (root / "type.raw").write_text("0 1 x\n")
    with pytest.raises(DataError, match=r"type\.raw: expected integer"):
        read_npy_system(root)


def test_no_set_folder(tmp_path):
    root = write_system(tmp_path / "s")
    shutil.rmtree(root / "set.000")
    with pytest.raises(DataError, match=r"no set\.\* folder"):
        read_npy_system(root)


def test_empty_set_folder(tmp_path):
    root = write_system(tmp_path / "s", sets=2)
    shutil.rmtree(root / "set.001")
    (root / "set.001").mkdir()
    with pytest.raises(DataError, match=r"set\.001: no coord\.npy"):
        read_npy_system(root)


def test_missing_box_without_nopbc(tmp_path):
    root = write_system(tmp_path / "s", box=None)
    with pytest.raises(DataError, match=r"set\.000: no box\.npy.*nopbc"):
        read_npy_system(root)


@pytest.mark.parametrize(
    "name,shape",
    [
        ("force", (3, 9)),
        ("energy", (3,)),
        ("box", (3, 9)),
        ("virial", (1, 9)),
    ],
)
def test_frame_count_mismatch(tmp_path, name, shape):
    root = write_system(tmp_path / "s", with_virial=True, **{name: np.ones(shape)})
    with pytest.raises(
        DataError,
        match=rf"set\.000/{name}\.npy: {shape[0]} frames, but "
        r"coord\.npy in the same set has 2",
    ):
        read_npy_system(root)


@pytest.mark.parametrize("name", ["coord", "force"])
def test_wrong_atom_count(tmp_path, name):
    root = write_system(tmp_path / "s", **{name: np.ones((2, 12))})
    with pytest.raises(
        DataError,
        match=rf"{name}\.npy: expected 9 values per frame "
        r"\(natoms = 3 from type\.raw\), got 12",
    ):
        read_npy_system(root)


@pytest.mark.parametrize(
    "name,shape",
    [
        ("coord", (2, 9)),
        ("box", (2, 9)),
        ("energy", (2,)),
        ("force", (2, 9)),
        ("virial", (2, 9)),
    ],
)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite(tmp_path, name, shape, bad):
    value = np.eye(3).ravel() * 5 if name == "box" else np.zeros(9)
    array = np.broadcast_to(value[: shape[-1]], shape).copy() if len(shape) == 2 else np.zeros(2)
    array.reshape(2, -1)[1, -1] = bad
    root = write_system(tmp_path / "s", with_virial=True, **{name: array})
    with pytest.raises(DataError, match=rf"{name}\.npy: non-finite value .* in frame 1"):
        read_npy_system(root)


def test_type_index_out_of_range(tmp_path):
    root = write_system(tmp_path / "s", types=(0, 1, 2))
    with pytest.raises(
        DataError,
        match=r"type\.raw: type index 2 of atom 2 is out of range "
        r"for type map \['O', 'H'\]",
    ):
        read_npy_system(root)


def test_element_absent_from_model_type_map(tmp_path):
    root = write_system(tmp_path / "s")
    with pytest.raises(
        DataError,
        match=r"type_map\.raw: element 'O' is not in the model "
        r"type map \['H', 'C'\]",
    ):
        read_npy_system(root, type_map=["H", "C"])


def test_singular_cell(tmp_path):
    box = np.tile(np.eye(3).ravel() * 5, (2, 1))
    box[1] = [1, 0, 0, 2, 0, 0, 0, 0, 3]  # two parallel rows
    root = write_system(tmp_path / "s", box=box)
    with pytest.raises(DataError, match=r"box\.npy: cell of frame 1 is singular"):
        read_npy_system(root)


def test_unreadable_npy(tmp_path):
    root = write_system(tmp_path / "s")
    (root / "set.000/energy.npy").write_bytes(b"not a numpy file")
    with pytest.raises(DataError, match=r"energy\.npy: cannot read \.npy file"):
        read_npy_system(root)
    np.save(root / "set.000/energy.npy", np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"energy\.npy: expected a real numeric array"):
        read_npy_system(root)


def test_label_in_some_sets_only(tmp_path):
    root = write_system(tmp_path / "s", sets=2, with_virial=True)
    (root / "set.001/virial.npy").unlink()
    with pytest.raises(
        DataError,
        match=r"virial\.npy is present in some sets but missing in "
        r"\[.*set\.001'\]",
    ):
        read_npy_system(root)
