"""Tests for dpa2_jax/data/ase_io.py."""

import pathlib

import ase
import ase.io
import numpy as np
import pytest
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import voigt_6_to_full_3x3_stress

from dpa2_jax.data import atoms_to_system, read_ase, read_npy_system, system_to_atoms
from dpa2_jax.errors import DataError

SYSTEMS = pathlib.Path(__file__).parents[1] / "systems"


def make_frames(n=3, pbc=True, stress=True):
    rng = np.random.default_rng(1)
    frames = []
    for i in range(n):
        cell = np.diag([5.0, 6.0, 7.0]) + 0.1 * i * np.eye(3)[::-1]
        atoms = ase.Atoms(
            "OH2", positions=rng.uniform(0, 4, (3, 3)), cell=cell if pbc else None, pbc=pbc
        )
        results = {"energy": -10.0 - i, "forces": rng.normal(size=(3, 3))}
        if stress:
            results["stress"] = rng.normal(size=6) * 1e-2  # Voigt, eV/A^3
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    return frames


def test_extxyz_labels_and_virial(tmp_path):
    frames = make_frames()
    file = tmp_path / "f.extxyz"
    ase.io.write(file, frames, format="extxyz")
    s = read_ase(file)
    assert (s.nframes, s.natoms, s.type_map, s.pbc) == (3, 3, ("H", "O"), True)
    assert s.path == str(file)
    np.testing.assert_array_equal(s.atom_types, [1, 0, 0])
    for i, atoms in enumerate(frames):
        # extxyz stores 8 decimals
        np.testing.assert_allclose(s.coords[i], atoms.positions, atol=1e-8)
        np.testing.assert_allclose(s.cells[i], atoms.cell.array, atol=1e-8)
        np.testing.assert_allclose(s.energies[i], atoms.get_potential_energy(), atol=1e-8)
        np.testing.assert_allclose(s.forces[i], atoms.get_forces(), atol=1e-8)
        volume = abs(np.linalg.det(atoms.cell.array))
        expected = -voigt_6_to_full_3x3_stress(atoms.get_stress()) * volume
        np.testing.assert_allclose(s.virials[i], expected, rtol=1e-6, atol=1e-8)
    assert s.hessians is None
    assert read_ase(file, index=1).nframes == 1
    assert read_ase(file, type_map=["H", "C", "N", "O"]).atom_types.tolist() == [3, 0, 0]


def test_virial_sign_is_minus_strain_derivative():
    """DeePMD's virial is -dE/d(strain); pinned with finite differences of an LJ energy."""
    atoms = ase.Atoms(
        "Ar4",
        positions=[[0, 0, 0], [1.9, 0.2, 0], [0.1, 2.1, 0.3], [0.2, 0.1, 2.2]],
        cell=np.diag([4.0, 4.2, 4.4]),
        pbc=True,
    )
    atoms.calc = LennardJones(sigma=1.8, epsilon=0.1, rc=3.0, smooth=True)
    atoms.get_stress()  # readers take stored results only; they never run a calculator
    virial = atoms_to_system(atoms).virials[0]

    def energy(strain):
        a = atoms.copy()
        a.calc = atoms.calc
        a.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
        return a.get_potential_energy()

    h, fd = 1e-6, np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            e = np.zeros((3, 3))
            e[i, j] = e[j, i] = h / 2 if i != j else h
            fd[i, j] = (energy(e) - energy(-e)) / (2 * h)
    assert np.abs(virial).max() > 1e-3
    np.testing.assert_allclose(virial, -fd, atol=1e-6)


def test_stress_3x3_equals_voigt():
    frames = make_frames(1)
    full = frames[0].copy()
    full.calc = SinglePointCalculator(full, stress=frames[0].get_stress(voigt=False))
    np.testing.assert_allclose(atoms_to_system(full).virials, atoms_to_system(frames).virials)


def test_info_and_arrays_without_calculator():
    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]])
    atoms.info["energy"] = -1.5
    atoms.info["virial"] = np.arange(9.0).reshape(3, 3)
    atoms.arrays["forces"] = np.ones((2, 3))
    s = atoms_to_system(atoms)
    assert s.energies.tolist() == [-1.5] and s.cells is None
    np.testing.assert_array_equal(s.forces[0], np.ones((2, 3)))
    np.testing.assert_array_equal(s.virials[0], np.arange(9.0).reshape(3, 3))


@pytest.mark.parametrize(
    "folder", ["water_virial_384", "cho_molecules/C4H3O1", "chno_molecules/H8C4N2O"]
)
def test_npy_atoms_round_trip(tmp_path, folder):
    ref = read_npy_system(SYSTEMS / folder).select_frames([0, 1, 2])
    frames = [system_to_atoms(ref, i) for i in range(3)]
    direct = atoms_to_system(frames, type_map=ref.type_map)
    file = tmp_path / "f.extxyz"
    ase.io.write(file, frames, format="extxyz")
    via_file = read_ase(file, type_map=ref.type_map)
    for s, rtol in ((direct, 1e-12), (via_file, 1e-7)):  # extxyz keeps 8 decimals
        assert s.type_map == ref.type_map and s.pbc == ref.pbc
        np.testing.assert_array_equal(s.atom_types, ref.atom_types)
        for name in ("coords", "cells", "energies", "forces", "virials"):
            a, b = getattr(ref, name), getattr(s, name)
            assert (a is None) == (b is None), name
            if a is not None:
                atol = rtol * (1 + np.abs(a).max())
                np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, err_msg=name)


def test_different_symbols(tmp_path):
    frames = make_frames(2)
    frames.append(
        ase.Atoms(
            "HOH",
            positions=np.zeros((3, 3)) + [[0, 0, 0], [1, 0, 0], [0, 1, 0]],
            cell=np.eye(3) * 5,
            pbc=True,
        )
    )
    file = tmp_path / "f.extxyz"
    ase.io.write(file, frames, format="extxyz")
    with pytest.raises(DataError, match=r"f\.extxyz: frame 2 has symbols"):
        read_ase(file)


def test_mixed_pbc(tmp_path):
    frames = make_frames(2, stress=False)
    frames[1].pbc = [True, True, False]
    with pytest.raises(DataError, match=r"frame 1 has pbc=\[True, True, False\]; mixed"):
        atoms_to_system(frames, path="x.xyz")
    frames[1].pbc = False
    with pytest.raises(DataError, match="frame 1 has pbc=.* but frame 0"):
        atoms_to_system(frames)


def test_partial_labels():
    frames = make_frames(3)
    frames[2].calc = None
    with pytest.raises(
        DataError,
        match=r"x\.xyz: energies given in some frames but missing "
        "in frame 2",
    ):
        atoms_to_system(frames, path="x.xyz")


def test_stress_without_pbc():
    atoms = make_frames(1, pbc=False, stress=False)[0]
    atoms.calc = SinglePointCalculator(atoms, stress=np.zeros(6))
    with pytest.raises(DataError, match="x.xyz: frame 0: stress given for a non-periodic"):
        atoms_to_system(atoms, path="x.xyz")


def test_validation_shared(tmp_path):
    frames = make_frames(2)
    for atoms in frames:
        atoms.calc = None
    frames[1].positions[0, 0] = np.nan
    with pytest.raises(DataError, match="coords: non-finite value nan in frame 1"):
        atoms_to_system(frames)
    frames[1].positions[0, 0] = 0.0
    frames[1].set_cell(np.zeros((3, 3)))
    with pytest.raises(DataError, match="cells: cell of frame 1 is singular"):
        atoms_to_system(frames)


def test_unreadable_file(tmp_path):
    with pytest.raises(DataError, match=r"missing\.extxyz: ase\.io\.read failed"):
        read_ase(tmp_path / "missing.extxyz")
    bad = tmp_path / "bad.extxyz"
    bad.write_text("3\nnot a comment\nO 0 0\n")
    with pytest.raises(DataError, match=r"bad\.extxyz: ase\.io\.read failed"):
        read_ase(bad)


def test_system_to_atoms_errors():
    s = read_npy_system(SYSTEMS / "water/data_0")
    with pytest.raises(DataError, match="frame 80 out of range"):
        system_to_atoms(s, 80)
    atoms = system_to_atoms(s, -1)
    assert atoms.get_chemical_formula() == "H128O64"
