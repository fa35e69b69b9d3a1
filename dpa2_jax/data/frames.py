"""Checks of frames handed in by users (``Potential.evaluate``, the ASE calculator, graphs):
one check per property, one message each, naming the argument and what was expected.

    coord       [n_frame, n_atom, 3] (or [n_atom, 3])   Angstrom
    cell        [n_frame, 3, 3] (or [3, 3], [n_frame, 9]) Angstrom, rows lattice vectors; or None
    atom_types  [n_atom] type indices or element symbols
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dpa2_jax.data.system import check_cells
from dpa2_jax.errors import DataError


def check_atom_count(n_atom: int) -> None:
    """A structure needs at least one atom."""
    if n_atom == 0:
        raise DataError("the structure has no atoms; a frame needs at least one atom")


def atom_type_indices(
    atom_types: Sequence[int] | Sequence[str] | np.ndarray, type_map: Sequence[str]
) -> np.ndarray:
    """Type indices [n_atom] int32 from indices or element symbols, checked against type_map."""
    values = list(np.asarray(atom_types, dtype=object).reshape(-1))
    check_atom_count(len(values))
    if all(isinstance(v, str | np.str_) for v in values):
        missing = sorted({str(s) for s in values} - set(type_map))
        if missing:
            raise DataError(
                f"atom_types: element(s) {missing} are not in the model's type map {list(type_map)}"
            )
        return np.array([list(type_map).index(str(s)) for s in values], np.int32)
    types = np.asarray(atom_types)
    if types.ndim != 1 or not np.issubdtype(types.dtype, np.integer):
        raise DataError(
            f"atom_types: expected a 1-D list of integers or element symbols, got "
            f"shape {types.shape} dtype {types.dtype}"
        )
    bad = types[(types < 0) | (types >= len(type_map))]
    if bad.size:
        raise DataError(
            f"atom_types: type(s) {sorted(set(bad.tolist()))} out of range for the type map "
            f"{list(type_map)} (valid 0..{len(type_map) - 1})"
        )
    return types.astype(np.int32)


def _as_float(value, name: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name}: expected an array of numbers ({err})") from err


def check_coords(coord, n_atom: int) -> np.ndarray:
    """Coordinates as float64 [n_frame, n_atom, 3]; at least one frame, all finite."""
    coord = _as_float(coord, "coord")
    if coord.ndim == 2:
        coord = coord[None]
    if coord.ndim == 3 and coord.shape[0] == 0:
        raise DataError("coord: got 0 frames; pass at least one frame")
    if coord.ndim != 3 or coord.shape[1:] != (n_atom, 3):
        raise DataError(
            f"coord: expected shape (nframes, {n_atom}, 3) for {n_atom} atoms, got {coord.shape}"
        )
    if not np.all(np.isfinite(coord)):
        frame = int(np.argwhere(~np.isfinite(coord))[0, 0])
        raise DataError(f"coord: NaN or inf in frame {frame}")
    return coord


def as_cells(cell, n_frame: int) -> np.ndarray | None:
    """Cells as float64 [n_frame, 3, 3] (a single cell is broadcast), or None; finite and
    non-singular (``system.check_cells``)."""
    if cell is None:
        return None
    cell = _as_float(cell, "cell")
    if cell.shape in ((3, 3), (9,)):
        cell = np.broadcast_to(cell.reshape(1, 3, 3), (n_frame, 3, 3))
    elif cell.ndim == 2 and cell.shape == (n_frame, 9):
        cell = cell.reshape(n_frame, 3, 3)
    if cell.shape != (n_frame, 3, 3):
        raise DataError(f"cell: expected shape ({n_frame}, 3, 3), (3, 3) or None, got {cell.shape}")
    if not np.all(np.isfinite(cell)):
        frame = int(np.argwhere(~np.isfinite(cell))[0, 0])
        raise DataError(f"cell: NaN or inf in frame {frame}")
    check_cells(cell, "cell")
    return cell
