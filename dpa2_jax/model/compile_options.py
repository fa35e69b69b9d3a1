"""XLA options for the model's jitted functions.

On CPU, XLA (jaxlib 0.10) hands float64 matrix products to its YNNPACK fusions, which run
DPA-2's skinny products (26880 x 50 @ 50 x 100, 10752 x 32 @ 32 x 128) single-threaded at about
10-16 GFLOP/s; Eigen's multi-threaded kernels are faster here (about 10 % of an energy+forces
evaluation of the "small" model, scripts/benchmark.py). The option is checked once against the
installed jaxlib and dropped if it is unknown, so a jaxlib without it still works.
"""

from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp

logger = logging.getLogger(__name__)

_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def compiler_options() -> dict[str, str]:
    """Options to pass as ``jax.jit(..., compiler_options=...)`` on the default backend."""
    if jax.default_backend() != "cpu":
        return {}
    try:
        jax.jit(lambda x: x @ x, compiler_options=_CPU_OPTIONS).lower(jnp.ones((2, 2))).compile()
    except Exception as err:  # an XLA without the option: use its defaults
        logger.info("XLA CPU option %s unavailable (%s); using defaults", _CPU_OPTIONS, err)
        return {}
    return dict(_CPU_OPTIONS)
