"""train/pipeline.py: batches drawn ahead by a thread are the loop's own draws, with the
position right after each; a failure in the thread is raised in the loop."""

import types

import jax
import numpy as np
import pytest

from dpa2_jax.data.npy_system import read_npy_system
from dpa2_jax.errors import DataError
from dpa2_jax.graph.dataset import Dataset
from dpa2_jax.train.parallel import Devices, make_mesh
from dpa2_jax.train.pipeline import BatchStream
from tests.conftest import SYSTEMS


@pytest.fixture(scope="module")
def systems():
    return [read_npy_system(SYSTEMS / "water" / f"data_{i}") for i in (0, 1)]


def _data(systems):
    return {"default": types.SimpleNamespace(train=Dataset(systems, 4.0, 40, batch_size=2))}


def _run(multi_task: bool):
    return types.SimpleNamespace(multi_task=multi_task, tasks=[types.SimpleNamespace(
        name="default", prob=1.0)])  # fmt: skip


def test_thread_draws_what_the_loop_would(systems):
    """The thread's batches and positions equal drawing in the loop, step by step."""
    devices = Devices(make_mesh(make_mesh().devices.flat[:1]))
    data, mine = _data(systems), _data(systems)["default"].train
    stream = BatchStream(_run(False), data, devices, np.random.default_rng(3), 0, 7)
    rng = np.random.default_rng(3)
    assert stream.threaded
    for _ in range(7):
        name, k, batch = stream.next()  # the thread runs ahead; the position is this batch's
        k_loop, batch_loop = devices.host_batch(mine, rng)
        assert (name, k) == ("default", k_loop)
        for x, y in zip(jax.tree.leaves(batch), jax.tree.leaves(batch_loop), strict=True):
            np.testing.assert_array_equal(x, y)
        assert stream.position() == {"rng": rng.bit_generator.state,
                                     "data": {"default": mine.state()}}  # fmt: skip
    stream.close()
    assert stream.rng.bit_generator.state == rng.bit_generator.state  # no draw beyond step 7


def test_a_failure_in_the_thread_is_raised_in_the_loop(systems):
    data = _data(systems)
    def broken(dataset, rng):
        raise DataError("frames [3]: broken")

    devices = types.SimpleNamespace(host_batch=broken, put=lambda batch: batch)
    stream = BatchStream(_run(False), data, devices, np.random.default_rng(0), 0, 5)
    with pytest.raises(DataError, match=r"frames \[3\]: broken"):
        stream.next()
    stream.close()
