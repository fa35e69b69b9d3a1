"""Files of an MD run: the starting structure in, ``thermo.log`` and ``traj.extxyz`` out.

thermo.log: one header line ``# step time_fs potential_eV kinetic_eV total_eV temperature_K``
(``pressure_bar volume_A3`` appended for periodic systems), then one row per logged step.
traj.extxyz: ASE's extended XYZ, one frame per written step, with energy (eV), forces (eV/A),
stress (eV/A^3, periodic), momenta (ASE reads velocities back with ``atoms.get_velocities()``)
and the cell.
"""

from __future__ import annotations

import os
import pathlib

import ase
import ase.io
import numpy as np

from dpa2_jax.errors import DataError

THERMO_COLUMNS = ("step", "time_fs", "potential_eV", "kinetic_eV", "total_eV", "temperature_K")
PERIODIC_COLUMNS = ("pressure_bar", "volume_A3")


def read_structure(path: str | os.PathLike) -> ase.Atoms:
    """The starting structure: a DeePMD npy system folder (its first frame) or any file
    ``ase.io.read`` understands (its last frame, ASE's default for a single image: index -1).

    Raises:
      DataError: naming the path, when it is missing or cannot be read.
    """
    from dpa2_jax.data import read_npy_system, system_to_atoms

    path = pathlib.Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such structure file or folder")
    if path.is_dir():
        if not (path / "type.raw").is_file():
            raise DataError(f"{path}: a folder, but not a DeePMD npy system (no type.raw)")
        return system_to_atoms(read_npy_system(path), 0)
    try:
        atoms = ase.io.read(path)
    except Exception as err:  # ase raises many types; report them all with the file
        raise DataError(f"{path}: ase.io.read failed ({type(err).__name__}: {err})") from err
    atoms.calc = None
    return atoms


def thermo_header(periodic: bool) -> str:
    return "# " + " ".join(THERMO_COLUMNS + (PERIODIC_COLUMNS if periodic else ()))


def thermo_row(step: int, timestep_fs: float, obs: dict, periodic: bool) -> str:
    """One thermo.log line from ``simulate.observables`` (energies eV, temperature K)."""
    potential, kinetic = float(obs["energy"]), float(obs["kinetic"])
    values = [potential, kinetic, potential + kinetic, float(obs["temperature"])]
    if periodic:
        values += [float(obs["pressure"]), abs(float(np.linalg.det(obs["cell"])))]
    return f"{step:8d} {step * timestep_fs:12.3f} " + " ".join(f"{v:.10g}" for v in values)


def read_thermo(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """thermo.log columns by name."""
    with open(path) as f:
        names = f.readline().lstrip("#").split()
    data = np.loadtxt(path, ndmin=2)
    return {name: data[:, k] for k, name in enumerate(names)}


def append_frame(path: str | os.PathLike, atoms: ase.Atoms) -> None:
    """Appends one frame to an extended XYZ trajectory."""
    ase.io.write(path, atoms, format="extxyz", append=True)
