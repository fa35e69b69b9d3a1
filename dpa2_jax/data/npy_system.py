"""Reads one DeePMD npy system folder into a `System` (layout: ../shared/data/README.md).

  SYSTEM/type.raw         [natoms] int, indices into type_map.raw
  SYSTEM/type_map.raw     element symbols, one per line (optional if a model type map is given)
  SYSTEM/nopbc            optional, empty: not periodic (any box.npy is then ignored)
  SYSTEM/set.*/coord.npy  [nframes, 3*natoms] Angstrom; box.npy [nframes, 9] Angstrom;
                          energy.npy [nframes] eV; force.npy [nframes, 3*natoms] eV/Angstrom;
                          virial.npy [nframes, 9] eV; hessian.npy [nframes, (3*natoms)**2]
                          fparam.npy [nframes, nfp]; aparam.npy [nframes, natoms*nap]
                          (frame and atomic parameters of fittings with numb_fparam/aparam)

All `set.*` folders are read in sorted order and concatenated. float32 and float64 files
are both read as float64. Every problem raises DataError naming the file and what was
expected, before any array reaches the model.

DeePMD-kit's "mixed type" layout is also read (by `read_npy_systems`): type.raw is a
placeholder (all zeros) that only fixes natoms, type_map.raw is required (or a model type map
is assumed), and every set holds

  SYSTEM/set.*/real_atom_types.npy  [nframes, natoms] int, indices into type_map.raw; -1 marks
                                    a virtual (padding) atom

A `System` holds one composition, so such a folder becomes one System per distinct sequence of
real atom types: virtual atoms are dropped from each frame (their coords, forces and hessian
rows), and frames with the same remaining types, in the same order, form one System named
"SYSTEM[composition k]" (k counted from 0 in order of first appearance).
"""

from __future__ import annotations

import logging
import os
import pathlib
import warnings
from collections.abc import Sequence

import numpy as np

from dpa2_jax.data.h5_path import H5Node, find_h5_systems, is_h5_path, split_h5_path
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
    "fparams": ("fparam.npy", lambda n: None),  # any width nfp
    "aparams": ("aparam.npy", lambda n: None),  # natoms * nap
}


def _final_shape(name: str, nframes: int, natoms: int) -> tuple[int, ...]:
    return {
        "coords": (nframes, natoms, 3),
        "cells": (nframes, 3, 3),
        "energies": (nframes,),
        "forces": (nframes, natoms, 3),
        "virials": (nframes, 3, 3),
        "fparams": (nframes, -1),
        "aparams": (nframes, natoms, -1),
        "hessians": (nframes, 3 * natoms, 3 * natoms),
    }[name]


def system_path(path: str | os.PathLike | H5Node) -> pathlib.Path | H5Node:
    """A system folder as a ``pathlib.Path``, or an HDF5 system (``FILE.h5``, ``FILE.h5#/GROUP``)
    as an ``H5Node``, which the readers below use alike."""
    if isinstance(path, H5Node):
        return path
    return H5Node(*split_h5_path(path)) if is_h5_path(path) else pathlib.Path(path)


def load_npy(file: pathlib.Path | H5Node) -> np.ndarray:
    """Loads a numeric .npy file (or an HDF5 system's dataset) as float64.

    Args:
      file: path to the .npy file, or an ``H5Node`` naming a dataset.

    Returns:
      The array, float64, same shape as stored.

    Raises:
      DataError: if the file cannot be read or does not hold real numbers.
    """
    try:
        array = file.read_array() if isinstance(file, H5Node) else np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{file}: cannot read .npy file ({type(err).__name__}: {err})") from err
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise DataError(
            f"{file}: expected a real numeric array, got dtype "
            f"{getattr(array, 'dtype', type(array))}"
        )
    return array.astype(np.float64)


def _per_frame(
    array: np.ndarray, file: pathlib.Path, width: int | None, nframes: int | None, natoms: int
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
    if width is None:  # fparam / aparam: the width is the model's, checked where it is used
        if file.name == "aparam.npy" and (flat.shape[1] == 0 or flat.shape[1] % natoms):
            raise DataError(
                f"{file}: expected natoms * nap values per frame (natoms = {natoms} from "
                f"type.raw), got {flat.shape[1]} (array shape {array.shape})"
            )
        return flat
    if flat.shape[1] != width:
        raise DataError(
            f"{file}: expected {width} values per frame (natoms = {natoms} from "
            f"type.raw), got {flat.shape[1]} (array shape {array.shape})"
        )
    return flat


def set_arrays(set_dir: pathlib.Path, natoms: int, pbc: bool, load=None) -> dict[str, np.ndarray]:
    """One set.* folder's files, each as [nframes, width] (frame counts and widths checked,
    values not): read by ``load`` (file -> array; default ``load_npy``, float64)."""
    load = load_npy if load is None else load
    coord_file = set_dir / "coord.npy"
    if not coord_file.is_file():
        raise DataError(f"{set_dir}: no coord.npy (empty or incomplete set folder)")
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
        arrays[name] = _per_frame(load(file), file, width(natoms), nframes, natoms)
        if nframes is None:
            nframes = arrays[name].shape[0]
            if nframes == 0:
                raise DataError(f"{file}: no frames")
    return arrays


def _read_set(set_dir: pathlib.Path, natoms: int, pbc: bool) -> dict[str, np.ndarray]:
    """Reads the arrays of one set.* folder, each [nframes, ...final shape]."""
    arrays = set_arrays(set_dir, natoms, pbc)
    for name, flat in arrays.items():
        file = set_dir / _FILES[name][0]
        check_finite(flat, str(file))
        arrays[name] = flat.reshape(_final_shape(name, flat.shape[0], natoms))
        if name == "cells":
            check_cells(arrays[name], str(file))
    return arrays


def check_same_labels(per_set: list[dict[str, np.ndarray]], set_dirs: list[pathlib.Path]) -> None:
    """A label must be in every set or in none, with one width (DataError naming the file)."""
    for name, (filename, _) in _FILES.items():
        present = [name in arrays for arrays in per_set]
        if any(present) and not all(present):
            missing = [str(d) for d, p in zip(set_dirs, present) if not p]
            raise DataError(
                f"{filename} is present in some sets but missing in {missing}; "
                "every set must hold the same labels"
            )
        shapes = {a[name].shape[1:] for a in per_set if name in a}
        if len(shapes) > 1:
            raise DataError(
                f"{filename} has different widths in the sets {[str(d) for d in set_dirs]}: "
                f"{sorted(shapes)}"
            )


def _concatenate_sets(
    per_set: list[dict[str, np.ndarray]], set_dirs: list[pathlib.Path]
) -> dict[str, np.ndarray | None]:
    """Joins per-set arrays along frames; a label must be in every set or in none."""
    check_same_labels(per_set, set_dirs)
    return {
        name: np.concatenate([a[name] for a in per_set]) if name in per_set[0] else None
        for name in _FILES
    }


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


REAL_TYPES_FILE = "real_atom_types.npy"


def _is_mixed_type(root: pathlib.Path, set_dirs: list[pathlib.Path]) -> bool:
    """Whether the sets hold real_atom_types.npy (all of them) or not (none of them)."""
    mixed = [(d / REAL_TYPES_FILE).is_file() for d in set_dirs]
    if any(mixed) and not all(mixed):
        with_file = [d.name for d, m in zip(set_dirs, mixed) if m]
        without = [d.name for d, m in zip(set_dirs, mixed) if not m]
        raise DataError(
            f"{root}: {REAL_TYPES_FILE} (DeePMD mixed-type layout) is in sets {with_file} but "
            f"not in {without}; every set of a system must use the same layout"
        )
    return bool(mixed) and all(mixed)


def _set_dirs(root: pathlib.Path) -> list[pathlib.Path]:
    if not root.is_dir():
        expected = "an HDF5 group" if isinstance(root, H5Node) else "a directory"
        raise DataError(f"{root}: not {expected} (expected a DeePMD npy system folder)")
    set_dirs = sorted(p for p in root.glob("set.*") if p.is_dir())
    if not set_dirs:
        folder = "group" if isinstance(root, H5Node) else "folder"
        raise DataError(f"{root}: no set.* {folder} (expected set.000/coord.npy, ...)")
    return set_dirs


def read_real_atom_types(
    file: pathlib.Path, nframes: int, natoms: int, type_map: Sequence[str]
) -> np.ndarray:
    """Reads one set's real_atom_types.npy (DeePMD mixed-type layout).

    Args:
      file: the real_atom_types.npy file.
      nframes: frames in the same set (from its coord.npy).
      natoms: atoms per frame, virtual ones included (from type.raw).
      type_map: the element symbols the indices refer to.

    Returns:
      [nframes, natoms] int32: indices into type_map, -1 for virtual atoms. A flat
      [nframes * natoms] array, which DeePMD-kit also accepts, is reshaped.

    Raises:
      DataError: naming the file, for a wrong shape, non-integer values, an index outside
        type_map (other than -1) or a frame with no real atom.
    """
    array = load_npy(file)
    expected = (nframes, natoms)
    if not (array.shape == expected or (array.ndim == 1 and array.size == nframes * natoms)):
        raise DataError(
            f"{file}: expected shape {expected} (frames from coord.npy in the same set, atoms "
            f"from type.raw), got {array.shape}"
        )
    array = array.reshape(expected)
    if not np.all(array == np.round(array)):
        raise DataError(f"{file}: expected integer type indices, got fractional values")
    bad = np.argwhere((array < -1) | (array >= len(type_map)))
    if bad.size:
        frame, atom = (int(i) for i in bad[0])
        raise DataError(
            f"{file}: type index {int(array[frame, atom])} of atom {atom} in frame {frame} is "
            f"out of range for type map {list(type_map)} ({len(type_map)} elements; -1 marks "
            "a virtual atom)"
        )
    empty = np.flatnonzero((array < 0).all(axis=1))
    if empty.size:
        raise DataError(f"{file}: frame {int(empty[0])} has only virtual atoms (all -1)")
    return array.astype(np.int32)


def _read_folder(
    root: pathlib.Path, set_dirs: list[pathlib.Path], mixed: bool, type_map: Sequence[str] | None
) -> tuple[tuple[str, ...], np.ndarray, dict[str, np.ndarray | None], np.ndarray | None]:
    """Reads a checked folder: (own type map, type.raw, joined arrays, real types or None)."""
    atom_types = read_type_raw(root / "type.raw")
    own_map = read_type_map_raw(root / "type_map.raw")
    if own_map is None:
        if type_map is None:
            index_file = REAL_TYPES_FILE if mixed else "type.raw"
            raise DataError(
                f"{root / 'type_map.raw'}: missing, and no model type_map given; "
                f"cannot tell which element each type index in {index_file} is"
            )
        own_map = check_type_map(type_map)
        warnings.warn(
            f"{root}: no type_map.raw; assuming {REAL_TYPES_FILE if mixed else 'type.raw'} "
            f"indexes the model type map {list(own_map)}",
            stacklevel=3,
        )
    if not mixed:  # in the mixed layout type.raw is a placeholder that only gives natoms
        check_atom_types(atom_types, own_map, str(root / "type.raw"))
    pbc = not (root / "nopbc").exists()
    per_set = [_read_set(d, atom_types.size, pbc) for d in set_dirs]
    real_types = None
    if mixed:
        real_types = np.concatenate(
            [
                read_real_atom_types(
                    d / REAL_TYPES_FILE, len(arrays["coords"]), atom_types.size, own_map
                )
                for d, arrays in zip(set_dirs, per_set)
            ]
        )
    return own_map, atom_types, _concatenate_sets(per_set, set_dirs), real_types


def _split_compositions(
    root: pathlib.Path,
    own_map: tuple[str, ...],
    arrays: dict[str, np.ndarray | None],
    real_types: np.ndarray,
) -> list[System]:
    """One System per distinct sequence of real atom types, virtual atoms dropped."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for frame, row in enumerate(real_types):
        groups.setdefault(tuple(int(t) for t in row[row >= 0]), []).append(frame)
    systems = []
    for k, frames in enumerate(groups.values()):
        frames = np.asarray(frames)
        # Frames of a group share the real types, not necessarily where the virtual atoms are.
        keep = real_types[frames] >= 0  # [nframes_k, natoms]
        nreal = int(keep[0].sum())
        dof = np.repeat(keep, 3, axis=1)  # [nframes_k, 3 * natoms]

        def atoms(a: np.ndarray) -> np.ndarray:  # [nframes_k, natoms, 3] -> [.., nreal, 3]
            return a[frames][keep].reshape(len(frames), nreal, 3)

        def hessian(a: np.ndarray) -> np.ndarray:
            return np.stack([h[m][:, m] for h, m in zip(a[frames], dof)])

        take = {
            "coords": atoms,
            "forces": atoms,
            "hessians": hessian,
            "aparams": lambda a: a[frames][keep].reshape(len(frames), nreal, a.shape[-1]),
        }
        fields = {
            name: None if value is None else take.get(name, lambda a: a[frames])(value)
            for name, value in arrays.items()
        }
        first = real_types[frames[0]]
        systems.append(
            System(
                path=f"{root}[composition {k}]",
                type_map=own_map,
                atom_types=first[first >= 0],
                **fields,
            )
        )
    logger.info(
        "%s: mixed-type layout, %d frames read as %d system(s), one per composition",
        root,
        len(real_types),
        len(systems),
    )
    return systems


def read_npy_systems(
    path: str | os.PathLike, type_map: Sequence[str] | None = None
) -> list[System]:
    """Reads a DeePMD npy system folder, standard or mixed-type, as one System per composition.

    Args:
      path: the system folder (holding type.raw and set.* folders).
      type_map: the model's element symbols. If given, atom types are mapped into it by
        symbol and every result's type_map equals it. If the folder has no type_map.raw,
        type.raw (or real_atom_types.npy) is taken to index this type map (with a warning).

    Returns:
      For a standard folder, [read_npy_system(path, type_map)]. For a mixed-type folder
      (set.*/real_atom_types.npy), one System per distinct sequence of real atom types, in
      order of first appearance, with virtual atoms (-1) dropped from coords, forces and
      hessians; its path is "PATH[composition k]".

    Raises:
      DataError: naming the file and the problem, for any missing, malformed or
        inconsistent input.
    """
    root = system_path(path)
    set_dirs = _set_dirs(root)
    mixed = _is_mixed_type(root, set_dirs)
    own_map, atom_types, arrays, real_types = _read_folder(root, set_dirs, mixed, type_map)
    if mixed:
        systems = _split_compositions(root, own_map, arrays, real_types)
    else:
        systems = [System(path=str(root), type_map=own_map, atom_types=atom_types, **arrays)]
    if type_map is not None:
        where = str(root / "type_map.raw")
        systems = [map_types(s, type_map, where=where) for s in systems]
    return systems


def read_npy_system(path: str | os.PathLike, type_map: Sequence[str] | None = None) -> System:
    """Reads a standard (not mixed-type) DeePMD npy system folder.

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
        inconsistent input, and for a mixed-type folder (use `read_npy_systems`).
    """
    root = system_path(path)
    set_dirs = _set_dirs(root)
    if _is_mixed_type(root, set_dirs):
        raise DataError(
            f"{set_dirs[0] / REAL_TYPES_FILE}: {root} uses DeePMD's mixed-type layout, which "
            "can hold several compositions; read it with read_npy_systems (one System per "
            "composition)"
        )
    own_map, atom_types, arrays, _ = _read_folder(root, set_dirs, False, type_map)
    system = System(path=str(root), type_map=own_map, atom_types=atom_types, **arrays)
    if type_map is not None:
        system = map_types(system, type_map, where=str(root / "type_map.raw"))
    return system


def _looks_like_system(subdirs: Sequence[str], files: Sequence[str]) -> bool:
    """Whether a folder holds what a DeePMD system does besides type.raw (set.*, type_map.raw)."""
    return "type_map.raw" in files or "nopbc" in files or any(d.startswith("set.") for d in subdirs)


def find_systems(root: str | os.PathLike) -> list[str]:
    """Lists every folder at or below `root` that holds a type.raw file.

    A folder without type.raw that looks like a system (it holds type_map.raw, nopbc or a set.*
    folder) is skipped with a logged warning naming it. For an HDF5 file (``FILE.h5`` or
    ``FILE.h5#/GROUP``): every group at or below it with a type.raw dataset (``find_h5_systems``).

    Args:
      root: a system folder or a folder of systems (searched recursively), or an HDF5 system.

    Returns:
      The system folders as strings, sorted.

    Raises:
      DataError: if root is not a directory or holds no system.
    """
    if is_h5_path(root):
        return [str(node) for node in find_h5_systems(root)]
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


def write_npy_system(system: System, path: str | os.PathLike) -> str:
    """Writes ``system`` as a DeePMD npy folder (``type.raw``, ``type_map.raw``, ``set.000/``
    with coord/box/energy/force/virial/fparam/aparam.npy where present; ``nopbc`` without
    cells), float64, readable by ``read_npy_system`` and by DeePMD-kit. Returns the path."""
    root = pathlib.Path(path)
    sets = root / "set.000"
    sets.mkdir(parents=True, exist_ok=True)
    nf = system.nframes
    np.savetxt(root / "type.raw", system.atom_types, fmt="%d")
    (root / "type_map.raw").write_text("".join(f"{e}\n" for e in system.type_map))
    np.save(sets / "coord.npy", system.coords.reshape(nf, -1))
    if system.cells is None:
        (root / "nopbc").touch()
    else:
        np.save(sets / "box.npy", system.cells.reshape(nf, 9))
    for name, value in (("energy", system.energies), ("force", system.forces),
                        ("virial", system.virials), ("fparam", system.fparams),
                        ("aparam", system.aparams)):  # fmt: skip
        if value is not None:
            shape = (nf,) if name == "energy" else (nf, -1)
            np.save(sets / f"{name}.npy", np.asarray(value).reshape(shape))
    return str(root)
