"""Parity of the exponential learning-rate schedule with DeePMD-kit 3.2.0's LearningRateExp."""

import dataclasses

import jax
import numpy as np
import pytest
from deepmd.dpmodel.utils.learning_rate import BaseLR, LearningRateExp

from dpa2_jax.errors import ConfigError
from dpa2_jax.train.schedules import (
    LearningRateConfig,
    make_schedule,
    resolve_exp_decay,
)

# (options, num_steps): DeePMD's defaults, the DPA-2 water examples, the auto decay_steps rule,
# explicit decay_rate (stop_lr a floor), stop_lr_ratio, smooth decay and warmup.
CASES = [
    (dict(start_lr=1e-3), 1_000_000),
    (dict(start_lr=1e-3, stop_lr=3.51e-8, decay_steps=5000), 1_000_000),
    (
        dict(start_lr=1e-3, stop_lr=3.51e-8, decay_steps=5000),
        2000,
    ),  # decay_steps replaced by 100 // 100 + 1... see below
    (dict(start_lr=1e-3, stop_lr=3.51e-8, decay_steps=5000), 50_000),
    (dict(start_lr=2e-3, stop_lr=1e-6, decay_steps=7), 1000),
    (dict(start_lr=1e-3, stop_lr=1e-5, decay_steps=100), 250),
    (dict(start_lr=1e-3, stop_lr=1e-4, decay_steps=100, decay_rate=0.9), 100_000),
    (dict(start_lr=1e-3, stop_lr_ratio=1e-3, decay_steps=50), 10_000),
    (dict(start_lr=1e-3, stop_lr=1e-7, decay_steps=50, smooth=True), 10_000),
    (dict(start_lr=1e-3, stop_lr=1e-7, decay_steps=50, warmup_steps=300), 10_000),
    (
        dict(
            start_lr=1e-3,
            stop_lr=1e-7,
            decay_steps=40,
            warmup_ratio=0.05,
            warmup_start_factor=0.1,
            smooth=True,
        ),
        7_000,
    ),
    (dict(start_lr=1e-3, stop_lr=0.0, decay_steps=10), 1000),  # stop_lr clamped to 1e-10
    (dict(start_lr=1e-3, stop_lr=1e-8), 0),  # no decay phase
]


def _deepmd(options: dict, num_steps: int) -> LearningRateExp:
    options = dict(options)
    if "stop_lr" not in options and "stop_lr_ratio" not in options:
        options["stop_lr"] = 5e-8  # argcheck's default, applied before the class sees it
    return BaseLR(type="exp", num_steps=num_steps, **options)


@pytest.mark.parametrize("options,num_steps", CASES)
def test_matches_deepmd(enable_x64, options, num_steps):
    reference = _deepmd(options, num_steps)
    assert isinstance(reference, LearningRateExp)
    schedule = jax.jit(make_schedule(LearningRateConfig(**options), num_steps))

    last = max(num_steps, 10) + 500
    steps = np.unique(
        np.concatenate([np.arange(min(last, 3000)), np.linspace(0, last, 5000).astype(int)])
    )
    expected = reference.value(steps)
    got = np.asarray(schedule(steps))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)
    for step in (0, 1, num_steps // 2, num_steps):
        assert float(schedule(step)) == pytest.approx(reference.value(step), rel=1e-15, abs=0)

    resolved = resolve_exp_decay(LearningRateConfig(**options), num_steps)
    assert resolved.decay_steps == reference.decay_steps
    assert resolved.decay_rate == reference.decay_rate
    assert resolved.warmup_steps == reference.warmup_steps


def test_small_water_example_decays_every_100_steps(enable_x64):
    """REFERENCE.md: decay_steps 5000 over 2,000 steps becomes 100, ending near 5.9e-8."""
    cfg = LearningRateConfig(start_lr=1e-3, stop_lr=3.51e-8, decay_steps=5000)
    assert resolve_exp_decay(cfg, 2000).decay_steps == 100
    schedule = make_schedule(cfg, 2000)
    assert float(schedule(99)) == 1e-3
    assert float(schedule(100)) < 1e-3
    assert float(schedule(1999)) == pytest.approx(5.9e-8, rel=0.02)
    assert float(schedule(10**6)) == 3.51e-8  # floor


def test_float32_schedule_without_x64():
    schedule = jax.jit(make_schedule(LearningRateConfig(start_lr=1e-3), 10_000))
    lr = schedule(jax.numpy.arange(10, dtype=jax.numpy.int32))
    assert lr.dtype == np.dtype(jax.numpy.result_type(float))
    np.testing.assert_allclose(np.asarray(lr), 1e-3, rtol=1e-6)


@pytest.mark.parametrize(
    "options,field",
    [
        (dict(type="warp"), "warp"),
        (dict(type="cosine"), "not supported yet"),
        (dict(start_lr=0.0), "start_lr"),
        (dict(stop_lr=1e-8, stop_lr_ratio=1e-3), "stop_lr_ratio"),
        (dict(warmup_steps=10, warmup_ratio=0.1), "warmup_ratio"),
        (dict(decay_steps=0), "decay_steps"),
        (dict(decay_rate=1.5), "decay_rate"),
        (dict(scale_by_worker="cubic"), "scale_by_worker"),
    ],
)
def test_bad_options(options, field):
    with pytest.raises(ConfigError, match=field):
        LearningRateConfig(**{"start_lr": 1e-3, **options})


def test_warmup_longer_than_training():
    cfg = LearningRateConfig(start_lr=1e-3, warmup_steps=100)
    with pytest.raises(ConfigError, match="warmup"):
        make_schedule(cfg, 100)
    make_schedule(dataclasses.replace(cfg, warmup_steps=99), 100)


def test_config_is_hashable():
    assert hash(LearningRateConfig(start_lr=1e-3)) == hash(LearningRateConfig(start_lr=1e-3))
