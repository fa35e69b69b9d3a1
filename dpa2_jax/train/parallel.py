"""Data-parallel training over every device of a one-axis ``Mesh`` ("data"), on one or many hosts.

Each device holds a full copy of the ``TrainState`` (replicated) and its own padded batch (the
leading axis of a stacked batch, sharded over "data"). The step of ``train/step.py`` runs per
device inside ``jax.shard_map`` with ``axis_name="data"``: gradients, loss and metrics are
averaged over devices (``lax.pmean``) before the optimizer update, so every device applies the
same update and the parameters and Adam state stay identical everywhere, without a broadcast.
``jax.sharding`` with ``jax.shard_map`` is the path JAX develops; ``jax.pmap`` is legacy and
not used here (flax's ``examples/imagenet`` and jraph's ``train_pmap.py`` show the old way).

Global batch: N devices with per-device batches of B frames train like one device with one batch
of the N x B frames when every device's batch has the same number of real frames and of real
atoms (as when all devices draw from one system, ``sample_device_batches``): DeePMD's loss
averages energy and virial terms per frame and force terms per atom, and a mean of N equal-sized
means is the mean of their union. Otherwise the step averages per-device means, so a frame (an
atom) of a smaller batch weighs more than one of a larger batch. The metrics are means over
devices too: the loss is the union batch's under the condition above, while ``rmse`` and
``rmse_*``, square roots taken per device, are means of per-device RMSEs (slightly below the
RMSE of the union); a term that one device's batch lacks (NaN there) is NaN in the mean.

Multi-host: every process runs the same program on the same ``Mesh`` of all devices (JAX's
multi-controller model); each process passes only the batches of its own devices
(``shard_batch`` via ``jax.make_array_from_process_local_data``) and reads replicated results
(the state, the metrics) locally. ``train/distributed.py`` starts the processes.

``check_vma=False``: with JAX's varying-axes checks on, the cotangent of any value that is the
same on every device is summed over devices when transposed. That sums the gradients with respect
to the replicated parameters (``step.py``'s ``pmean`` then sees a sum, not a mean) and, worse,
the forces, which ``model/derivatives.py`` takes as the gradient with respect to a zero
displacement created inside the model (the same on every device). Off, every device
differentiates its own batch and the explicit ``pmean`` is the only reduction, as under pmap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jraph
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dpa2_jax.graph.batching import stack_batches
from dpa2_jax.train.state import TrainState
from dpa2_jax.train.step import make_eval_step, make_train_step

DATA = "data"  # the mesh axis the batch is split over
REPLICATED = PartitionSpec()
SPLIT = PartitionSpec(DATA)

__all__ = [
    "DATA",
    "Devices",
    "local_device_indices",
    "make_mesh",
    "make_parallel_eval_step",
    "make_parallel_train_step",
    "replicate",
    "sample_device_batches",
    "shard_batch",
    "stack_batches",
    "step_with_rate",
    "unreplicate",
]


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis ("data") mesh of ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA,))


def local_device_indices(mesh: Mesh) -> list[int]:
    """Positions along "data" of this process's devices: which per-device batches it supplies."""
    me = jax.process_index()
    return [k for k, d in enumerate(mesh.devices.flat) if d.process_index == me]


def replicate(mesh: Mesh, tree):
    """``tree`` (host or device arrays, the same values in every process) copied onto every
    device of ``mesh``: a global array per leaf, replicated along "data"."""
    sharding = NamedSharding(mesh, REPLICATED)

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def unreplicate(tree):
    """Host (numpy) copy of a replicated tree, read from this process's first local copy."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_shards[0].data), tree)


def shard_batch(mesh: Mesh, stacked: jraph.GraphsTuple) -> jraph.GraphsTuple:
    """Global arrays split along "data" from this process's stacked batches.

    Args:
      mesh: the "data" mesh.
      stacked: ``stack_batches`` of this process's per-device batches, in the order of
        ``local_device_indices(mesh)``: every leaf [n_local_device, ...]. On one process this
        is every device's batch.

    Returns:
      The batch as global arrays of leading size n_device, one slice per device.
    """
    sharding = NamedSharding(mesh, SPLIT)
    n_device = mesh.devices.size

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, x, (n_device, *x.shape[1:]))

    return jax.tree.map(put, stacked)


def sample_device_batches(dataset, rng: np.random.Generator, mesh: Mesh):
    """One training step's batches: a system drawn as ``Dataset.sample`` draws it, then
    n_device of its next batches (one padded shape, equal frame and atom counts: the module
    docstring's condition). Every process draws the same (same ``rng`` state and data) and
    keeps its own devices' batches, so the data position stays identical across processes.
    A streamed system sharded over processes (``SystemBatches.shard``) gives each process's
    devices batches of that process's frames only; the positions still move in step (equal
    shares, the same number of devices per process).

    Returns:
      (system index, ``stack_batches`` of this process's batches, ready for ``shard_batch``).
    """
    k = int(rng.choice(len(dataset.systems), p=dataset.probs))
    local, system = local_device_indices(mesh), dataset.systems[k]
    if system.share is not None:  # streamed, sharded: this process's frames, its devices only
        return k, stack_batches([system.next_batch(rng) for _ in local])
    batches = [system.next_batch(rng) for _ in range(mesh.devices.size)]
    return k, stack_batches([batches[i] for i in local])


def make_parallel_train_step(
    mesh: Mesh, *args, compiler_options: dict | None = None, **kwargs
) -> Callable[[TrainState, jraph.GraphsTuple], tuple[TrainState, dict]]:
    """Jitted ``step(state, batch) -> (state, metrics)`` over every device of ``mesh``: the
    step of ``make_train_step(*args, **kwargs)`` per device, averaged over "data".

    ``state`` is replicated (``replicate``) and donated; ``batch`` comes from ``shard_batch``.
    The returned state and metrics (device means, module docstring) are replicated.
    """
    step = make_train_step(*args, **kwargs, axis_name=DATA)

    def per_device(state, batch):  # batch: this device's [1, ...] slice of the "data" axis
        return step(state, jax.tree.map(lambda x: x[0], batch))

    mapped = jax.shard_map(per_device, mesh=mesh, in_specs=(REPLICATED, SPLIT),
                           out_specs=(REPLICATED, REPLICATED), check_vma=False)  # fmt: skip
    return jax.jit(mapped, donate_argnums=0, compiler_options=compiler_options)


def make_parallel_eval_step(mesh: Mesh, *args, compiler_options: dict | None = None,
                            **kwargs) -> Callable:  # fmt: skip
    """Jitted ``eval_step(params, batch, lr) -> metrics``: ``make_eval_step(*args, **kwargs)``
    per device, metrics averaged over devices (replicated)."""
    evaluate = make_eval_step(*args, **kwargs)

    def per_device(params, batch, lr):  # batch: [1, ...] as in make_parallel_train_step
        metrics = evaluate(params, jax.tree.map(lambda x: x[0], batch), lr)
        return jax.lax.pmean(metrics, DATA)

    mapped = jax.shard_map(per_device, mesh=mesh, in_specs=(REPLICATED, SPLIT, REPLICATED),
                           out_specs=REPLICATED, check_vma=False)  # fmt: skip
    return jax.jit(mapped, compiler_options=compiler_options)


@dataclasses.dataclass(frozen=True)
class Devices:
    """The devices a run trains on, so that the loop reads the same for one or many: the state
    placed on them, host copies of parameters, a step's batch and the jitted train step."""

    mesh: Mesh

    @property
    def count(self) -> int:
        return self.mesh.devices.size

    def place(self, tree):
        """``tree`` on the devices: replicated on several, as is on one."""
        return replicate(self.mesh, tree) if self.count > 1 else tree

    def host(self, tree):
        """What an evaluation on one device takes: unreplicated (numpy) from several."""
        return unreplicate(tree) if self.count > 1 else tree

    def sample(self, dataset, rng: np.random.Generator):
        """(system index, batch): ``Dataset.sample`` on one device, one batch per device of one
        system (``sample_device_batches``) sharded over several."""
        k, host = self.host_batch(dataset, rng)
        return k, self.put(host)

    def host_batch(self, dataset, rng: np.random.Generator):
        """``sample``'s draw and host (numpy) batch, before ``put``: safe in another thread."""
        if self.count == 1:
            return dataset.sample(rng)
        return sample_device_batches(dataset, rng, self.mesh)

    def put(self, host):
        """A ``host_batch`` on the devices: as is on one, ``shard_batch`` over several."""
        return host if self.count == 1 else shard_batch(self.mesh, host)

    def train_step(self, *args, compiler_options: dict | None = None) -> Callable:
        """Jitted, state-donating ``make_train_step(*args)``, data parallel on several.

        On one device the learning rate comes from its own small jitted schedule and enters the
        step as an argument (``step_with_rate``), so the large compiled step does not depend on
        ``numb_steps`` (which sets the schedule's decay) and the persistent compilation cache
        serves runs of any length."""
        if self.count > 1:
            return make_parallel_train_step(self.mesh, *args, compiler_options=compiler_options)
        return step_with_rate(*args, compiler_options=compiler_options)


@dataclasses.dataclass(frozen=True)
class _GivenRate:
    """A schedule that returns a learning rate computed outside the step (``step_with_rate``)."""

    lr: jax.Array
    start_lr: float

    def __call__(self, step):
        return self.lr


def step_with_rate(model_cfg, head, loss_cfg, optimizer, schedule, *args,
                   compiler_options: dict | None = None) -> Callable:  # fmt: skip
    """``step(state, batch) -> (state, metrics)``: ``make_train_step`` with the same arguments,
    as two jitted calls: ``schedule(state.step)``, then the state-donating step taking that
    rate as an argument (the same numbers as computing it inside)."""
    rate = jax.jit(schedule.__call__)

    def inner(state, batch, lr):
        given = _GivenRate(lr, schedule.start_lr)
        return make_train_step(model_cfg, head, loss_cfg, optimizer, given, *args)(state, batch)

    jitted = jax.jit(inner, donate_argnums=0, compiler_options=compiler_options)

    def step(state, batch):
        return jitted(state, batch, rate(state.step))

    return step
