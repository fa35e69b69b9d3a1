"""Process-wide JAX settings, all in this one place: float64, the persistent compilation cache,
and XLA options for the model's compiled functions.

- float64: a float64 model needs ``jax_enable_x64``. ``dpa2_jax.load`` calls ``enable_x64_for``
  (with a warning, since it changes the default dtype of the whole process); code that builds a
  ``Potential`` itself, or calls ``make_energy_fn`` directly, turns it on first:
  ``jax.config.update("jax_enable_x64", True)``.
- Compilation cache: compiled programs are kept on disk, so a second process (an ASE
  relaxation, an MD run, the next script) that evaluates an already-seen shape loads it in
  about a second instead of compiling for 7-13 s. ``Potential`` turns it on before its first
  compilation, in ``$DPA2_JAX_CACHE_DIR`` or else ``$XDG_CACHE_HOME/dpa2_jax/xla`` (default
  ``~/.cache/dpa2_jax/xla``). ``DPA2_JAX_CACHE_DIR=off`` turns it off; a cache directory the
  user configured in JAX already (``jax_compilation_cache_dir``) is left as it is.
- XLA on CPU (jaxlib 0.10) hands float64 matrix products to its YNNPACK fusions, which run
  DPA-2's skinny products single-threaded at about 10-16 GFLOP/s; Eigen's multi-threaded
  kernels are faster here (about 10 % of an energy+forces evaluation of the "small" model).
  The option is checked once against the installed jaxlib and dropped if unknown.
"""

from __future__ import annotations

import functools
import logging
import os

import jax
import jax.numpy as jnp

logger = logging.getLogger(__name__)

_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
CACHE_ENV = "DPA2_JAX_CACHE_DIR"


def enable_x64_for(precision: str) -> None:
    """Turns on ``jax_enable_x64`` for a "float64" model, saying so once (a log line at
    WARNING level, which Python prints even where logging is not set up)."""
    if precision == "float64" and not jax.config.jax_enable_x64:
        logger.warning(
            "enabling jax_enable_x64 for a float64 model (process-wide: new JAX arrays default "
            "to 64 bits; call jax.config.update('jax_enable_x64', True) at start-up to make it "
            "explicit)"
        )
        jax.config.update("jax_enable_x64", True)


def cache_dir() -> str | None:
    """The persistent compilation cache folder dpa2_jax uses, or None when turned off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "none", "false") else value
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dpa2_jax", "xla")


@functools.cache
def enable_compilation_cache() -> str | None:
    """Turns on JAX's persistent compilation cache (module docstring); returns its folder."""
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return configured
    path = cache_dir()
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        logger.warning("compilation cache disabled: cannot create %s (%s)", path, err)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    # Cache everything that took measurable time: even a 3-atom molecule compiles for seconds.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    logger.info("persistent compilation cache in %s (set %s=off to disable)", path, CACHE_ENV)
    return path


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
