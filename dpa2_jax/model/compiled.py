"""Compiled copies of the model's pure functions, shared by every ``Potential`` in a process.

One ``jax.jit`` per (config, head, layout, slot source, atomic virial or not); each compiles
once per padded input shape, and with the persistent compilation cache (``jax_setup.py``) once
per shape across processes too.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from dpa2_jax.descriptor import Layout
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.model.derivatives import make_forces_fn
from dpa2_jax.model.jax_setup import compiler_options, enable_compilation_cache

_FORCES_FNS: dict[tuple, Callable] = {}


def compiled_forces_fn(
    cfg: ModelConfig,
    head: str,
    layout: Layout = Layout(),
    slots_on_device: bool = False,
    atomic_virial: bool = False,
) -> Callable:
    """``jax.jit(make_forces_fn(cfg, head, layout, slots_on_device, atomic_virial))``, made
    once per process."""
    key = (cfg, cfg.resolve_head(head), layout, slots_on_device, atomic_virial)
    if key not in _FORCES_FNS:
        enable_compilation_cache()
        _FORCES_FNS[key] = jax.jit(make_forces_fn(*key), compiler_options=compiler_options())
    return _FORCES_FNS[key]


def n_compiled() -> int:
    """How many programs the functions above hold (one per function and input shape)."""
    return sum(fn._cache_size() for fn in _FORCES_FNS.values())
