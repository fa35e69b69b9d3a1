"""The training loop's batches, prepared one step ahead: while the device runs step n, a
background thread draws step n+1's task, system and frames, reads the frames (from memory, or
from disk for streamed systems), builds their neighbor graphs and pads them; the loop only puts
the finished batch on the devices.

The thread draws from the loop's seeded host generator in the same order the loop would, so the
batches are the same as drawing them in the loop, and a checkpoint saved after step n records
the generator and data positions as they were right after step n's draw (each batch comes with
that snapshot): a restart continues the same stream. Nothing else draws from that generator or
moves the training data's positions (a multi-task display row peeks at the other tasks' data
with its own generator, ``Report``), so the thread owns them while it runs.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from dpa2_jax.graph.dataset import position_state
from dpa2_jax.train.tasks import draw_task

AHEAD = 2  # batches prepared ahead at most (one being used, one ready, one in preparation)


class BatchStream:
    """``next()`` -> (task name, system index, device batch) for steps ``first`` .. ``last-1``.

    Args:
      run: the ``RunConfig``. data: ``{task: TaskData}``. devices: ``parallel.Devices``.
      rng: the loop's host generator (already restored on a restart).
      first, last: the steps to prepare (the loop's range), so that the thread draws exactly
        what the loop would and the generator ends where the loop's would.
    """

    def __init__(self, run, data: dict, devices, rng: np.random.Generator, first: int,
                 last: int):  # fmt: skip
        self.run, self.data, self.devices, self.rng = run, data, devices, rng
        self._position = None
        self._queue: queue.Queue = queue.Queue(maxsize=AHEAD)
        self._stop = threading.Event()
        self._thread = None
        if last > first:
            self._thread = threading.Thread(target=self._work, args=(last - first,),
                                            name="dpa2-jax batches", daemon=True)  # fmt: skip
            self._thread.start()

    def _draw(self) -> tuple:
        """One step's (task, system index, host batch, position after the draw)."""
        name = draw_task(self.run, self.rng)
        k, host = self.devices.host_batch(self.data[name].train, self.rng)
        return name, k, host, self._snapshot()

    def _snapshot(self) -> dict:
        """The position after a draw, cheaply (made JSON-ready only when saved: ``position``)."""
        return {"rng": self.rng.bit_generator.state,
                "data": {n: [s.position() for s in d.train.systems]
                         for n, d in self.data.items()}}  # fmt: skip

    def _work(self, count: int) -> None:
        try:
            for _ in range(count):
                if not self._put(self._draw()):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the loop, raised there
            self._put(err)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def next(self) -> tuple:
        """The next step's (task name, system index, batch on the devices)."""
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        name, k, host, self._position = item
        return name, k, self.devices.put(host)

    def position(self) -> dict:
        """{"rng": generator state, "data": {task: positions}} right after the draw of the
        last batch ``next`` gave: what a restart sets back."""
        if self._position is None:
            return None
        data = {n: [position_state(p) for p in ps] for n, ps in self._position["data"].items()}
        return {"rng": self._position["rng"], "data": data}

    def close(self) -> None:
        """Stops the thread (a batch in preparation is finished, then dropped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
