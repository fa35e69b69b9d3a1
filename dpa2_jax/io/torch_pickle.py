"""Reads a file written by ``torch.save`` (or ``torch.jit.save``) into dicts of numpy arrays,
without torch and without running any code from the file.

torch's zip layout (``torch/serialization.py``: ``_save``, ``_load``)::

    ARCHIVE/data.pkl        the pickled object; each tensor's storage is a persistent id
                            ("storage", torch.FloatStorage, KEY, LOCATION, NUMEL)
    ARCHIVE/data/KEY        the storage's raw bytes
    ARCHIVE/byteorder       "little" or "big" (absent in old files: little)
    ARCHIVE/version, .format_version, .data/...   bookkeeping, not read

``ARCHIVE`` is any top-level folder name (torch uses the file's stem). A pickle is a small
program: ``pickle.Unpickler`` would import and call any global it names (``os.system``...). The
unpickler here resolves globals from an allow-list only: plain containers, tensor rebuilders
mapped to our numpy functions, storage types mapped to numpy dtypes. Anything else raises
``CheckpointError`` naming the file and the global, before anything is called.

TorchScript archives (``.pth`` from ``dp freeze``) pickle their modules as ``__torch__.*``
classes; with ``torchscript=True`` each becomes a ``ScriptObject`` holding its attributes.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
import zlib
from typing import Any

import numpy as np

from dpa2_jax.errors import CheckpointError

# torch storage class -> numpy dtype (torch/storage.py; bfloat16 and quantized types absent)
STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "ComplexDoubleStorage": np.complex128, "ComplexFloatStorage": np.complex64,
}  # fmt: skip


class StorageType:
    """Stands for a ``torch.<X>Storage`` class in a persistent id: its numpy dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class ScriptObject:
    """A TorchScript module or object (``__torch__.<path>``): its class name and attributes.
    The unpickler makes it with ``__new__`` (no ``__init__``) and hands its state over."""

    @property
    def class_name(self) -> str:
        return type(self).__qualname__

    @property
    def attributes(self) -> dict[str, Any]:
        return self.__dict__.setdefault("_attributes", {})

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.attributes.update(state)
        else:
            self.attributes["__state__"] = state


def rebuild_tensor(storage, offset, size, stride, *_ignored) -> np.ndarray:
    """The numpy array a ``torch._utils._rebuild_tensor_v2`` call describes (a copy)."""
    size, stride = tuple(size), tuple(stride)
    if not size:
        return np.array(storage[offset])
    if any(n == 0 for n in size):
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or last >= storage.size or min(stride) < 0:
        raise ValueError(f"tensor of size {size}, stride {stride} at offset {offset} does not "
                         f"fit in its storage of {storage.size} elements")  # fmt: skip
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], size, tuple(s * storage.itemsize for s in stride), writeable=False
    )
    return np.array(view)


def rebuild_parameter(data, *_ignored) -> np.ndarray:
    """``torch._utils._rebuild_parameter[_with_state]``: a parameter is its data."""
    return data


def _ordered_dict(*args):
    return collections.OrderedDict(*args)


_ALLOWED = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("torch", "device"): str,  # a tensor's device: kept as its name
}
_ALLOWED.update({("torch", name): StorageType(name) for name in STORAGE_DTYPES})


def _first(value, *_ignored):
    return value


# TorchScript's typed containers (torch/jit/_pickle.py): each returns its first argument
_TORCHSCRIPT = {
    ("torch.jit._pickle", name): _first
    for name in ("restore_type_tag", "build_intlist", "build_doublelist", "build_boollist",
                 "build_tensorlist")
}  # fmt: skip


class _Unpickler(pickle.Unpickler):
    """Allow-listed globals; storages read from the zip by ``persistent_load``."""

    def __init__(self, data: bytes, path: str, archive: zipfile.ZipFile, prefix: str,
                 byteorder: str, torchscript: bool):  # fmt: skip
        super().__init__(io.BytesIO(data))
        self._path, self._zip, self._prefix = path, archive, prefix
        self._order = "<" if byteorder == "little" else ">"
        self._torchscript = torchscript
        self._storages: dict[str, np.ndarray] = {}
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if self._torchscript and (module, name) in _TORCHSCRIPT:
            return _TORCHSCRIPT[(module, name)]
        if self._torchscript and module.startswith("__torch__"):
            key = f"{module}.{name}"
            if key not in self._classes:
                self._classes[key] = type(key, (ScriptObject,), {"__qualname__": key})
            return self._classes[key]
        raise CheckpointError(
            f"{self._path}: the file's pickle asks for the global {module}.{name}, which a "
            "model checkpoint does not need; refusing to load it (it could run code)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self._path}: unknown persistent id {pid!r} in the pickle")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, StorageType):
            raise CheckpointError(f"{self._path}: storage of unknown type {storage_type!r}")
        key = str(key)
        if key not in self._storages:
            name = f"{self._prefix}data/{key}"
            try:
                raw = self._zip.read(name)
            except KeyError as err:
                raise CheckpointError(f"{self._path}: storage {name} is missing") from err
            dtype = storage_type.dtype.newbyteorder(self._order)
            if len(raw) < numel * dtype.itemsize:
                raise CheckpointError(f"{self._path}: storage {name} holds {len(raw)} bytes, "
                                      f"fewer than {numel} {dtype.name} values")  # fmt: skip
            array = np.frombuffer(raw, dtype, count=numel)
            self._storages[key] = array.astype(array.dtype.newbyteorder("="))
        return self._storages[key]


def _archive_prefix(archive: zipfile.ZipFile, path: str) -> str:
    """The top-level folder holding ``data.pkl`` (with its trailing slash)."""
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise CheckpointError(
            f"{path}: a zip file, but not one written by torch.save (expected one "
            f"ARCHIVE/data.pkl, found {len(pickles)})"
        )
    return pickles[0][: -len("data.pkl")]


def read_torch_file(path: str | os.PathLike, torchscript: bool = False) -> Any:
    """The object a ``torch.save`` zip file holds, tensors as numpy arrays.

    Args:
      path: the file.
      torchscript: also accept ``__torch__.*`` classes (a TorchScript archive's modules), as
        ``ScriptObject`` instances.

    Raises:
      CheckpointError: not a zip file (a truncated file, torch's pre-1.6 legacy format, or
        another format), a forbidden global, or storages that do not match the pickle.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint written by torch.save (not a zip file: it may "
            f"be truncated, or in torch's legacy pre-1.6 format): {err}"
        ) from err
    with archive:
        prefix = _archive_prefix(archive, path)
        names = set(archive.namelist())
        try:
            byteorder = "little"
            if f"{prefix}byteorder" in names:
                byteorder = archive.read(f"{prefix}byteorder").decode().strip()
            data = archive.read(f"{prefix}data.pkl")
            unpickler = _Unpickler(data, path, archive, prefix, byteorder, torchscript)
            return unpickler.load()
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, TypeError,
                IndexError, KeyError, AttributeError, MemoryError, OverflowError,
                zlib.error) as err:  # fmt: skip
            raise CheckpointError(f"{path}: damaged PyTorch checkpoint: {err}") from err

