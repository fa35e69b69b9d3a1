"""The training state: a pytree holding no functions, so Orbax saves and restores it as is."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from dpa2_jax.typing import Params


@flax.struct.dataclass
class TrainState:
    """step: [] int32 optimizer steps taken; params: the model's tree; opt_state: ``Optimizer.init``'s."""

    step: jax.Array
    params: Params
    opt_state: Any


def create_state(params: Params, optimizer) -> TrainState:
    """Step 0 of training ``params`` with ``optimizer`` (``train/optimizer.Optimizer``)."""
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params)
    )
