"""The optimizer: Adam per parameter group, on the learning rate of the global step.

Groups: ``"descriptor"`` (with the type embedding) and one ``"head/NAME"`` per fitting head.
Each group has its own Adam moments and step count, as each tensor does in PyTorch's Adam,
which DeePMD-kit uses (beta1 0.9, beta2 0.999, eps 1e-8):

    u = -lr(step) * scale_group * m_hat / (sqrt(v_hat) + eps)

A step updates only the groups it is given: in multi-task training the sampled task's head and
the shared descriptor. The other heads keep their parameters *and* their moments and counts bit
for bit (a zero gradient would still move them through Adam's momentum). Before Adam, gradients
are clipped to ``gradient_max_norm`` by their global norm when it is positive.

Statistics are buffers in DeePMD-kit, not parameters: the environment-matrix ``davg``/``dstd``,
the fitting's ``bias_atom_e`` and fparam/aparam normalisation and the model's ``out_bias`` never
change during training; they belong to no group. Fine-tuning options: ``freeze_descriptor``
(the descriptor joins them: train the heads only) and ``descriptor_lr_scale`` (a smaller learning
rate for the pretrained descriptor than for the head).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import optax

from dpa2_jax.typing import Params

FROZEN_LEAVES = ("davg", "dstd", "bias_atom_e", "out_bias",
                 "fparam_avg", "fparam_inv_std", "aparam_avg", "aparam_inv_std")  # fmt: skip
DESCRIPTOR = "descriptor"


def head_group(name: str) -> str:
    """The group of head ``name``'s parameters."""
    return f"head/{name}"


def param_groups(params: Params, freeze_descriptor: bool = False) -> Params:
    """The group of every leaf of ``params`` (``"descriptor"``, ``"head/NAME"``), or None for
    a leaf that never trains (statistics; the descriptor when frozen)."""

    def label(path, _):
        name = getattr(path[-1], "key", None)
        if name in FROZEN_LEAVES:
            return None
        top = path[0].key
        if top == "heads":
            return head_group(path[1].key)
        return None if freeze_descriptor else DESCRIPTOR

    return jax.tree_util.tree_map_with_path(label, params)


def _select(groups: Params, tree: Params, group: str) -> Params:
    """``tree`` with the leaves of other groups replaced by None (an empty subtree)."""
    return jax.tree.map(lambda g, x: x if g == group else None, groups, tree,
                        is_leaf=lambda x: x is None)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """Adam per group (module docstring). State: {group: optax ScaleByAdamState}."""

    gradient_max_norm: float | None = None
    freeze_descriptor: bool = False
    descriptor_lr_scale: float = 1.0

    def groups(self, params: Params) -> Params:
        return param_groups(params, self.freeze_descriptor)

    def group_names(self, params: Params) -> tuple[str, ...]:
        leaves = jax.tree.leaves(self.groups(params), is_leaf=lambda x: x is None)
        return tuple(sorted({g for g in leaves if g is not None}))

    def init(self, params: Params) -> dict:
        groups = self.groups(params)
        adam = _adam()
        return {g: adam.init(_select(groups, params, g)) for g in self.group_names(params)}

    def update(
        self, grads: Params, state: dict, params: Params, lr, active: Iterable[str] | None = None
    ) -> tuple[Params, dict]:
        """(updates to add to ``params``, new state). ``active``: the groups this step updates
        (None: all); the others and the statistics get zero updates and keep their state."""
        groups = self.groups(params)
        names = self.group_names(params)
        active = set(names if active is None else active) & set(names)
        grads = jax.tree.map(lambda g, x: jnp.zeros_like(x) if g not in active else x,
                             groups, grads, is_leaf=lambda x: x is None)  # fmt: skip
        if self.gradient_max_norm and self.gradient_max_norm > 0:
            norm = optax.global_norm(grads)
            grads = jax.tree.map(
                lambda x: x * jnp.minimum(1.0, self.gradient_max_norm / jnp.maximum(norm, 1e-30)),
                grads,
            )  # torch's clip_grad_norm_ also divides by (norm + 1e-6); rounding-level apart
        adam, new_state = _adam(), dict(state)
        updates = jax.tree.map(jnp.zeros_like, params)
        for g in sorted(active):
            u, new_state[g] = adam.update(_select(groups, grads, g), state[g])
            scale = -lr * (self.descriptor_lr_scale if g == DESCRIPTOR else 1.0)
            updates = jax.tree.map(
                lambda old, new: old if new is None else (scale * new).astype(old.dtype),
                updates, u, is_leaf=lambda x: x is None,
            )  # fmt: skip
        return updates, new_state


def _adam() -> optax.GradientTransformation:
    return optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)


def make_optimizer(
    gradient_max_norm: float | None = None,
    freeze_descriptor: bool = False,
    descriptor_lr_scale: float = 1.0,
) -> Optimizer:
    """The training optimizer (module docstring)."""
    return Optimizer(gradient_max_norm, freeze_descriptor, descriptor_lr_scale)
