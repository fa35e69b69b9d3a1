"""DeePMD-kit's HDF5 systems: one npy system folder stored as a group of an HDF5 file.

DeePMD-kit (and dpdata's ``deepmd/hdf5`` format) keep a system folder in an ``.h5``/``.hdf5``
file, with groups for folders and datasets for files:

  FILE.h5#/GROUP/type.raw              [natoms] int dataset
  FILE.h5#/GROUP/type_map.raw          [ntypes] byte strings (optional)
  FILE.h5#/GROUP/nopbc                 any dataset: not periodic (its value is not read)
  FILE.h5#/GROUP/set.000/coord.npy     [nframes, 3*natoms] dataset, and box.npy, energy.npy,
                                       force.npy, ... as in the npy folder layout

A system is named ``FILE.h5#/GROUP`` (``FILE.h5`` alone: the file's root group). As DeePMD-kit's
``expand_sys_str`` does, a path given for training or testing stands for every group at or
below it that holds a ``type.raw`` dataset (``find_h5_systems``).

``H5Node`` is the small part of ``pathlib.Path`` the npy readers use (``/``, ``is_file``,
``is_dir``, ``exists``, ``glob("set.*")``, ``name``, ``parent``, ``read_text``), so
``npy_system`` and ``npy_stream`` read both layouts with the same checks and messages; a
message names the file and the group or dataset, e.g. ``water.h5#/sys1/set.000/force.npy``.
Datasets are read by ``read_array`` (whole) or ``H5Rows`` (selected frames only, by h5py
slicing).
"""

from __future__ import annotations

import os
import pathlib

import h5py
import numpy as np

from dpa2_jax.errors import DataError

H5_SUFFIXES = (".h5", ".hdf5")



def split_h5_path(path: str | os.PathLike) -> tuple[str, str]:
    """``"FILE.h5#/GROUP"`` -> ``("FILE.h5", "/GROUP")``; no ``#`` -> the root group ``"/"``."""
    file, _, group = os.fspath(path).partition("#")
    return file, "/" + group.strip("/")


def is_h5_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an HDF5 system: ``FILE#GROUP``, or an existing file ending in
    .h5/.hdf5 or holding the HDF5 signature (a missing ``FILE`` before ``#`` counts, so that
    its reader names it)."""
    path = os.fspath(path)
    if "#" in path:
        return True
    if not os.path.isfile(path):
        return False
    return path.lower().endswith(H5_SUFFIXES) or h5py.is_hdf5(path)


def _open_h5(file: str) -> h5py.File:
    """The file opened read-only (DataError naming it if it is missing or not HDF5)."""
    if not os.path.isfile(file):
        raise DataError(f"{file}: no such HDF5 file")
    try:
        return h5py.File(file, "r")
    except OSError as err:
        raise DataError(f"{file}: cannot read as an HDF5 file ({err})") from err


class H5Node:
    """A group or dataset of an HDF5 file, addressed like a path (module docstring).

    The file is opened on first use and shared with the nodes made from this one (``/``,
    ``parent``, ``glob``); it closes when the last of them (and of the datasets read through
    them) is gone, so a whole read leaves it closed and a streamed system keeps it open.

    Attributes:
      file: the HDF5 file's path. key: the object's absolute name in it ("/" for the root).
    """

    def __init__(self, file: str | os.PathLike, key: str = "/", handle: h5py.File | None = None):
        self.file, self.key, self._handle = os.fspath(file), "/" + key.strip("/"), handle

    def _h5(self) -> h5py.File:
        if self._handle is None:
            self._handle = _open_h5(self.file)
        return self._handle

    def __str__(self) -> str:
        return self.file if self.key == "/" else f"{self.file}#{self.key}"

    __fspath__ = __str__

    def __repr__(self) -> str:
        return f"H5Node({str(self)!r})"

    def __truediv__(self, name: str) -> H5Node:
        return H5Node(self.file, f"{self.key.rstrip('/')}/{name}", self._h5())

    def __lt__(self, other: H5Node) -> bool:
        return (self.file, self.key) < (other.file, other.key)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> H5Node:
        return H5Node(self.file, self.key.rsplit("/", 1)[0] or "/", self._h5())

    def _object(self):
        """The h5py Group or Dataset, or None where the name holds nothing."""
        return self._h5().get(self.key)

    def exists(self) -> bool:
        return self._object() is not None

    def is_file(self) -> bool:
        return isinstance(self._object(), h5py.Dataset)

    def is_dir(self) -> bool:
        return isinstance(self._object(), h5py.Group)

    def glob(self, pattern: str) -> list[H5Node]:
        """Members of this group whose names match ``pattern`` (fnmatch rules)."""
        group = self._object()
        names = list(group) if isinstance(group, h5py.Group) else []
        return [self / n for n in names if pathlib.PurePath(n).match(pattern)]

    def dataset(self) -> h5py.Dataset:
        """The h5py Dataset (DataError naming it if it is a group or missing)."""
        obj = self._object()
        if not isinstance(obj, h5py.Dataset):
            what = "a group" if obj is not None else "missing"
            raise DataError(f"{self}: expected an HDF5 dataset, but it is {what}")
        return obj

    def read_array(self) -> np.ndarray:
        """The whole dataset as a numpy array (a scalar dataset as a 0-d array)."""
        return np.asarray(self.dataset()[()])

    def read_text(self) -> str:
        """The dataset's values joined by newlines, byte strings decoded (type.raw, type_map.raw
        as text, as the npy readers parse them)."""
        values = np.atleast_1d(self.read_array()).ravel()
        return "".join(
            f"{v.decode() if isinstance(v, bytes) else v}\n" for v in values.tolist()
        )


class H5Rows:
    """A numeric dataset seen as [nframes, width] without reading it; rows ``rows[idx]`` (sorted
    unique indices or a slice) are read by h5py slicing. Enough of an ndarray for the npy checks
    (shape, ndim, size, dtype, ``len``, ``reshape(nframes, -1)``)."""

    def __init__(self, data: h5py.Dataset, shape: tuple[int, ...] | None = None):
        self._data, self.shape = data, tuple(data.shape if shape is None else shape)
        self.dtype, self.ndim, self.size = data.dtype, len(self.shape), int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def reshape(self, nrows: int, width: int = -1) -> H5Rows:
        return H5Rows(self._data, (nrows, self.size // max(nrows, 1)))

    def __getitem__(self, idx) -> np.ndarray:
        if idx is None:  # a single frame stored flat: small, read whole
            return np.asarray(self._data[()])[None]
        rows = np.asarray(self._data[idx if isinstance(idx, slice) else np.asarray(idx)])
        return rows.reshape((len(rows), *self.shape[1:]))


def h5_rows(node: H5Node) -> H5Rows:
    """A numeric dataset opened for reading by rows (nothing read; DataError for other dtypes)."""
    data = node.dataset()
    if data.dtype.kind not in "fiu":
        raise DataError(f"{node}: expected a real numeric array, got dtype {data.dtype}")
    return H5Rows(data)


def find_h5_systems(path: str | os.PathLike) -> list[H5Node]:
    """The systems at or below ``FILE.h5[#GROUP]``: every group holding a ``type.raw`` dataset,
    sorted (DeePMD-kit's ``expand_sys_str`` for HDF5 files).

    Raises:
      DataError: naming the file and group, if the file is missing or not HDF5, the group does
        not exist, or no system is found in it.
    """
    file, key = split_h5_path(path)
    if not os.path.isfile(file):
        raise DataError(f"{file}: no such HDF5 file (system {os.fspath(path)})")
    start = H5Node(file, key)
    group = start._object()
    if not isinstance(group, h5py.Group):
        what = "is a dataset, not a group" if group is not None else "does not exist"
        raise DataError(f"{file}: group {key} {what} (system {os.fspath(path)})")
    found = [start] if (start / "type.raw").is_file() else []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Group) and isinstance(obj.get("type.raw"), h5py.Dataset):
            found.append(start / name)

    group.visititems(visit)
    if not found:
        raise DataError(
            f"{start}: no DeePMD system in it (no group at or below {key} holds a type.raw "
            "dataset)"
        )
    return sorted(found)
