"""Streamed npy systems (data/npy_stream.py), their batches (graph/dataset.py) and the large
water set of scripts/make_large_dataset.py."""

import importlib.util
import shutil

import jax
import numpy as np
import pytest

from dpa2_jax.data.dataset import open_systems
from dpa2_jax.data.npy_stream import NpyFrames, count_frames, open_npy_system
from dpa2_jax.data.npy_system import read_npy_system
from dpa2_jax.errors import DataError
from dpa2_jax.graph.dataset import Dataset
from dpa2_jax.graph.fields import max_neighbors
from tests.conftest import ROOT, SYSTEMS

WATER = SYSTEMS / "water" / "data_1"  # two sets of 80 frames


def _script():
    path = ROOT / "scripts" / "make_large_dataset.py"
    spec = importlib.util.spec_from_file_location("make_large_dataset", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """30 perturbed frames in sets of 12, 12 and 6."""
    root = tmp_path_factory.mktemp("large") / "water"
    _script().write_dataset(root, 30, set_size=12, seed=3)
    return root


def test_large_dataset_perturbs_coordinates_and_copies_labels(large):
    src = _script().source_frames()
    system = read_npy_system(large)
    assert system.nframes == 30 and system.natoms == 192
    assert sorted(p.name for p in large.glob("set.*")) == ["set.000", "set.001", "set.002"]
    for f in range(system.nframes):
        j = np.argmin(np.abs(src["coord"] - system.coords[f].ravel()).max(axis=1))  # its source
        np.testing.assert_allclose(system.forces[f].ravel(), src["force"][j], atol=1e-5)
        np.testing.assert_allclose(system.energies[f], src["energy"][j], rtol=1e-6)
        shift = system.coords[f].ravel() - src["coord"][j]
        assert 0.005 < shift.std() < 0.05 and np.abs(shift).max() < 0.2  # sigma 0.02 A


def test_streamed_frames_equal_the_eager_reading(large):
    eager, lazy = read_npy_system(large, ["H", "O"]), open_npy_system(large, ["H", "O"])
    assert (lazy.nframes, lazy.natoms, lazy.pbc, lazy.type_map) == (30, 192, True, ("H", "O"))
    assert lazy.labels == {"coords", "cells", "energies", "forces"} and lazy.frames_read == 0
    idx = [29, 3, 12, 3, 11, 24]  # across the three sets, unsorted, one repeated
    got, want = lazy.select_frames(idx), eager.select_frames(idx)
    np.testing.assert_array_equal(got.atom_types, want.atom_types)
    for name in ("coords", "cells", "energies", "forces"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert lazy.frames_read == 6
    np.testing.assert_array_equal(lazy.select_frames(slice(0, 4)).coords, eager.coords[:4])


def test_streamed_system_reads_headers_only(large, monkeypatch):
    """Opening maps the files; nothing but the first frame (a type-map check) is copied."""
    lazy = open_npy_system(large)
    assert isinstance(lazy._sets[0]["coords"], np.memmap)
    assert count_frames(large) == 30 and count_frames(large / "set.000") == 0


def test_streamed_errors_name_the_file(tmp_path):
    root = tmp_path / "water"
    shutil.copytree(WATER, root)
    np.save(root / "set.001" / "force.npy", np.zeros((80, 5)))
    with pytest.raises(DataError, match=r"set.001/force.npy: expected 576 values per frame"):
        open_npy_system(root)
    (root / "set.001" / "force.npy").unlink()
    with pytest.raises(DataError, match="force.npy is present in some sets but missing"):
        open_npy_system(root)
    shutil.rmtree(root / "set.001")
    energy = np.load(root / "set.000" / "energy.npy")
    energy[5] = np.nan
    np.save(root / "set.000" / "energy.npy", energy)
    lazy = open_npy_system(root)  # values are checked when frames are read
    lazy.select_frames([4, 6])
    with pytest.raises(DataError, match=r"energies: non-finite value nan in frame 1 .*\[4, 5\]"):
        lazy.select_frames([4, 5])


def test_open_systems_streams_only_above_the_threshold(large):
    assert not isinstance(open_systems([large], ["O", "H"])[0], NpyFrames)
    [lazy] = open_systems([large], ["O", "H"], stream_frames=29)
    assert isinstance(lazy, NpyFrames) and lazy.nframes == 30


def test_streamed_batches_equal_in_memory_batches(large):
    """The same frames give the same padded batch; the order is drawn per pass from a seed,
    so the position is two numbers and a restored copy continues the same stream."""
    eager = Dataset([read_npy_system(large)], 4.0, 40, batch_size=4)
    lazy = Dataset([open_npy_system(large)], 4.0, 40, batch_size=4)
    assert lazy.systems[0].streamed and lazy.systems[0].graphs is None
    lazy.pad_to(np.maximum(*eager.shapes, *lazy.shapes))
    eager.pad_to(np.maximum(*eager.shapes, *lazy.shapes))
    for idx in ([0, 1, 2, 3], [29, 13, 12, 5]):
        a, b = eager.systems[0].batch(np.array(idx)), lazy.systems[0].batch(np.array(idx))
        for x, y in zip(np.array(a, dtype=object).ravel(), np.array(b, dtype=object).ravel()):
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y)
    rng = np.random.default_rng(0)
    for _ in range(9):  # past the end of a pass (7 batches of 4 in 30 frames)
        lazy.plan(rng)
    state, rng_state = lazy.state(), rng.bit_generator.state
    assert set(state[0]) == {"order_seed", "cursor"}
    ahead = [lazy.plan(rng)[1] for _ in range(8)]
    again = Dataset([open_npy_system(large)], 4.0, 40, batch_size=4)
    again.restore(state)
    rng.bit_generator.state = rng_state
    np.testing.assert_array_equal(ahead, [again.plan(rng)[1] for _ in range(8)])
    assert len(set(np.concatenate(ahead[:5]).tolist())) == 20  # no repeat within a pass


def test_streamed_batches_beyond_the_sampled_shape_are_named(large):
    lazy = Dataset([open_npy_system(large)], 4.0, 40, batch_size=2)
    most = max(max_neighbors([g], 3.0) for g in lazy.systems[0].sample_graphs[:2])  # frames 0, 1
    lazy.limit_neighbors([(3.0, most)])
    lazy.systems[0].batch(np.array([0, 1]))  # within the sample's limit
    lazy.limit_neighbors([(3.0, most - 1)])
    with pytest.raises(DataError, match=rf"frames \[0, 1\] have an atom with {most} neighbors "
                                        rf"within 3.0 A, more than the {most - 1} slots"):
        lazy.systems[0].batch(np.array([0, 1]))
    lazy.systems[0].shape = (*lazy.systems[0].shape[:1], 8, 3)
    lazy.limit_neighbors([])
    with pytest.raises(DataError, match=r"edges, more than the 8 padded"):
        lazy.systems[0].batch(np.array([0, 1]))


def test_processes_read_disjoint_shares_and_draw_in_step(large):
    """Two processes (simulated by shard's index and count): each reads frames of its own half
    only, two passes over it, while their generators and positions stay identical."""
    shares, rngs, data = [], [np.random.default_rng(7) for _ in range(2)], []
    for index in range(2):
        lazy = open_npy_system(large)
        data.append(Dataset([lazy], 4.0, 40, batch_size=3))
        data[-1].shard(index, 2)
        lazy.frames_read = 0  # the shape sample (spread over all frames) read at construction
        read = [data[-1].plan(rngs[index])[1] for _ in range(10)]  # 30 frames: two passes of 15
        for idx in read[:2]:
            data[-1].systems[0].batch(idx)
        assert lazy.frames_read == 6
        shares.append(np.concatenate(read))
    assert set(shares[0].tolist()) == set(range(15))
    assert set(shares[1].tolist()) == set(range(15, 30))
    assert rngs[0].bit_generator.state == rngs[1].bit_generator.state
    assert data[0].state()[0]["cursor"] == data[1].state()[0]["cursor"] == 15
    with pytest.raises(DataError, match="30 frames, fewer than the 31 processes"):
        data[0].shard(0, 31)


def test_missing_type_map_raw_assumes_the_model_map_with_a_warning(tmp_path):
    root = tmp_path / "water"
    shutil.copytree(WATER, root)
    (root / "type_map.raw").unlink()
    with pytest.raises(DataError, match="type_map.raw: missing, and no model type_map given"):
        open_npy_system(root)
    with pytest.warns(UserWarning, match="no type_map.raw; assuming type.raw indexes"):
        lazy = open_npy_system(root, ["O", "H"])
    assert lazy.type_map == ("O", "H") and lazy.nframes == 160
