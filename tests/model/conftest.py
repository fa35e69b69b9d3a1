"""Every test of dpa2_jax/model runs the tiny model in float64."""

import jax
import pytest


@pytest.fixture(scope="session", autouse=True)
def x64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)
