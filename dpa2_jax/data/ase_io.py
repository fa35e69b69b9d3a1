"""ase.Atoms <-> `System`, and reading any file ase.io.read understands (extxyz, ...).

Labels are taken from the attached calculator (extxyz puts energy/forces/stress there) or,
failing that, from `atoms.info["energy"]`, `atoms.arrays["forces"]`, `atoms.info["stress"]`
or `atoms.info["virial"]`. Sign conventions:

  stress  eV/Angstrom^3, ASE sign (positive = tensile), Voigt [xx, yy, zz, yz, xz, xy] or 3x3
  virial  eV, DeePMD sign:  virial = -stress * volume,  volume = |det(cell)| Angstrom^3
"""

from __future__ import annotations

import os
from typing import Sequence

import ase
import ase.io
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import voigt_6_to_full_3x3_stress

from dpa2_jax.data.system import System
from dpa2_jax.data.type_map import map_types
from dpa2_jax.errors import DataError


def stress_to_virial(stress: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Converts ASE stress to DeePMD virial.

    Args:
      stress: [6] Voigt or [3, 3] eV/Angstrom^3, ASE sign.
      cell: [3, 3] Angstrom, rows are lattice vectors.

    Returns:
      [3, 3] virial in eV, -stress * volume.
    """
    stress = np.asarray(stress, dtype=np.float64)
    if stress.shape == (6,):
        stress = voigt_6_to_full_3x3_stress(stress)
    elif stress.shape == (9,):
        stress = stress.reshape(3, 3)
    if stress.shape != (3, 3):
        raise DataError(f"stress: expected 6 (Voigt) or 3x3 values, got shape {stress.shape}")
    return -stress * abs(np.linalg.det(cell))  # [3, 3] eV


def virial_to_stress(virial: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Inverse of `stress_to_virial`: [3, 3] eV -> [3, 3] eV/Angstrom^3 (ASE sign)."""
    return -np.asarray(virial, dtype=np.float64) / abs(np.linalg.det(cell))


def _calc_property(atoms: ase.Atoms, name: str):
    """A property from the attached calculator, or None if it has none."""
    if atoms.calc is None:
        return None
    try:
        return atoms.calc.get_property(name, atoms, allow_calculation=False)
    except Exception:  # calculators signal "not available" in several ways
        return None


def atoms_labels(atoms: ase.Atoms) -> dict[str, np.ndarray | None]:
    """Reads the labels of one frame.

    Args:
      atoms: one frame.

    Returns:
      A dict with "energies" (float, eV), "forces" ([natoms, 3] eV/Angstrom) and "virials"
      ([3, 3] eV, DeePMD sign); a value is None where the frame has no such label.
    """
    energy = _calc_property(atoms, "energy")
    if energy is None:
        energy = atoms.info.get("energy")
    forces = _calc_property(atoms, "forces")
    if forces is None:
        forces = atoms.arrays.get("forces")
    stress = _calc_property(atoms, "stress")
    if stress is None:
        stress = atoms.info.get("stress")
    virial = atoms.info.get("virial")
    if stress is not None:
        if not atoms.pbc.all():
            raise DataError("stress given for a non-periodic frame (no volume to convert it)")
        virial = stress_to_virial(stress, atoms.cell.array)
    elif virial is not None:
        virial = np.asarray(virial, dtype=np.float64).reshape(3, 3)
    return {
        "energies": None if energy is None else float(energy),
        "forces": None if forces is None else np.asarray(forces, dtype=np.float64),
        "virials": virial,
    }


def _stack(values: list, name: str, where: str):
    """Stacks one label over frames; it must be given in every frame or in none."""
    missing = [i for i, v in enumerate(values) if v is None]
    if len(missing) == len(values):
        return None
    if missing:
        raise DataError(
            f"{where}: {name} given in some frames but missing in frame "
            f"{missing[0]} (and {len(missing) - 1} more); label every frame or none"
        )
    try:
        return np.stack([np.asarray(v, dtype=np.float64) for v in values])
    except ValueError as err:
        raise DataError(f"{where}: {name} differ in shape between frames ({err})") from err


def atoms_to_system(
    frames: ase.Atoms | Sequence[ase.Atoms],
    type_map: Sequence[str] | None = None,
    path: str = "<ase.Atoms>",
) -> System:
    """Builds a System from frames that share the same symbols in the same order.

    Args:
      frames: one ase.Atoms or a sequence of them.
      type_map: the model's element symbols; default: the sorted distinct symbols.
      path: source named in messages.

    Returns:
      A System (coords [nframes, natoms, 3] Angstrom, cells [nframes, 3, 3] or None, labels
      as in `atoms_labels`, hessians None).

    Raises:
      DataError: naming `path` and the frame, for differing symbols, mixed or differing
        periodicity, partial labels, or any check of `validate_system`.
    """
    frames = [frames] if isinstance(frames, ase.Atoms) else list(frames)
    if not frames:
        raise DataError(f"{path}: no frames")
    symbols = frames[0].get_chemical_symbols()
    pbc = bool(frames[0].pbc.all())
    labels = []
    for i, atoms in enumerate(frames):
        if atoms.get_chemical_symbols() != symbols:
            raise DataError(
                f"{path}: frame {i} has symbols {atoms.get_chemical_formula()} "
                f"(in order) different from frame 0 "
                f"({frames[0].get_chemical_formula()}); frames must share atoms"
            )
        if atoms.pbc.any() and not atoms.pbc.all():
            raise DataError(
                f"{path}: frame {i} has pbc={atoms.pbc.tolist()}; mixed "
                "periodicity is unsupported (use all True or all False)"
            )
        if bool(atoms.pbc.all()) != pbc:
            raise DataError(
                f"{path}: frame {i} has pbc={atoms.pbc.tolist()} but frame 0 "
                f"has pbc={frames[0].pbc.tolist()}"
            )
        try:
            labels.append(atoms_labels(atoms))
        except DataError as err:
            raise DataError(f"{path}: frame {i}: {err}") from err
    own_map = tuple(sorted(set(symbols)))
    system = System(
        path=path,
        type_map=own_map,
        atom_types=np.array([own_map.index(s) for s in symbols], dtype=np.int32),
        coords=np.stack([a.positions for a in frames]),
        cells=np.stack([a.cell.array for a in frames]) if pbc else None,
        **{k: _stack([f[k] for f in labels], k, path) for k in labels[0]},
    )
    return system if type_map is None else map_types(system, type_map)


def read_ase(
    path: str | os.PathLike,
    index: str | int | slice = ":",
    type_map: Sequence[str] | None = None,
    format: str | None = None,
) -> System:
    """Reads frames with ase.io.read into a System.

    Args:
      path: a file ase can read (extxyz, xyz, vasp, ...).
      index: which frames, as for ase.io.read (":" = all).
      type_map: the model's element symbols; default: the sorted distinct symbols.
      format: ase format name, default guessed from the file.

    Returns:
      See `atoms_to_system`.

    Raises:
      DataError: naming the file, if ase cannot read it or the frames are inconsistent.
    """
    path = os.fspath(path)
    try:
        frames = ase.io.read(path, index=index, format=format)
    except Exception as err:  # ase raises many types; report them all with the file
        raise DataError(f"{path}: ase.io.read failed ({type(err).__name__}: {err})") from err
    return atoms_to_system(frames, type_map=type_map, path=path)


def system_to_atoms(system: System, frame: int) -> ase.Atoms:
    """Builds the ase.Atoms of one frame, labels attached as a SinglePointCalculator.

    Args:
      system: the source system; its type_map must hold chemical symbols.
      frame: frame index.

    Returns:
      ase.Atoms with positions [natoms, 3] Angstrom, cell and pbc (all or none), and a
      calculator holding energy (eV), forces (eV/Angstrom) and stress ([3, 3] eV/Angstrom^3,
      ASE sign) where labelled. A non-periodic frame's virial goes to info["virial"].
    """
    if not -system.nframes <= frame < system.nframes:
        raise DataError(f"{system.path}: frame {frame} out of range ({system.nframes} frames)")
    symbols = [system.type_map[t] for t in system.atom_types]
    try:
        atoms = ase.Atoms(
            symbols=symbols,
            positions=system.coords[frame],
            cell=None if system.cells is None else system.cells[frame],
            pbc=system.pbc,
        )
    except (KeyError, ValueError) as err:
        raise DataError(
            f"{system.path}: type map {list(system.type_map)} is not a list of "
            f"chemical symbols ({err})"
        ) from err
    results = {}
    if system.energies is not None:
        results["energy"] = float(system.energies[frame])
    if system.forces is not None:
        results["forces"] = system.forces[frame].copy()
    if system.virials is not None and system.pbc:
        results["stress"] = virial_to_stress(system.virials[frame], system.cells[frame])
    elif system.virials is not None:
        atoms.info["virial"] = system.virials[frame].copy()
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms
