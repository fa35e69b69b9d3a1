"""Shared fixtures: float64 switch, PRNG keys, and a tiny random DPA-2 model built once per run.

The tiny model is configs/tiny.py with random parameters drawn with numpy into the tree that
``dpa2_jax.model.init`` produces, with statistics and biases far from init's neutral values so
that every parameter matters.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import tempfile

import jax
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SYSTEMS = ROOT / "tests" / "systems"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running tests, excluded by default")
    # One persistent compilation cache per test run (shared with the CLI subprocesses the
    # tests start), never the user's own cache folder.
    os.environ.setdefault("DPA2_JAX_CACHE_DIR", tempfile.mkdtemp(prefix="dpa2_jax_xla_"))
    # The tests' small workloads are dominated by compilation: LLVM at -O0 compiles about a
    # third faster here and computes the same numbers (set before JAX starts its backend;
    # subprocesses inherit it).
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


def forced_devices_env(devices: int, **extra: str) -> dict:
    """The environment for a subprocess with ``devices`` forced CPU devices, keeping the test
    run's other XLA flags."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    return {**os.environ, "XLA_FLAGS": flags.strip(), "JAX_PLATFORMS": "cpu", **extra}


@pytest.fixture
def enable_x64():
    """Turns on jax_enable_x64 for one test and restores the previous setting."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def prng_key(request):
    """A fresh PRNG key per test, seeded from the test's name (reproducible)."""
    return jax.random.PRNGKey(abs(hash(request.node.nodeid)) % (2**31))


def load_config_module(name: str):
    """Imports configs/<name>.py by path (the repository root need not be on sys.path)."""
    path = ROOT / "configs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"configs.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plumbing_model() -> dict:
    """configs/tiny.py's model with one repformer layer, no three-body block and no attention
    or h2 updates: for tests of the machinery around the model (training loop, multi-task,
    data parallelism), which does not depend on those options. Each compilation takes about
    half the time of the full tiny model's."""
    model = load_config_module("tiny").get_config().model.to_dict()
    model["descriptor"]["repinit"]["use_three_body"] = False
    model["descriptor"]["repformer"].update(nlayers=1, update_h2=False, update_g1_has_attn=False,
                                            update_g2_has_attn=False)  # fmt: skip
    return model


def random_params(cfg, seed: int):
    """Random float64 parameters with the tree structure and shapes of ``energy.init(cfg)``."""
    from dpa2_jax.model.energy import init

    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)  # float64 shapes, without dtype warnings
    try:
        shapes = init(jax.random.key(0), cfg)
    finally:
        jax.config.update("jax_enable_x64", previous)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = getattr(path[-1], "key", "")
        x = rng.normal(size=leaf.shape)
        # Environment-matrix statistics [ntypes, sel, 4] (s, s x/r, s y/r, s z/r): rotation
        # invariance needs a zero mean and one shared std for the three vector components.
        if name == "davg":
            return np.concatenate([0.1 * x[..., :1], np.zeros_like(x[..., 1:])], axis=-1)
        if name == "dstd":
            std = 0.5 + rng.uniform(size=(*leaf.shape[:-1], 2))
            return np.concatenate([std[..., :1], np.repeat(std[..., 1:], 3, axis=-1)], axis=-1)
        if name == "w" and len(leaf.shape) == 2:
            return x / np.sqrt(leaf.shape[0])
        if name == "idt":
            return 0.1 + 0.01 * x
        return 0.1 * x

    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="session")
def tiny_config():
    """ModelConfig of configs/tiny.py (float64, type map O, H; one head "default")."""
    from dpa2_jax.io.deepmd_config import model_config

    return model_config(load_config_module("tiny").get_config().model.to_dict())


@pytest.fixture(scope="session")
def tiny_params(tiny_config):
    """Random parameters of the tiny model (seed 0)."""
    return random_params(tiny_config, seed=0)


@pytest.fixture
def small_cell():
    """Two O and four H atoms at fixed random positions in a periodic 4.5 A cubic cell."""
    import ase

    positions = np.random.default_rng(7).uniform(0.0, 4.5, size=(6, 3))  # Angstrom
    return ase.Atoms("O2H4", positions=positions, cell=np.eye(3) * 4.5, pbc=True)


@pytest.fixture(scope="session")
def tiny_dp(tiny_config, tiny_params, tmp_path_factory) -> pathlib.Path:
    """The tiny random model as a DeePMD `.dp` file."""
    from dpa2_jax.io.convert import model_def_script
    from dpa2_jax.io.deepmd_export import to_deepmd
    from dpa2_jax.io.dp_format import write_dp

    path = tmp_path_factory.mktemp("tiny") / "tiny.dp"
    write_dp(
        path,
        {
            "model": to_deepmd(tiny_config, tiny_params),
            "model_def_script": model_def_script(tiny_config),
            "backend": "dpa2_jax",
        },
    )
    return path
