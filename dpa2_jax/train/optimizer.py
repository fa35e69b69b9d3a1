"""The optimizer: Adam on the learning-rate schedule, after optional clipping by global norm.

DeePMD-kit trains with Adam (PyTorch defaults: beta1 0.9, beta2 0.999, eps 1e-8) and clips
gradients to ``training.gradient_max_norm`` when it is positive.
"""

from __future__ import annotations

import optax


def make_optimizer(
    schedule: optax.Schedule, gradient_max_norm: float | None = None
) -> optax.GradientTransformation:
    """Adam(schedule), preceded by clipping to ``gradient_max_norm`` (off when None or <= 0)."""
    adam = optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)
    if gradient_max_norm and gradient_max_norm > 0:
        return optax.chain(optax.clip_by_global_norm(gradient_max_norm), adam)
    return adam
