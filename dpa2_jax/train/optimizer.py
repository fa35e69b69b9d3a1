"""The optimizer: Adam on the learning-rate schedule, after optional clipping by global norm,
applied to the trainable leaves only.

DeePMD-kit trains with Adam (PyTorch defaults: beta1 0.9, beta2 0.999, eps 1e-8) and clips
gradients to ``training.gradient_max_norm`` when it is positive. Statistics are buffers there,
not parameters: the environment-matrix ``davg``/``dstd``, the fitting's ``bias_atom_e`` and
fparam/aparam normalisation (``fparam_avg``, ``fparam_inv_std``, ``aparam_avg``,
``aparam_inv_std``) and the model's ``out_bias`` never change during training, so here they get no update and no Adam
moments (``optax.multi_transform`` with ``set_to_zero``), and they do not enter the clipped norm.
"""

from __future__ import annotations

import jax
import optax

from dpa2_jax.typing import Params

FROZEN_LEAVES = ("davg", "dstd", "bias_atom_e", "out_bias",
                 "fparam_avg", "fparam_inv_std", "aparam_avg", "aparam_inv_std")  # fmt: skip


def trainable_labels(params: Params) -> Params:
    """ "train" or "frozen" for every leaf of ``params`` (frozen: the statistics above)."""

    def label(path, _):
        name = getattr(path[-1], "key", None)
        return "frozen" if name in FROZEN_LEAVES else "train"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(
    schedule: optax.Schedule, gradient_max_norm: float | None = None
) -> optax.GradientTransformation:
    """Adam(schedule) on the trainable leaves, preceded by clipping to ``gradient_max_norm``
    (off when None or <= 0); the statistics leaves are left as they are."""
    adam = optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)
    if gradient_max_norm and gradient_max_norm > 0:
        adam = optax.chain(optax.clip_by_global_norm(gradient_max_norm), adam)
    return optax.multi_transform({"train": adam, "frozen": optax.set_to_zero()}, trainable_labels)
