"""Every test of dpa2_jax/model runs the tiny model (type map C, H, N, O) in float64."""

import jax
import pytest
from model_helpers import tiny_config


@pytest.fixture(scope="session", autouse=True)
def x64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(scope="session")
def cfg():
    """The tiny ModelConfig (test_smoothness.py overrides it with a checked copy)."""
    return tiny_config()
