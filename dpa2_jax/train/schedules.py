"""Learning-rate schedules: DeePMD-kit's exponential decay with optional linear warmup.

After `warmup_steps` steps of linear warmup from `warmup_start_factor * start_lr` to `start_lr`,
step t of the decay phase (t = step - warmup_steps) has

    lr(t) = max(start_lr * r^floor(t / s), stop_lr)      (stepped, the default)
    lr(t) = max(start_lr * r^(t / s), stop_lr)           (smooth: true)

with s = `decay_steps` and, unless `decay_rate` gives r directly,

    r = (max(stop_lr, 1e-10) / start_lr)^(s / T),    T = num_steps - warmup_steps,

so that lr(T) = stop_lr. When r is derived and s >= T, DeePMD-kit replaces s by 100 if
T // 10 > 100, else by T // 100 + 1. With an explicit `decay_rate`, `stop_lr` is only a floor.

Matches `LearningRateExp` and `BaseLR.value` in DeePMD-kit 3.2.0's
`deepmd/dpmodel/utils/learning_rate.py`; option names and defaults are those of the
`learning_rate` section of its input (`deepmd/utils/argcheck.py`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from dpa2_jax.errors import ConfigError
from dpa2_jax.options import check_field_types
from dpa2_jax.typing import Array

DEFAULT_STOP_LR = 5e-8  # DeePMD-kit's value when neither stop_lr nor stop_lr_ratio is given
KNOWN_TYPES = ("exp", "cosine", "wsd")  # DeePMD-kit's schedules; only "exp" is implemented
SCALE_BY_WORKER = ("linear", "sqrt", "none")


@dataclasses.dataclass(frozen=True)
class LearningRateConfig:
    """DeePMD-kit's `learning_rate` options for `"type": "exp"` (hashable, a static argument).

    Attributes:
        start_lr: learning rate at the start of the decay phase (after warmup); required.
        type: schedule type; only "exp" is supported.
        stop_lr: learning rate reached at the end of training (a floor when `decay_rate` is
            given). Exclusive with `stop_lr_ratio`; when both are None, 5e-8 as in DeePMD-kit.
        stop_lr_ratio: stop_lr = start_lr * stop_lr_ratio.
        warmup_steps: steps of linear warmup; exclusive with a non-zero `warmup_ratio`.
        warmup_ratio: warmup_steps = int(warmup_ratio * num_steps).
        warmup_start_factor: warmup starts at warmup_start_factor * start_lr.
        scale_by_worker: "linear", "sqrt" or "none": how DeePMD-kit's TensorFlow trainer scales
            start_lr with the number of workers. Accepted and validated, not applied here:
            DeePMD-kit's PyTorch and JAX trainers ignore it too.
        decay_steps: the rate drops every `decay_steps` steps (see the module docstring for the
            replacement DeePMD-kit makes when it exceeds the decay phase).
        decay_rate: r itself, instead of deriving it from stop_lr; must be in (0, 1].
        smooth: continuous decay r^(t / s) instead of the staircase r^floor(t / s).
    """

    start_lr: float
    type: str = "exp"
    stop_lr: float | None = None
    stop_lr_ratio: float | None = None
    warmup_steps: int = 0
    warmup_ratio: float | None = None
    warmup_start_factor: float = 0.0
    scale_by_worker: str = "linear"
    decay_steps: int = 5000
    decay_rate: float | None = None
    smooth: bool = False

    def __post_init__(self):
        check_field_types(self, "learning_rate")
        if self.type not in KNOWN_TYPES:
            raise ConfigError(
                f"learning_rate.type: unknown schedule {self.type!r}; DeePMD-kit knows "
                f"{list(KNOWN_TYPES)}"
            )
        if self.type != "exp":
            raise ConfigError(
                f"learning_rate.type: {self.type!r} is not supported yet (only 'exp' is)"
            )
        if not (self.start_lr > 0 and math.isfinite(self.start_lr)):
            raise ConfigError(
                f"learning_rate.start_lr: expected a positive finite number, got {self.start_lr}"
            )
        if self.stop_lr is not None and self.stop_lr_ratio is not None:
            raise ConfigError(
                "learning_rate: stop_lr and stop_lr_ratio are mutually exclusive, got "
                f"stop_lr={self.stop_lr}, stop_lr_ratio={self.stop_lr_ratio}"
            )
        if self.warmup_steps != 0 and self.warmup_ratio is not None:
            raise ConfigError(
                "learning_rate: warmup_steps and warmup_ratio are mutually exclusive, got "
                f"warmup_steps={self.warmup_steps}, warmup_ratio={self.warmup_ratio}"
            )
        if self.warmup_steps < 0:
            raise ConfigError(f"learning_rate.warmup_steps: expected >= 0, got {self.warmup_steps}")
        if self.scale_by_worker not in SCALE_BY_WORKER:
            raise ConfigError(
                f"learning_rate.scale_by_worker: expected one of {list(SCALE_BY_WORKER)}, "
                f"got {self.scale_by_worker!r}"
            )
        if self.decay_steps <= 0:
            raise ConfigError(f"learning_rate.decay_steps: expected > 0, got {self.decay_steps}")
        if self.decay_rate is not None and not 0 < self.decay_rate <= 1:
            raise ConfigError(
                f"learning_rate.decay_rate: expected a value in (0, 1], got {self.decay_rate}"
            )

    @property
    def resolved_stop_lr(self) -> float:
        """stop_lr after applying stop_lr_ratio or DeePMD-kit's default."""
        if self.stop_lr_ratio is not None:
            return self.start_lr * self.stop_lr_ratio
        return DEFAULT_STOP_LR if self.stop_lr is None else self.stop_lr


@dataclasses.dataclass(frozen=True)
class ExpDecay:
    """An exponential schedule resolved for one training length: ``lr = schedule(step)``.

    Attributes:
        start_lr: learning rate at the start of the decay phase, and the reference rate of the
            loss prefactors (DeePMD-kit's ``starter_learning_rate`` is ``learning_rate.start_lr``,
            not the rate at step 0, which warmup lowers).
        stop_lr: learning rate at the end; also the floor of the decay phase.
        warmup_steps: steps of linear warmup.
        warmup_start_lr: learning rate at step 0 when warming up.
        decay_steps: the period s actually used (possibly replaced, see the module docstring).
        decay_rate: the rate r per period.
        smooth: continuous instead of stepped decay.
    """

    start_lr: float
    stop_lr: float
    warmup_steps: int
    warmup_start_lr: float
    decay_steps: int
    decay_rate: float
    smooth: bool

    def __call__(self, step: Array) -> Array:
        """lr at ``step`` (an integer or float scalar or array counted from 0), of its shape and
        JAX's default float dtype (float64 with jax_enable_x64); jittable."""
        step = jnp.asarray(step)
        t = step.astype(jnp.result_type(float))  # DeePMD-kit works on float steps throughout
        if self.warmup_steps:
            t = jnp.maximum(t - self.warmup_steps, 0.0)  # step within the decay phase
        if self.smooth:
            exponent = _divide(t, self.decay_steps)
        else:
            exponent = jnp.floor_divide(t, self.decay_steps)
        lr = self.start_lr * jnp.power(jnp.asarray(self.decay_rate, t.dtype), exponent)
        lr = jnp.maximum(lr, self.stop_lr)
        if self.warmup_steps:
            progress = _divide(step.astype(t.dtype), self.warmup_steps)
            warmup_lr = self.warmup_start_lr + (self.start_lr - self.warmup_start_lr) * progress
            lr = jnp.where(step < self.warmup_steps, warmup_lr, lr)
        return lr


def resolve_exp_decay(cfg: LearningRateConfig, num_steps: int) -> ExpDecay:
    """Resolves warmup length, decay period and decay rate for `num_steps` training steps.

    Args:
        cfg: the schedule's options.
        num_steps: total training steps, warmup included.

    Returns:
        The resolved numbers, computed on the host in float64 as DeePMD-kit does.

    Raises:
        ConfigError: the warmup does not fit in `num_steps`.
    """
    if num_steps < 0:
        raise ConfigError(f"num_steps: expected >= 0, got {num_steps}")
    warmup_steps = (
        int(cfg.warmup_ratio * num_steps) if cfg.warmup_ratio is not None else cfg.warmup_steps
    )
    if (num_steps > 0 and warmup_steps >= num_steps) or (num_steps == 0 and warmup_steps):
        raise ConfigError(
            f"learning_rate: warmup of {warmup_steps} steps (warmup_steps={cfg.warmup_steps}, "
            f"warmup_ratio={cfg.warmup_ratio}) must be shorter than num_steps={num_steps}"
        )
    stop_lr = cfg.resolved_stop_lr
    decay_total = num_steps - warmup_steps
    decay_steps = cfg.decay_steps
    if cfg.decay_rate is None and decay_steps >= decay_total:
        decay_steps = 100 if decay_total // 10 > 100 else decay_total // 100 + 1
    if cfg.decay_rate is not None:
        decay_rate = cfg.decay_rate
    elif decay_total == 0:
        decay_rate = 1.0
    else:
        # The same float64 operations as DeePMD-kit, so r agrees to the last bit.
        log_ratio = np.log(max(stop_lr, 1e-10) / cfg.start_lr)
        decay_rate = np.exp(log_ratio / (decay_total / decay_steps)).item()
    return ExpDecay(
        start_lr=cfg.start_lr,
        stop_lr=stop_lr,
        warmup_steps=warmup_steps,
        warmup_start_lr=cfg.warmup_start_factor * cfg.start_lr,
        decay_steps=decay_steps,
        decay_rate=float(decay_rate),
        smooth=cfg.smooth,
    )


def make_schedule(cfg: LearningRateConfig, num_steps: int) -> ExpDecay:
    """The learning rate as a jittable function of the step, for optax.

    Args:
        cfg: the schedule's options.
        num_steps: total training steps, warmup included (DeePMD-kit's `numb_steps`).

    Returns:
        `schedule(step) -> lr` (``ExpDecay.__call__``); `schedule.start_lr` is the reference
        rate of the loss prefactors.
    """
    return resolve_exp_decay(cfg, num_steps)


def _divide(x: Array, divisor: float) -> Array:
    """x / divisor, correctly rounded as numpy's division (DeePMD-kit's) is.

    XLA rewrites a division by a scalar into a multiplication by its reciprocal, which is off
    by one ulp for about one quotient in eight; a divisor of x's shape behind an optimization
    barrier keeps a true division.
    """
    return x / jax.lax.optimization_barrier(jnp.full(x.shape, divisor, x.dtype))
