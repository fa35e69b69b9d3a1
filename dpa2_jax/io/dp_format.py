"""DeePMD-kit's backend-neutral model file (`.dp`), read and written with h5py alone.

A `.dp` file is HDF5: the root attribute ``json`` holds the model description; every array that
sits under a ``@variables`` key is stored as a root dataset (``variable_0000``, ...) and the JSON
holds that dataset's path in its place.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

import h5py
import numpy as np

from dpa2_jax.errors import CheckpointError


def _walk(obj: Any, leaf, in_variables: bool = False) -> Any:
    """Copies a nested dict/list, mapping ``leaf`` over everything under ``@variables``."""
    if isinstance(obj, dict):
        return {k: _walk(v, leaf, in_variables or k == "@variables") for k, v in obj.items()}
    if isinstance(obj, list):
        return [_walk(v, leaf, in_variables) for v in obj]
    if obj is None or not in_variables:
        return obj
    return leaf(obj)


def read_dp(path: str | os.PathLike) -> dict:
    """Reads a `.dp` file into a nested dict with numpy arrays in place of dataset names."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such model file")
    try:
        with h5py.File(path, "r") as f:
            if "json" not in f.attrs:
                raise CheckpointError(
                    f"{path}: HDF5 file without the 'json' attribute of a .dp model"
                )
            data = json.loads(f.attrs["json"])

            def load(name):
                if not isinstance(name, str) or name not in f:
                    raise CheckpointError(f"{path}: variable {name!r} is missing from the file")
                return np.array(f[name][()])

            return _walk(data, load)
    except OSError as err:
        raise CheckpointError(f"{path}: not a readable .dp (HDF5) model file: {err}") from err
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: the 'json' attribute is not valid JSON: {err}") from err


def write_dp(path: str | os.PathLike, data: dict) -> None:
    """Writes ``data`` (with numpy arrays under ``@variables``) as a `.dp` file.

    The file is written to a temporary name first and renamed, so an existing model at
    ``path`` is never left half-overwritten.
    """
    path = os.fspath(path)
    if not path.endswith(".dp"):
        raise CheckpointError(f"{path}: a DeePMD model file name must end with .dp")
    tmp = path + ".tmp"
    counter = iter(range(10**6))
    meta = {
        "software": "dpa2_jax",
        "time": str(datetime.datetime.now(tz=datetime.timezone.utc)),
    }
    try:
        with h5py.File(tmp, "w") as f:

            def store(value):
                name = f"variable_{next(counter):04d}"
                return f.create_dataset(name, data=np.asarray(value)).name

            stored = _walk(data, store)
            f.attrs["json"] = json.dumps({**meta, **stored}, separators=(",", ":"))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
