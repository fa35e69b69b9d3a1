"""One training step and one evaluation, as pure functions over a padded graph batch.

``make_train_step`` returns ``step(state, batch) -> (state, metrics)``: predictions of one head
from the model's ``make_forces_fn``, DeePMD's energy loss with learning-rate-linked prefactors,
its gradient, and the optimizer update of that head and the descriptor only (the other heads of a
multi-task model keep their parameters and Adam state). The head is static: one compiled step per
task. Nothing here knows about devices: ``axis_name`` names the device axis that the
data-parallel code maps the step over, and gradients and metrics are averaged over it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax
from jax import lax

from dpa2_jax.descriptor import Layout
from dpa2_jax.model import make_forces_fn
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.train.loss import EnergyLossConfig, energy_loss
from dpa2_jax.train.optimizer import DESCRIPTOR, Optimizer, head_group
from dpa2_jax.train.schedules import ExpDecay
from dpa2_jax.train.state import TrainState


def make_loss_fn(
    model_cfg: ModelConfig, head: str | None, loss_cfg: EnergyLossConfig, start_lr: float,
    layout: Layout = Layout(),
) -> Callable:  # fmt: skip
    """``loss_fn(params, batch, lr) -> (loss, metrics)``; ``start_lr``: the prefactors'
    reference rate (``learning_rate.start_lr``, ``ExpDecay.start_lr``)."""
    forces_fn = make_forces_fn(model_cfg, head, layout)

    def loss_fn(params, batch, lr):
        return energy_loss(loss_cfg, forces_fn(params, batch), batch, lr, start_lr)

    return loss_fn


def make_train_step(
    model_cfg: ModelConfig,
    head: str | None,
    loss_cfg: EnergyLossConfig,
    optimizer: Optimizer,
    schedule: ExpDecay,
    layout: Layout = Layout(),
    axis_name: str | None = None,
) -> Callable[[TrainState, object], tuple[TrainState, dict]]:
    """``step(state, batch) -> (state, metrics)``; metrics are the loss terms of this batch
    before the update (DeePMD's training columns) and the learning rate used. ``schedule``
    gives the step's learning rate and, as ``schedule.start_lr``, the loss prefactors'
    reference rate. Only the groups of ``head`` and the descriptor are updated
    (``train/optimizer.py``)."""
    head = model_cfg.resolve_head(head)
    loss_fn = make_loss_fn(model_cfg, head, loss_cfg, schedule.start_lr, layout)
    active = (DESCRIPTOR, head_group(head))

    def step(state: TrainState, batch) -> tuple[TrainState, dict]:
        lr = schedule(state.step)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, lr)
        if axis_name is not None:
            grads, metrics, loss = lax.pmean((grads, metrics, loss), axis_name)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params, lr, active)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, {**metrics, "loss": loss, "lr": lr}

    return step


def make_eval_step(
    model_cfg: ModelConfig, head: str | None, loss_cfg: EnergyLossConfig, start_lr: float,
    layout: Layout = Layout(),
) -> Callable:  # fmt: skip
    """``eval_step(params, batch, lr) -> metrics`` (the loss terms, no update)."""
    loss_fn = make_loss_fn(model_cfg, head, loss_cfg, start_lr, layout)

    def eval_step(params, batch, lr):
        loss, metrics = loss_fn(params, batch, lr)
        return {**metrics, "loss": loss}

    return eval_step
