"""``Potential.hessian`` (model/derivatives.py ``make_hessian_fn``): forward-over-reverse autodiff
against central finite differences of the forces, and ASE's ``Vibrations`` on a relaxed water
molecule against the eigenvalues of the mass-weighted Hessian.

Model: the bundled tiny water model (examples/water_tiny/model.dp, float64).
"""

from __future__ import annotations

import ase.units
import numpy as np
import pytest
from ase.optimize import BFGS
from ase.vibrations import Vibrations

from dpa2_jax.md import DPA2Calculator


def test_hessian_matches_finite_differences(water_pot, water_cluster):
    pot = water_pot
    atoms = water_cluster(2)  # 6 atoms
    x, symbols = atoms.positions, atoms.get_chemical_symbols()
    h = pot.hessian(x, None, symbols)
    assert h.shape == (1, 18, 18)
    delta, fd = 1e-4, np.zeros((18, 18))
    for k in range(18):  # H[:, k] = -dF/dx_k, central differences
        step = np.zeros(18)
        step[k] = delta
        plus = pot.evaluate(x + step.reshape(6, 3), None, symbols)["forces"][0].reshape(-1)
        minus = pot.evaluate(x - step.reshape(6, 3), None, symbols)["forces"][0].reshape(-1)
        fd[:, k] = -(plus - minus) / (2 * delta)
    np.testing.assert_allclose(h[0], fd, atol=1e-6 * np.abs(h).max())
    np.testing.assert_allclose(h[0], h[0].T, atol=1e-10)


@pytest.mark.slow
def test_vibrations_agree_with_mass_weighted_hessian(water_pot, water_cluster, tmp_path):
    pot = water_pot
    atoms = water_cluster(1)
    atoms.calc = DPA2Calculator(pot)
    assert BFGS(atoms, logfile=None).run(fmax=1e-4, steps=200)
    vib = Vibrations(atoms, name=str(tmp_path / "vib"), delta=0.005, nfree=4)
    vib.run()
    ase_energies = np.sort(np.real(vib.get_energies()))[-3:]  # eV, the 3 vibrations of H2O
    h = pot.hessian(atoms.positions, None, atoms.get_chemical_symbols())[0]
    m = np.repeat(atoms.get_masses(), 3)
    eigenvalues = np.linalg.eigvalsh(h / np.sqrt(np.outer(m, m)))  # eV / (A^2 amu)
    hbar_omega = ase.units._hbar * 1e10 / np.sqrt(ase.units._e * ase.units._amu)  # eV
    ours = hbar_omega * np.sqrt(np.sort(eigenvalues)[-3:])
    np.testing.assert_allclose(ours, ase_energies, rtol=1e-4)  # 4e-6 seen (1242, 3588, 3847 cm^-1)
    assert np.all(np.abs(np.sort(np.abs(eigenvalues))[:6]) < 1e-3 * eigenvalues.max())
