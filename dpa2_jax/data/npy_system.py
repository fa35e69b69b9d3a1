"""Reads one DeePMD npy system folder into a `System` (layout: ../shared/data/README.md).

  SYSTEM/type.raw         [natoms] int, indices into type_map.raw
  SYSTEM/type_map.raw     element symbols, one per line (optional if a model type map is given)
  SYSTEM/nopbc            optional, empty: not periodic (any box.npy is then ignored)
  SYSTEM/set.*/coord.npy  [nframes, 3*natoms] Angstrom; box.npy [nframes, 9] Angstrom;
                          energy.npy [nframes] eV; force.npy [nframes, 3*natoms] eV/Angstrom;
                          virial.npy [nframes, 9] eV; hessian.npy [nframes, (3*natoms)**2]

All `set.*` folders are read in sorted order and concatenated. float32 and float64 files
are both read as float64. Every problem raises DataError naming the file and what was
expected, before any array reaches the model.
"""

from __future__ import annotations

import logging
import os
import pathlib
import warnings
from collections.abc import Sequence

import numpy as np

from dpa2_jax.data.system import System, check_atom_types, check_cells, check_finite
from dpa2_jax.data.type_map import check_type_map, map_types
from dpa2_jax.errors import DataError

logger = logging.getLogger(__name__)

# field name in System -> (file in set.*, values per frame as a function of natoms)
_FILES = {
    "coords": ("coord.npy", lambda n: 3 * n),
    "cells": ("box.npy", lambda n: 9),
    "energies": ("energy.npy", lambda n: 1),
    "forces": ("force.npy", lambda n: 3 * n),
    "virials": ("virial.npy", lambda n: 9),
    "hessians": ("hessian.npy", lambda n: 9 * n * n),
}


def _final_shape(name: str, nframes: int, natoms: int) -> tuple[int, ...]:
    return {
        "coords": (nframes, natoms, 3),
        "cells": (nframes, 3, 3),
        "energies": (nframes,),
        "forces": (nframes, natoms, 3),
        "virials": (nframes, 3, 3),
        "hessians": (nframes, 3 * natoms, 3 * natoms),
    }[name]


def load_npy(file: pathlib.Path) -> np.ndarray:
    """Loads a numeric .npy file as float64.

    Args:
      file: path to the .npy file.

    Returns:
      The array, float64, same shape as stored.

    Raises:
      DataError: if the file cannot be read or does not hold real numbers.
    """
    try:
        array = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{file}: cannot read .npy file ({type(err).__name__}: {err})") from err
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise DataError(
            f"{file}: expected a real numeric array, got dtype "
            f"{getattr(array, 'dtype', type(array))}"
        )
    return array.astype(np.float64)


def _per_frame(
    array: np.ndarray, file: pathlib.Path, width: int, nframes: int | None, natoms: int
) -> np.ndarray:
    """Reshapes a stored array to [nframes, width], checking frame count and width."""
    if array.ndim == 0:
        raise DataError(f"{file}: expected one row per frame, got a scalar")
    if array.ndim == 1 and width > 1 and array.size == width:
        array = array[None]  # a single frame stored flat
    flat = array.reshape(array.shape[0], -1)  # [nframes, width]
    if nframes is not None and flat.shape[0] != nframes:
        raise DataError(
            f"{file}: {flat.shape[0]} frames, but coord.npy in the same set has {nframes}"
        )
    if flat.shape[1] != width:
        raise DataError(
            f"{file}: expected {width} values per frame (natoms = {natoms} from "
            f"type.raw), got {flat.shape[1]} (array shape {array.shape})"
        )
    return flat


def _read_set(set_dir: pathlib.Path, natoms: int, pbc: bool) -> dict[str, np.ndarray]:
    """Reads the arrays of one set.* folder, each [nframes, ...final shape]."""
    coord_file = set_dir / "coord.npy"
    if not coord_file.is_file():
        raise DataError(f"{set_dir}: no coord.npy (empty or incomplete set folder)")
    if (set_dir / "real_atom_types.npy").exists():
        raise DataError(
            f"{set_dir}: real_atom_types.npy (DeePMD mixed-type format) is not "
            "supported; convert to one system per composition"
        )
    if pbc and not (set_dir / "box.npy").is_file():
        raise DataError(
            f"{set_dir}: no box.npy; add an empty 'nopbc' file to "
            f"{set_dir.parent} if the system is not periodic"
        )
    arrays, nframes = {}, None
    for name, (filename, width) in _FILES.items():
        file = set_dir / filename
        if (name == "cells" and not pbc) or not file.is_file():
            continue
        flat = _per_frame(load_npy(file), file, width(natoms), nframes, natoms)
        if nframes is None:
            nframes = flat.shape[0]
            if nframes == 0:
                raise DataError(f"{file}: no frames")
        check_finite(flat, str(file))
        arrays[name] = flat.reshape(_final_shape(name, nframes, natoms))
        if name == "cells":
            check_cells(arrays[name], str(file))
    return arrays


def _concatenate_sets(
    per_set: list[dict[str, np.ndarray]], set_dirs: list[pathlib.Path]
) -> dict[str, np.ndarray | None]:
    """Joins per-set arrays along frames; a label must be in every set or in none."""
    joined = {}
    for name, (filename, _) in _FILES.items():
        present = [name in arrays for arrays in per_set]
        if any(present) and not all(present):
            missing = [str(d) for d, p in zip(set_dirs, present) if not p]
            raise DataError(
                f"{filename} is present in some sets but missing in {missing}; "
                "every set must hold the same labels"
            )
        joined[name] = np.concatenate([a[name] for a in per_set]) if all(present) else None
    return joined


def read_type_raw(file: pathlib.Path) -> np.ndarray:
    """Reads type.raw: whitespace-separated non-negative integers -> [natoms] int32."""
    if not file.is_file():
        raise DataError(f"{file}: missing; every DeePMD system needs type.raw")
    tokens = file.read_text().split()
    try:
        types = np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError as err:
        raise DataError(f"{file}: expected integer type indices ({err})") from err
    if types.size == 0:
        raise DataError(f"{file}: empty; expected one type index per atom")
    bad = np.flatnonzero((types < 0) | (types > np.iinfo(np.int32).max))
    if bad.size:
        raise DataError(
            f"{file}: type index {int(types[bad[0]])} of atom {int(bad[0])} is "
            "negative or too large"
        )
    return types.astype(np.int32)


def read_type_map_raw(file: pathlib.Path) -> tuple[str, ...] | None:
    """Reads type_map.raw (one symbol per line); None if the file does not exist."""
    if not file.is_file():
        return None
    return check_type_map(file.read_text().split(), where=str(file))


def read_npy_system(path: str | os.PathLike, type_map: Sequence[str] | None = None) -> System:
    """Reads a DeePMD npy system folder.

    Args:
      path: the system folder (holding type.raw and set.* folders).
      type_map: the model's element symbols. If given, atom types are mapped into it by
        symbol and the result's type_map equals it. If the folder has no type_map.raw,
        type.raw is taken to index this type map already (with a warning).

    Returns:
      A System: coords [nframes, natoms, 3] Angstrom, cells [nframes, 3, 3] or None (nopbc),
      energies [nframes] eV, forces [nframes, natoms, 3] eV/A, virials [nframes, 3, 3] eV and
      hessians [nframes, 3*natoms, 3*natoms] eV/A^2 where the files exist; all float64.

    Raises:
      DataError: naming the file and the problem, for any missing, malformed or
        inconsistent input.
    """
    root = pathlib.Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (expected a DeePMD npy system folder)")
    atom_types = read_type_raw(root / "type.raw")
    own_map = read_type_map_raw(root / "type_map.raw")
    if own_map is None:
        if type_map is None:
            raise DataError(
                f"{root / 'type_map.raw'}: missing, and no model type_map given; "
                "cannot tell which element each type index in type.raw is"
            )
        own_map = check_type_map(type_map)
        warnings.warn(
            f"{root}: no type_map.raw; assuming type.raw indexes the model type map "
            f"{list(own_map)}",
            stacklevel=2,
        )
    check_atom_types(atom_types, own_map, str(root / "type.raw"))
    set_dirs = sorted(p for p in root.glob("set.*") if p.is_dir())
    if not set_dirs:
        raise DataError(f"{root}: no set.* folder (expected set.000/coord.npy, ...)")
    pbc = not (root / "nopbc").exists()
    per_set = [_read_set(d, atom_types.size, pbc) for d in set_dirs]
    system = System(
        path=str(root),
        type_map=own_map,
        atom_types=atom_types,
        **_concatenate_sets(per_set, set_dirs),
    )
    if type_map is not None:
        system = map_types(system, type_map, where=str(root / "type_map.raw"))
    return system


def _looks_like_system(subdirs: Sequence[str], files: Sequence[str]) -> bool:
    """Whether a folder holds what a DeePMD system does besides type.raw (set.*, type_map.raw)."""
    return "type_map.raw" in files or "nopbc" in files or any(d.startswith("set.") for d in subdirs)


def find_systems(root: str | os.PathLike) -> list[str]:
    """Lists every folder at or below `root` that holds a type.raw file.

    A folder without type.raw that looks like a system (it holds type_map.raw, nopbc or a set.*
    folder) is skipped with a logged warning naming it.

    Args:
      root: a system folder or a folder of systems (searched recursively).

    Returns:
      The system folders as strings, sorted.

    Raises:
      DataError: if root is not a directory or holds no system.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    found = []
    for folder, subdirs, files in os.walk(root):
        if "type.raw" in files:
            found.append(str(pathlib.Path(folder)))
        elif _looks_like_system(subdirs, files):
            logger.warning("%s: no type.raw, so it is not read as a DeePMD system; skipped", folder)
    if not found:
        raise DataError(f"{root}: no DeePMD system (no folder with type.raw) found")
    return sorted(found)
