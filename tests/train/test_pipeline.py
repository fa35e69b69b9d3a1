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
from dpa2_jax.train.tasks import draw_task
from tests.conftest import SYSTEMS


@pytest.fixture(scope="module")
def systems():
    return [read_npy_system(SYSTEMS / "water" / f"data_{i}") for i in (0, 1)]


def _data(systems, names=("default",)):
    return {name: types.SimpleNamespace(train=Dataset(systems, 4.0, 40, batch_size=2))
            for name in names}  # fmt: skip


def _run(names=("default",)):
    probs = np.arange(1.0, len(names) + 1) / np.arange(1.0, len(names) + 1).sum()
    tasks = [types.SimpleNamespace(name=name, prob=p) for name, p in zip(names, probs)]
    return types.SimpleNamespace(multi_task=len(names) > 1, tasks=tasks)


@pytest.mark.parametrize("names", [("default",), ("water", "more_water")])
def test_thread_draws_what_the_loop_would(systems, names):
    """The thread's batches and positions equal drawing in the loop, step by step (one task,
    and two drawn with probabilities 1/3 and 2/3)."""
    devices = Devices(make_mesh(make_mesh().devices.flat[:1]))
    run, data, mine = _run(names), _data(systems, names), _data(systems, names)
    stream = BatchStream(run, data, devices, np.random.default_rng(3), 0, 7)
    rng = np.random.default_rng(3)
    for _ in range(7):
        name, k, batch = stream.next()  # the thread runs ahead; the position is this batch's
        name_loop = draw_task(run, rng)
        k_loop, batch_loop = devices.host_batch(mine[name_loop].train, rng)
        assert (name, k) == (name_loop, k_loop)
        for x, y in zip(jax.tree.leaves(batch), jax.tree.leaves(batch_loop), strict=True):
            np.testing.assert_array_equal(x, y)
        assert stream.position() == {"rng": rng.bit_generator.state,
                                     "data": {n: d.train.state() for n, d in mine.items()}}
    stream.close()
    assert stream.rng.bit_generator.state == rng.bit_generator.state  # no draw beyond step 7


def test_peek_leaves_the_data_position(systems):
    """A display row's batch of another task: drawn, but the training stream is untouched."""
    data = _data(systems)["default"].train
    data.sample(np.random.default_rng(0))
    before = data.state()
    k, batch = data.peek(np.random.default_rng(1))
    assert data.state() == before and int(batch.n_node[:-1].sum()) == 2 * 192


def test_a_failure_in_the_thread_is_raised_in_the_loop(systems):
    data = _data(systems)
    def broken(dataset, rng):
        raise DataError("frames [3]: broken")

    devices = types.SimpleNamespace(host_batch=broken, put=lambda batch: batch)
    stream = BatchStream(_run(), data, devices, np.random.default_rng(0), 0, 5)
    with pytest.raises(DataError, match=r"frames \[3\]: broken"):
        stream.next()
    stream.close()
