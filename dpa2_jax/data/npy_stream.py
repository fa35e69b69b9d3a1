"""DeePMD npy systems read frame by frame through memory maps, for data sets larger than memory.

``open_npy_system(path, type_map)`` reads only the small files (type.raw, type_map.raw) and the
``.npy`` headers (``np.load(mmap_mode="r")``): the shapes, frame counts and label widths are
checked as ``read_npy_system`` checks them, with the same messages, but no frame is read.
``NpyFrames.select_frames(idx)`` then reads just the frames ``idx`` (a copy of those rows of
each set's map) into an ordinary, validated ``System``, so a training batch, a statistics sample
or a shape sample costs memory for its own frames only. The frames' values (finite numbers,
non-singular cells) are checked when they are read.

DeePMD-kit's HDF5 systems (``FILE.h5``, ``FILE.h5#/GROUP``; data/h5_path.py) are opened the
same way: their datasets are read by h5py slicing, the selected frames only.

Standard layout only: a mixed-type folder (real_atom_types.npy) can hold several compositions
and is read whole by ``read_npy_systems``.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from collections.abc import Sequence

import numpy as np

from dpa2_jax.data.npy_system import (
    _FILES,
    _final_shape,
    _is_mixed_type,
    _set_dirs,
    check_same_labels,
    read_type_map_raw,
    read_type_raw,
    set_arrays,
    system_path,
)
from dpa2_jax.data.h5_path import H5Node, h5_rows
from dpa2_jax.data.system import System, check_atom_types
from dpa2_jax.data.type_map import check_type_map, map_types
from dpa2_jax.errors import DataError


def _map_file(file: pathlib.Path | H5Node) -> np.ndarray:
    """A numeric .npy file as a read-only memory map (nothing read but the header); an HDF5
    system's dataset as ``H5Rows`` (nothing read until rows are selected)."""
    if isinstance(file, H5Node):
        return h5_rows(file)
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{file}: cannot read .npy file ({type(err).__name__}: {err})") from err
    if array.dtype.kind not in "fiu":
        raise DataError(f"{file}: expected a real numeric array, got dtype {array.dtype}")
    return array


class NpyFrames:
    """A standard npy system whose frames stay on disk until selected (module docstring).

    Attributes:
      path: the system folder. type_map, atom_types: after mapping into the model's type map
        (when one was given). natoms, nframes, pbc: as on ``System``. labels: the ``System``
        fields the files give (e.g. {"coords", "cells", "energies", "forces"}).
      frames_read: frames read so far (every ``select_frames`` adds its count).
    """

    def __init__(self, root: pathlib.Path | H5Node, own_map, atom_types, per_set, type_map=None):
        self.path, self._root = str(root), root
        self._own_map, self._own_types = own_map, atom_types
        self._sets = per_set
        self._starts = np.cumsum([0] + [len(m["coords"]) for m in per_set])  # [nset + 1]
        self.labels = frozenset(per_set[0])
        self.frames_read = 0
        self._type_map = type_map
        first = self.select_frames([0])  # the type map's errors now, not at the first batch
        self.frames_read = 0
        self.type_map, self.atom_types = first.type_map, first.atom_types

    @property
    def nframes(self) -> int:
        return int(self._starts[-1])

    @property
    def natoms(self) -> int:
        return int(self._own_types.shape[0])

    @property
    def pbc(self) -> bool:
        return "cells" in self.labels

    def has(self, name: str) -> bool:
        """Whether the files hold field ``name`` (``System.has``)."""
        return name in self.labels

    def select_frames(self, idx: int | slice | Sequence[int] | np.ndarray) -> System:
        """The frames ``idx`` (in the given order) as a validated System, read from disk."""
        frames = np.arange(self.nframes)[idx if isinstance(idx, slice) else np.asarray(idx)]
        frames = np.atleast_1d(frames).astype(np.int64)
        if frames.size == 0:
            raise DataError(f"{self.path}: frame selection {idx!r} is empty")
        unique, back = np.unique(frames, return_inverse=True)  # read each set's rows in order
        which = np.searchsorted(self._starts, unique, side="right") - 1  # [n_unique] set
        fields = {}
        for name in self.labels:
            rows = [self._sets[s][name][unique[which == s] - self._starts[s]]
                    for s in np.unique(which)]  # fmt: skip
            flat = np.concatenate(rows).astype(np.float64)[back]
            fields[name] = flat.reshape(_final_shape(name, len(frames), self.natoms))
        self.frames_read += len(frames)
        try:
            system = System(path=self.path, type_map=self._own_map, atom_types=self._own_types,
                            **fields)  # fmt: skip
        except DataError as err:
            raise DataError(f"{err}; frames counted in the selection {frames.tolist()[:16]} "
                            "of the system's frames (set.* in order)") from err  # fmt: skip
        if self._type_map is None:
            return system
        where = str(self._root / "type_map.raw")
        return map_types(system, self._type_map, where=where)


def open_npy_system(path: str | os.PathLike, type_map: Sequence[str] | None = None) -> NpyFrames:
    """A standard DeePMD npy system folder opened for reading frame by frame.

    Args:
      path: the system folder (type.raw, type_map.raw, set.*).
      type_map: the model's element symbols; types are mapped into it by symbol (as
        ``read_npy_system``), and a folder without type_map.raw is taken to index it.

    Returns:
      An ``NpyFrames``: nothing but headers and the first frame read.

    Raises:
      DataError: as ``read_npy_system`` for a missing or malformed file, and for a mixed-type
        folder (read those with ``read_npy_systems``).
    """
    root = system_path(path)
    set_dirs = _set_dirs(root)
    if _is_mixed_type(root, set_dirs):
        raise DataError(f"{root}: mixed-type layout; read it with read_npy_systems")
    atom_types = read_type_raw(root / "type.raw")
    own_map = read_type_map_raw(root / "type_map.raw")
    if own_map is None:
        if type_map is None:
            raise DataError(
                f"{root / 'type_map.raw'}: missing, and no model type_map given; "
                "cannot tell which element each type index in type.raw is"
            )
        own_map = check_type_map(type_map)
        warnings.warn(f"{root}: no type_map.raw; assuming type.raw indexes the model type map "
                      f"{list(own_map)}", stacklevel=2)  # fmt: skip
    check_atom_types(atom_types, own_map, str(root / "type.raw"))
    pbc = not (root / "nopbc").exists()
    per_set = [set_arrays(d, atom_types.size, pbc, _map_file) for d in set_dirs]
    check_same_labels(per_set, set_dirs)
    return NpyFrames(root, own_map, atom_types, per_set, type_map)


def is_mixed_type(path: str | os.PathLike) -> bool:
    """Whether a system folder uses DeePMD's mixed-type layout (set.*/real_atom_types.npy)."""
    root = system_path(path)
    return _is_mixed_type(root, _set_dirs(root))


def count_frames(path: str | os.PathLike) -> int:
    """Frames of a standard npy system from its coord.npy headers (no frame read); 0 for a
    folder that is not one (the caller's reader then gives the error)."""
    try:
        return sum(len(_map_file(d / "coord.npy")) for d in _set_dirs(system_path(path)))
    except DataError:
        return 0
