"""Several processes, one training run: ``jax.distributed`` start-up and who does what.

Every process runs the same ``dpa2-jax train`` on the same input and sees every device of the
run in one ``Mesh`` (``train/parallel.py``); the data-parallel step keeps the state identical in
all of them. Process 0, the chief, writes lcurve.out, the progress bar and the model files;
every process takes part in an Orbax checkpoint save or restore (each writes the shards it owns
into one shared folder, so the workdir must be on a file system all hosts see).

Start-up (``initialize``), from the ``--distributed`` flags that ``add_arguments`` defines:

    --distributed                        on; alone, JAX detects the cluster: Cloud TPU pods,
                                         SLURM (srun) and Open MPI (mpirun) need no other flag
    --coordinator-address HOST:PORT      process 0's address, a free port on it
    --num-processes N                    processes in the run
    --process-id I                       this process, 0 <= I < N

A flag left out falls back on JAX's environment (``JAX_COORDINATOR_ADDRESS``, then cluster
detection). On CPU the collectives go through gloo, so a multi-process run works on one machine
(the tests do this with two processes on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import logging

import jax
import numpy as np

from dpa2_jax.errors import ConfigError

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``--distributed`` flags (module docstring) to ``parser``."""
    group = parser.add_argument_group(
        "multi-process training",
        "one process per host (or per GPU under SLURM); all run the same command",
    )
    group.add_argument("--distributed", action="store_true",
                       help="start jax.distributed; without the flags below JAX reads the "
                            "cluster's environment (TPU pod, SLURM, Open MPI)")  # fmt: skip
    group.add_argument("--coordinator-address", metavar="HOST:PORT",
                       help="address of process 0 and a free port on it")  # fmt: skip
    group.add_argument("--num-processes", type=int, metavar="N",
                       help="number of processes in the run")  # fmt: skip
    group.add_argument("--process-id", type=int, metavar="I",
                       help="this process's index, 0 <= I < N")  # fmt: skip


def initialize(args: argparse.Namespace) -> bool:
    """Starts ``jax.distributed`` when ``args.distributed``, before any other JAX call;
    returns whether it did. Flags given are passed on, the others left to JAX's detection."""
    if not getattr(args, "distributed", False):
        for flag in ("coordinator_address", "num_processes", "process_id"):
            if getattr(args, flag, None) is not None:
                raise ConfigError(f"--{flag.replace('_', '-')} needs --distributed")
        return False
    kwargs = {
        "coordinator_address": args.coordinator_address,
        "num_processes": args.num_processes,
        "process_id": args.process_id,
    }
    jax.distributed.initialize(**{k: v for k, v in kwargs.items() if v is not None})
    logger.info(
        "process %d of %d: %d local devices, %d in all",
        jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count(),
    )  # fmt: skip
    return True


def is_chief() -> bool:
    """Whether this process writes logs, lcurve.out, progress and model files (process 0)."""
    return jax.process_index() == 0


def shard_frames(n: int, process_index: int, process_count: int) -> np.ndarray:
    """This process's share of ``n`` indices (frames, systems, validation batches): contiguous
    blocks, disjoint, together all of them, sizes differing by at most one.

    Returns:
      [n_mine] int64 indices.
    """
    if not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index={process_index}: expected 0 <= index < process_count={process_count}"
        )
    return np.array_split(np.arange(n), process_count)[process_index]
