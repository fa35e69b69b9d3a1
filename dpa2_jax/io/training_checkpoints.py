"""Training checkpoints: an Orbax ``CheckpointManager`` over ``WORKDIR/checkpoints``.

Each checkpoint holds the ``TrainState`` (step, params, optimizer state) as an Orbax PyTree,
restored into a typed target built from the config (never guessed from keys), and a JSON item
with the data position and host RNG state (an exact restart) and the config it was made with.
Orbax writes into a temporary folder and renames it when complete, so a checkpoint cut short by
a killed process is never found by ``latest_step``.
"""

from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp

from dpa2_jax.errors import CheckpointError


class TrainCheckpoints:
    """Save and restore (state, meta) pairs, keeping the last ``max_to_keep``."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 5):
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Writes checkpoint ``step`` (asynchronously; ``close`` waits for it)."""
        try:
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
            )
        except OSError as err:  # a full disk or a missing folder: earlier checkpoints remain
            raise CheckpointError(f"{self.directory}: saving step {step} failed: {err}") from err

    def read_meta(self, step: int | None = None) -> dict:
        """The JSON item of ``step`` (default: latest) alone, e.g. to compare configs first."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory}: no checkpoint to restart from")
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
        """(state restored into ``target``'s structure, meta) of ``step`` (default: latest)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory}: no checkpoint to restart from")
        try:
            out = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
                ),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(
                f"{self.directory}: checkpoint {step} does not match this config's model and "
                f"optimizer ({err})"
            ) from err
        return out.state, out.meta

    def close(self) -> None:
        """Waits for the last save; a write that failed in the background (a full disk) is
        reported here, with the earlier checkpoints left in place."""
        try:
            self.manager.wait_until_finished()
        except OSError as err:
            raise CheckpointError(f"{self.directory}: finishing a save failed: {err}") from err
        finally:
            self.manager.close()
