"""The torch.save zip reader (io/torch_pickle.py) on hand-built files: views into a shared
storage (offset, strides), big-endian storages, scalars, and damaged storages. The files are
written here without torch, by pickling stand-ins registered under torch's module names."""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest

from dpa2_jax.errors import CheckpointError
from dpa2_jax.io.torch_pickle import read_torch_file


class _Tensor:
    """A tensor to write: a view (offset, size, stride) into the storage called ``key``."""

    def __init__(self, key, offset, size, stride):
        self.key, self.offset, self.size, self.stride = key, offset, size, stride


@pytest.fixture
def fake_torch(monkeypatch):
    """torch / torch._utils stand-ins, so pickle writes the globals a real torch.save writes."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is written
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("DoubleStorage", "FloatStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _write(path, obj, storages: dict, torch, byteorder: str = "little", numel=None):
    """A torch.save-style zip of ``obj`` (``_Tensor`` leaves) with the given storages."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, x):
            if isinstance(x, tuple) and x and x[0] == "storage-of":
                array = storages[x[1]]
                double = array.dtype == np.float64
                storage_type = torch.DoubleStorage if double else torch.FloatStorage
                n = array.size if numel is None else numel
                return ("storage", storage_type, x[1], "cpu", n)
            return None

        def reducer_override(self, x):
            if isinstance(x, _Tensor):
                return torch._utils._rebuild_tensor_v2, (
                    ("storage-of", x.key), x.offset, x.size, x.stride, False,
                    collections.OrderedDict(),
                )  # fmt: skip
            return NotImplemented

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(obj)
    order = "<" if byteorder == "little" else ">"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buffer.getvalue())
        z.writestr("archive/byteorder", byteorder)
        for key, array in storages.items():
            raw = array.astype(array.dtype.newbyteorder(order)).tobytes()
            z.writestr(f"archive/data/{key}", raw)
    return path


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_views_into_one_storage_come_back_as_arrays(tmp_path, fake_torch, byteorder):
    storage = np.arange(20, dtype=np.float64) * 0.5
    obj = {
        "matrix": _Tensor("0", 2, (3, 4), (4, 1)),  # rows 2.. of a [.,4] layout
        "transposed": _Tensor("0", 2, (4, 3), (1, 4)),  # the same numbers, transposed
        "scalar": _Tensor("0", 7, (), ()),
        "empty": _Tensor("0", 0, (0, 5), (5, 1)),
        "float32": _Tensor("1", 0, (2,), (1,)),
        "plain": [1, 2.5, "text", None, (True, False)],
    }
    storages = {"0": storage, "1": np.array([1.5, -2.0], np.float32)}
    out = read_torch_file(_write(tmp_path / "v.pt", obj, storages, fake_torch, byteorder))
    expected = storage[2:14].reshape(3, 4)
    np.testing.assert_array_equal(out["matrix"], expected)
    np.testing.assert_array_equal(out["transposed"], expected.T)
    assert out["scalar"].shape == () and out["scalar"] == 3.5
    assert out["empty"].shape == (0, 5)
    assert out["float32"].dtype == np.float32 and list(out["float32"]) == [1.5, -2.0]
    assert out["plain"] == [1, 2.5, "text", None, (True, False)]
    assert out["matrix"].dtype.isnative and out["matrix"].flags.writeable


def test_a_view_past_its_storage_is_refused(tmp_path, fake_torch):
    obj = {"w": _Tensor("0", 15, (3, 4), (4, 1))}
    path = _write(tmp_path / "past.pt", obj, {"0": np.zeros(20)}, fake_torch)
    with pytest.raises(CheckpointError, match="past.pt: damaged PyTorch checkpoint: .*not fit"):
        read_torch_file(path)


def test_a_short_storage_is_refused(tmp_path, fake_torch):
    path = _write(tmp_path / "short.pt", {"w": _Tensor("0", 0, (4,), (1,))},
                  {"0": np.zeros(4)}, fake_torch, numel=8)  # fmt: skip
    with pytest.raises(CheckpointError, match="short.pt: storage archive/data/0 holds 32 bytes"):
        read_torch_file(path)


def test_a_missing_storage_is_refused(tmp_path, fake_torch):
    path = _write(tmp_path / "gone.pt", {"w": _Tensor("0", 0, (4,), (1,))},
                  {"0": np.zeros(4)}, fake_torch)  # fmt: skip
    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist() if not n.endswith("data/0")}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    with pytest.raises(CheckpointError, match="gone.pt: storage archive/data/0 is missing"):
        read_torch_file(path)
