"""Fixtures of the MD tests: the bundled tiny water model and water structures from data_0."""

from __future__ import annotations

import warnings

import ase
import numpy as np
import pytest

from tests.conftest import ROOT, SYSTEMS

WATER_MODEL = ROOT / "examples" / "water_tiny" / "model.dp"


@pytest.fixture(scope="session")
def water_pot():
    """examples/water_tiny/model.dp (float64, type map O, H), loaded once."""
    import dpa2_jax

    with warnings.catch_warnings():  # the x64 notice of dpa2_jax.load
        warnings.simplefilter("ignore", UserWarning)
        return dpa2_jax.load(WATER_MODEL)


@pytest.fixture(scope="session")
def water_box() -> ase.Atoms:
    """Frame 0 of tests/systems/water/data_0: 192 atoms in a 12.44 A cubic box."""
    from dpa2_jax.data import read_npy_system, system_to_atoms

    atoms = system_to_atoms(read_npy_system(SYSTEMS / "water" / "data_0"), 0)
    atoms.calc = None
    return atoms


@pytest.fixture(scope="session")
def water_cluster(water_box):
    """``water_cluster(n)``: the n oxygens of the box nearest its first, each with its two
    nearest hydrogens (minimum image), as a non-periodic molecule or cluster."""

    def make(n: int) -> ase.Atoms:
        atoms = water_box
        oxygens = np.flatnonzero(atoms.numbers == 8)
        hydrogens = np.flatnonzero(atoms.numbers == 1)
        o0 = oxygens[0]
        first = np.argsort(atoms.get_distances(o0, oxygens, mic=True))[:n]
        positions = []
        for o in oxygens[first]:
            d = atoms.get_distances(o, hydrogens, mic=True, vector=True)
            near = np.argsort(np.linalg.norm(d, axis=1))[:2]
            center = atoms.positions[o0] + atoms.get_distance(o0, o, mic=True, vector=True)
            positions += [center, *(center + d[near])]
        return ase.Atoms("OH2" * n, positions=positions)

    return make
