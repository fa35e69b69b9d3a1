"""DPA2Calculator (md/ase_calculator.py): same numbers as Potential.evaluate, ASE's stress sign,
forces and stress against finite differences, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.stress import voigt_6_to_full_3x3_stress

import dpa2_jax
from dpa2_jax import DPA2Calculator
from dpa2_jax.errors import DataError


@pytest.fixture(scope="module")
def potential(tiny_dp):
    return dpa2_jax.load(tiny_dp)


def test_matches_potential_evaluate(potential, small_cell):
    small_cell.calc = DPA2Calculator(potential)
    ref = potential.evaluate(small_cell.positions, small_cell.cell.array,
                             small_cell.get_chemical_symbols())  # fmt: skip
    assert small_cell.get_potential_energy() == pytest.approx(ref["energy"][0], rel=1e-12)
    assert small_cell.get_potential_energy(force_consistent=True) == pytest.approx(
        ref["energy"][0], rel=1e-12
    )
    np.testing.assert_allclose(small_cell.get_forces(), ref["forces"][0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(small_cell.get_potential_energies(), ref["atom_energy"][0],
                               rtol=1e-12)  # fmt: skip
    assert small_cell.get_potential_energies().sum() == pytest.approx(ref["energy"][0])
    stress = voigt_6_to_full_3x3_stress(small_cell.get_stress())  # eV/A^3, ASE sign
    np.testing.assert_allclose(stress, -ref["virial"][0] / small_cell.get_volume(),
                               rtol=1e-10, atol=1e-14)  # fmt: skip


def test_loads_from_path(tiny_dp, potential, small_cell):
    small_cell.calc = DPA2Calculator(str(tiny_dp))
    energy = small_cell.get_potential_energy()
    small_cell.calc = DPA2Calculator(potential)
    assert small_cell.get_potential_energy() == energy


def test_forces_and_stress_match_finite_differences(potential, small_cell):
    small_cell.calc = DPA2Calculator(potential)
    forces = small_cell.get_forces()
    stress = small_cell.get_stress()
    np.testing.assert_allclose(forces, calculate_numerical_forces(small_cell, eps=1e-5),
                               rtol=1e-6, atol=1e-7)  # fmt: skip
    np.testing.assert_allclose(stress, calculate_numerical_stress(small_cell, eps=1e-6),
                               rtol=1e-6, atol=1e-8)  # fmt: skip


def test_non_periodic_has_no_stress(potential, small_cell):
    small_cell.pbc = False
    small_cell.calc = DPA2Calculator(potential)  # (no energy here: it would compile a new shape)
    with pytest.raises(PropertyNotImplementedError, match="non-periodic"):
        small_cell.get_stress()
    with pytest.raises(DataError, match="non-periodic"):
        small_cell.get_stress()


def test_clear_errors(potential, small_cell):
    small_cell.calc = DPA2Calculator(potential)
    small_cell.symbols[0] = "Cu"
    with pytest.raises(DataError, match=r"\['Cu'\].*\['O', 'H'\]"):
        small_cell.get_potential_energy()
    small_cell.symbols[0] = "O"
    small_cell.pbc = [True, True, False]
    with pytest.raises(DataError, match="mixed periodicity"):
        small_cell.get_potential_energy()
    with pytest.raises(dpa2_jax.errors.ConfigError, match="unknown head"):
        DPA2Calculator(potential, head="nope")
