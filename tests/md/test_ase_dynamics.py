"""DPA2Calculator (md/ase_calculator.py) driving ASE: velocity Verlet and Langevin dynamics, BFGS
relaxation of a molecule and of a water box, cell relaxation through the stress
(FrechetCellFilter), and compiled programs reused from step to step (no recompilation per step).

Model: the bundled tiny water model (examples/water_tiny/model.dp, float64).
"""

from __future__ import annotations

import ase.units
import numpy as np
from ase.filters import FrechetCellFilter
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS, FIRE

from dpa2_jax.md import DPA2Calculator
from dpa2_jax.model.compiled import n_compiled


def _fmax(forces) -> float:
    return float(np.max(np.linalg.norm(forces, axis=1)))


def test_velocity_verlet_conserves_energy_without_recompiling(water_pot, water_box):
    atoms = water_box.copy()
    atoms.calc = DPA2Calculator(water_pot)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=0.5 * ase.units.fs)
    dyn.run(1)  # compiles the evaluation of this bucket of shapes
    e0, compiled = atoms.get_total_energy(), n_compiled()
    dyn.run(6)
    assert n_compiled() == compiled  # the same padded shapes, step after step
    assert abs(atoms.get_total_energy() - e0) / len(atoms) < 1e-4  # eV/atom


def test_langevin_runs(water_pot, water_cluster):
    atoms = water_cluster(4)
    atoms.calc = DPA2Calculator(water_pot)
    start = atoms.positions.copy()
    dyn = Langevin(atoms, 0.5 * ase.units.fs, temperature_K=300, friction=0.01 / ase.units.fs,
                   fixcm=False, rng=np.random.default_rng(0))  # fmt: skip
    dyn.run(5)
    assert np.all(np.isfinite(atoms.get_forces()))
    assert np.abs(atoms.positions - start).max() > 0


def test_bfgs_relaxes_a_molecule(water_pot, water_cluster):
    atoms = water_cluster(1)
    atoms.calc = DPA2Calculator(water_pot)
    assert BFGS(atoms, logfile=None).run(fmax=0.01, steps=100)
    assert _fmax(atoms.get_forces()) < 0.01
    angle = atoms.get_angle(1, 0, 2)
    assert 90 < angle < 120 and 0.9 < atoms.get_distance(0, 1) < 1.1  # still a water molecule


def test_water_box_relaxation_lowers_forces(water_pot, water_box):
    atoms = water_box.copy()
    atoms.calc = DPA2Calculator(water_pot)
    f0, e0 = _fmax(atoms.get_forces()), atoms.get_potential_energy()
    FIRE(atoms, logfile=None).run(fmax=0.01, steps=8)
    assert _fmax(atoms.get_forces()) < f0
    assert atoms.get_potential_energy() < e0


def test_cell_relaxation_through_stress(water_pot, water_box):
    atoms = water_box.copy()
    atoms.calc = DPA2Calculator(water_pot)
    volume0 = atoms.get_volume()
    cell_filter = FrechetCellFilter(atoms)
    f0 = _fmax(cell_filter.get_forces())  # atoms and the 3 cell degrees of freedom
    pressure0 = -np.mean(atoms.get_stress()[:3])  # eV/A^3; positive: the box wants to grow
    FIRE(cell_filter, logfile=None).run(fmax=0.01, steps=8)
    assert _fmax(cell_filter.get_forces()) < f0
    assert np.sign(atoms.get_volume() - volume0) == np.sign(pressure0)
