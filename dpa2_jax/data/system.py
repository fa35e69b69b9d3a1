"""The host-side container of one labelled system, and the checks every reader shares.

A `System` holds frames of one chemical composition (same atoms in the same order in
every frame), as a DeePMD npy folder or a homogeneous extxyz file does. Arrays are numpy,
float64, in the units of ../shared/data/README.md:

  coords    [nframes, natoms, 3]            Angstrom
  cells     [nframes, 3, 3]                 Angstrom, rows are lattice vectors (None: no pbc)
  energies  [nframes]                       eV
  forces    [nframes, natoms, 3]            eV/Angstrom
  virials   [nframes, 3, 3]                 eV, DeePMD sign (virial = -stress * volume)
  hessians  [nframes, 3*natoms, 3*natoms]   eV/Angstrom^2
  fparams   [nframes, nfp]                  frame parameters (fparam.npy), model inputs
  aparams   [nframes, natoms, nap]          atomic parameters (aparam.npy), model inputs

Constructing a `System` validates it (`validate_system`), so a `System` in hand is always
well formed; readers call the array checks below earlier, per file, so that messages name
the file at fault rather than the field.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from dpa2_jax.errors import DataError

MIN_CELL_VOLUME = 1e-6  # Angstrom^3; |det(cell)| below this counts as singular

_LABELS = ("energies", "forces", "virials", "hessians")
_PARAMS = ("fparams", "aparams")  # model inputs of fittings with numb_fparam / numb_aparam

Frame = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # coords [na, 3], types [na], cell


def check_finite(array: np.ndarray, where: str) -> None:
    """Raises DataError if `array` holds NaN or inf, naming the first bad frame.

    Args:
      array: [nframes, ...] numbers.
      where: file or field named in the message.
    """
    finite = np.isfinite(array)
    if finite.all():
        return
    bad = tuple(int(i) for i in np.argwhere(~finite)[0])
    raise DataError(f"{where}: non-finite value {array[bad]} in frame {bad[0]} (index {bad})")


def check_cells(cells: np.ndarray, where: str, first_frame: int = 0) -> None:
    """Raises DataError for a zero-volume or singular cell, naming the frame.

    Args:
      cells: [nframes, 3, 3] Angstrom, rows are lattice vectors.
      where: file or field named in the message.
      first_frame: index of cells[0] in the whole system, for the message.
    """
    volumes = np.abs(np.linalg.det(cells))  # [nframes] Angstrom^3
    bad = np.flatnonzero(volumes < MIN_CELL_VOLUME)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{where}: cell of frame {first_frame + i} is singular or has zero volume "
            f"(|det| = {volumes[i]:.3g} A^3 < {MIN_CELL_VOLUME:g}); cell rows = "
            f"{cells[i].tolist()}"
        )


def check_atom_types(atom_types: np.ndarray, type_map: Sequence[str], where: str) -> None:
    """Raises DataError if a type index is negative or not below len(type_map).

    Args:
      atom_types: [natoms] integer indices into type_map.
      type_map: element symbols.
      where: file or field named in the message.
    """
    bad = np.flatnonzero((atom_types < 0) | (atom_types >= len(type_map)))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{where}: type index {int(atom_types[i])} of atom {i} is out of range for "
            f"type map {list(type_map)} ({len(type_map)} elements)"
        )


def _expect_shape(array: np.ndarray, shape: tuple[int, ...], where: str) -> None:
    if array.shape != shape:
        raise DataError(f"{where}: expected shape {shape}, got {array.shape}")


def validate_system(system: System) -> None:
    """Checks shapes, finiteness, type indices and cell volumes of a System.

    Args:
      system: the system to check.

    Raises:
      DataError: naming `system.path` and the field at fault.
    """
    where = system.path
    if len(system.type_map) == 0:
        raise DataError(f"{where}: empty type map")
    if len(set(system.type_map)) != len(system.type_map):
        raise DataError(f"{where}: type map {list(system.type_map)} repeats an element")
    if system.atom_types.ndim != 1 or system.atom_types.size == 0:
        raise DataError(
            f"{where}: atom_types must be a non-empty [natoms] array, got "
            f"shape {system.atom_types.shape}"
        )
    check_atom_types(system.atom_types, system.type_map, f"{where}: atom_types")
    nframes, natoms = len(system.coords) if system.coords.ndim else 0, system.natoms
    if nframes == 0:
        raise DataError(f"{where}: no frames")
    _expect_shape(system.coords, (nframes, natoms, 3), f"{where}: coords")
    check_finite(system.coords, f"{where}: coords")
    if system.cells is not None:
        _expect_shape(system.cells, (nframes, 3, 3), f"{where}: cells")
        check_finite(system.cells, f"{where}: cells")
        check_cells(system.cells, f"{where}: cells")
    shapes = {
        "energies": (nframes,),
        "forces": (nframes, natoms, 3),
        "virials": (nframes, 3, 3),
        "hessians": (nframes, 3 * natoms, 3 * natoms),
    }
    for name in _LABELS:
        value = getattr(system, name)
        if value is not None:
            _expect_shape(value, shapes[name], f"{where}: {name}")
            check_finite(value, f"{where}: {name}")
    for name, lead, form in (
        ("fparams", (nframes,), "[nframes, nfp]"),
        ("aparams", (nframes, natoms), "[nframes, natoms, nap]"),
    ):
        value = getattr(system, name)
        if value is not None:
            if value.ndim != len(lead) + 1 or value.shape[:-1] != lead:
                raise DataError(
                    f"{where}: {name}: expected shape {form} = [{', '.join(map(str, lead))}, "
                    f"n], got {value.shape}"
                )
            check_finite(value, f"{where}: {name}")


def _as_float(value: np.ndarray | None) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=np.float64)


@dataclasses.dataclass(frozen=True, eq=False)
class System:
    """Frames of one composition, with optional labels (see module docstring for units).

    Attributes:
      path: source folder or file, used in messages.
      type_map: element symbols; atom_types index into it.
      atom_types: [natoms] int32.
      coords: [nframes, natoms, 3] float64 Angstrom.
      cells: [nframes, 3, 3] float64 Angstrom (rows are lattice vectors), None if not periodic.
      energies: [nframes] float64 eV, or None.
      forces: [nframes, natoms, 3] float64 eV/Angstrom, or None.
      virials: [nframes, 3, 3] float64 eV (DeePMD sign), or None.
      hessians: [nframes, 3*natoms, 3*natoms] float64 eV/Angstrom^2, or None.
    """

    path: str
    type_map: tuple[str, ...]
    atom_types: np.ndarray
    coords: np.ndarray
    cells: np.ndarray | None = None
    energies: np.ndarray | None = None
    forces: np.ndarray | None = None
    virials: np.ndarray | None = None
    hessians: np.ndarray | None = None
    fparams: np.ndarray | None = None
    aparams: np.ndarray | None = None

    def __post_init__(self):
        # Normalise dtypes once here so every consumer can rely on int32 / float64.
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("path", str(self.path))
        set_("type_map", tuple(str(s) for s in self.type_map))
        types = np.asarray(self.atom_types)
        if types.dtype.kind not in "iu":
            raise DataError(f"{self.path}: atom_types must be integers, got dtype {types.dtype}")
        set_("atom_types", types.astype(np.int32, copy=False))
        try:
            for name in ("coords", "cells", *_LABELS, *_PARAMS):
                set_(name, _as_float(getattr(self, name)))
        except (TypeError, ValueError) as err:
            raise DataError(f"{self.path}: non-numeric array: {err}") from err
        validate_system(self)

    @property
    def nframes(self) -> int:
        """Number of frames."""
        return int(self.coords.shape[0])

    @property
    def natoms(self) -> int:
        """Number of atoms per frame."""
        return int(self.atom_types.shape[0])

    @property
    def pbc(self) -> bool:
        """True if periodic in all three directions (cells given)."""
        return self.cells is not None

    def has(self, name: str) -> bool:
        """Whether field ``name`` (a label, "cells", "fparams", ...) holds values."""
        return getattr(self, name) is not None

    def select_frames(self, idx) -> System:
        """Same as `select_frames(self, idx)`."""
        return select_frames(self, idx)

    def frames(self) -> list[Frame]:
        """(coords [natoms, 3], atom_types [natoms], cell [3, 3] or None) per frame."""
        cells = [None] * self.nframes if self.cells is None else self.cells
        return [(c, self.atom_types, cell) for c, cell in zip(self.coords, cells)]


def select_frames(system: System, idx: int | slice | Sequence[int] | np.ndarray) -> System:
    """Returns a System holding only the frames `idx` (kept in the given order).

    Args:
      system: source system.
      idx: an int, a slice, integer indices or a boolean mask of length nframes. An int
        keeps the frame axis (nframes = 1).

    Returns:
      A new System with every per-frame array indexed by `idx`.

    Raises:
      DataError: if an index is out of range or the selection is empty.
    """
    if isinstance(idx, (int, np.integer)):
        idx = [int(idx)]
    elif not isinstance(idx, slice):
        idx = np.asarray(idx)
        if idx.dtype != bool:
            idx = idx.astype(np.int64)
    try:
        frame_ids = np.arange(system.nframes)[idx]
    except IndexError as err:
        raise DataError(
            f"{system.path}: cannot select frames {idx!r} of {system.nframes}: {err}"
        ) from err
    if frame_ids.size == 0:
        raise DataError(f"{system.path}: frame selection {idx!r} is empty")
    take = lambda a: None if a is None else a[frame_ids]  # noqa: E731
    return dataclasses.replace(
        system,
        coords=take(system.coords),
        cells=take(system.cells),
        **{name: take(getattr(system, name)) for name in (*_LABELS, *_PARAMS)},
    )
