"""An ASE calculator backed by a dpa2_jax `Potential`.

    atoms.calc = DPA2Calculator("model.dp")          # or a model directory, or a Potential
    atoms.get_potential_energy()                     # eV
    atoms.get_forces()                               # [natoms, 3] eV/Angstrom
    atoms.get_stress()                               # [6] Voigt, eV/Angstrom^3, ASE's sign
    atoms.get_potential_energies()                   # [natoms] eV

Atoms are mapped onto the model's type map by chemical symbol. Periodicity must be all or
nothing; stress exists only for periodic atoms (stress = -virial / volume).
"""

from __future__ import annotations

import os

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from dpa2_jax.errors import DataError
from dpa2_jax.io.convert import load
from dpa2_jax.model.potential import Potential


class StressUnavailableError(DataError, PropertyNotImplementedError):
    """Stress asked of non-periodic atoms (caught by code expecting either parent class)."""


class DPA2Calculator(Calculator):
    """ASE calculator: energy, free_energy (= energy), forces, stress and per-atom energies.

    Args:
      model: a `.dp` file, a dpa2_jax model directory, or a loaded `Potential`.
      head: the head of a multi-head model (may be omitted for single-head models).
      fparam: frame parameters [numb_fparam], for models with numb_fparam.
      aparam: atomic parameters [natoms, numb_aparam], for models with numb_aparam.
      **kwargs: passed to `ase.calculators.calculator.Calculator` (label, atoms, directory).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(
        self,
        model: str | os.PathLike | Potential,
        head: str | None = None,
        fparam: np.ndarray | None = None,
        aparam: np.ndarray | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.potential = model if isinstance(model, Potential) else load(model)
        self.head = self.potential.config.resolve_head(head)
        self.fparam = None if fparam is None else np.asarray(fparam, dtype=np.float64)
        self.aparam = None if aparam is None else np.asarray(aparam, dtype=np.float64)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        pbc = np.asarray(atoms.pbc, bool)
        if pbc.any() and not pbc.all():
            raise DataError(
                f"atoms.pbc={pbc.tolist()}: mixed periodicity is not supported; use all True "
                "(periodic cell) or all False (isolated cluster)"
            )
        periodic = bool(pbc.all())
        if "stress" in properties and not periodic:
            raise StressUnavailableError(
                "stress requested for non-periodic atoms (pbc all False): stress needs a cell "
                "volume; set a cell and pbc=True, or do not ask for stress"
            )
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(self.potential.type_map))
        if unknown:
            raise DataError(
                f"atoms contain element(s) {unknown} that the model does not know; its type "
                f"map is {list(self.potential.type_map)}"
            )
        cell = atoms.cell.array if periodic else None
        out = self.potential.evaluate(
            atoms.positions[None], cell, symbols, head=self.head,
            fparam=None if self.fparam is None else self.fparam[None],
            aparam=None if self.aparam is None else self.aparam[None],
        )  # fmt: skip
        energy = float(out["energy"][0])
        self.results = {
            "energy": energy,  # eV
            "free_energy": energy,  # eV
            "forces": out["forces"][0],  # [natoms, 3] eV/Angstrom
            "energies": out["atom_energy"][0],  # [natoms] eV
        }
        if periodic:
            self.results["stress"] = full_3x3_to_voigt_6_stress(out["stress"][0])  # [6] eV/A^3
