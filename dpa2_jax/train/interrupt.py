"""Stopping a run cleanly: SIGINT (Ctrl-C) or SIGTERM (a cluster's end of time slot) asks the
training loop to stop after the step in flight, where it saves a checkpoint of that step and
raises ``errors.Interrupted``; a second SIGINT stops at once (``KeyboardInterrupt``).
Handlers are installed only in the main thread, and the previous ones are put back after."""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """Context manager: ``signum`` is None until a stop is asked for, then the signal."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.signum = signum

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""
