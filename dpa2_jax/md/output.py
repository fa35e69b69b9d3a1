"""Files of an MD run: the starting structure in, ``thermo.log`` and ``traj.extxyz`` out (and
trajectories back in, for ``dpa2-jax model-devi``).

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

from dpa2_jax.data import read_ase, read_npy_system, system_to_atoms
from dpa2_jax.errors import DataError

THERMO_COLUMNS = ("step", "time_fs", "potential_eV", "kinetic_eV", "total_eV", "temperature_K")
PERIODIC_COLUMNS = ("pressure_bar", "volume_A3")


def _is_npy_system(path: str | os.PathLike, what: str) -> bool:
    """Whether ``path`` is a DeePMD npy system folder (True) or a file (False).

    Raises:
      DataError: naming the path and ``what`` it should be, when it is missing or is a folder
        without ``type.raw``.
    """
    folder = pathlib.Path(path)
    if not folder.exists():
        raise DataError(f"{path}: no such {what} file or folder")
    if folder.is_dir() and not (folder / "type.raw").is_file():
        raise DataError(f"{path}: a folder, but not a DeePMD npy system (no type.raw)")
    return folder.is_dir()


def read_structure(path: str | os.PathLike) -> ase.Atoms:
    """The starting structure: a DeePMD npy system folder (its first frame) or any file
    ``ase.io.read`` understands (its last frame, ASE's default for a single image: index -1).

    Raises:
      DataError: naming the path, when it is missing or cannot be read.
    """
    path = pathlib.Path(path)
    if _is_npy_system(path, "structure"):
        return system_to_atoms(read_npy_system(path), 0)
    try:
        atoms = ase.io.read(path)
    except Exception as err:  # ase raises many types; report them all with the file
        raise DataError(f"{path}: ase.io.read failed ({type(err).__name__}: {err})") from err
    atoms.calc = None
    return atoms


def read_trajectory(path: str | os.PathLike, type_map=None):
    """A System of every frame of a trajectory: an ASE-readable file (``traj.extxyz``) or a
    DeePMD npy system folder (every set; ``type_map`` where the folder has no type_map.raw).

    Raises:
      DataError: naming the path, when it is missing or not an npy system folder.
    """
    if _is_npy_system(path, "trajectory"):
        own = (pathlib.Path(path) / "type_map.raw").is_file()
        return read_npy_system(pathlib.Path(path), type_map=None if own else type_map)
    return read_ase(pathlib.Path(path), index=":")


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
