"""Writes examples/water.xyz: frame 0 of the bundled tests/systems/water/data_3 (192 atoms) as
extended XYZ with its cell, energy and forces, for the examples that read a structure with ASE.

    python scripts/make_water_xyz.py
"""

import pathlib

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

REPO = pathlib.Path(__file__).resolve().parents[1]
SYSTEM = REPO / "tests/systems/water/data_3"
OUT = REPO / "examples/water.xyz"


def water_atoms(frame: int = 0) -> Atoms:
    """One frame of the DeePMD npy system as ase.Atoms with energy (eV) and forces (eV/A)."""
    type_map = (SYSTEM / "type_map.raw").read_text().split()
    types = np.loadtxt(SYSTEM / "type.raw", dtype=int)
    keys = ("coord", "box", "energy", "force")
    data = {k: np.load(SYSTEM / f"set.000/{k}.npy")[frame] for k in keys}
    atoms = Atoms([type_map[t] for t in types], positions=data["coord"].reshape(-1, 3),
                  cell=data["box"].reshape(3, 3), pbc=True)  # fmt: skip
    atoms.calc = SinglePointCalculator(atoms, energy=float(data["energy"]),
                                       forces=data["force"].reshape(-1, 3))  # fmt: skip
    return atoms


def main() -> None:
    atoms = water_atoms()
    ase.io.write(OUT, atoms, format="extxyz")
    energy = atoms.get_potential_energy()
    print(f"wrote {OUT.relative_to(REPO)}: {len(atoms)} atoms, energy {energy} eV")


if __name__ == "__main__":
    main()
