"""Fixtures of the distillation tests: tiny se_e2_a models (configs/distill_water_tiny.py's
student, random parameters) whose MD compiles in seconds, as teachers and students.

``se_models`` also turns on the test run's persistent compilation cache (tests/conftest.py
gives each run its own folder; the command-line tests turn it on as well): the same model's
MD in the same box is then compiled once per run, about 2 s instead of 10 s each time after
the first on this 2-core machine."""

from __future__ import annotations

import pathlib

import pytest

from tests.conftest import load_config_module, random_params


def _write(path: pathlib.Path, cfg, params) -> pathlib.Path:
    from dpa2_jax.io.convert import model_def_script
    from dpa2_jax.io.deepmd_export import to_deepmd
    from dpa2_jax.io.dp_format import write_dp

    write_dp(path, {"model": to_deepmd(cfg, params), "model_def_script": model_def_script(cfg),
                    "backend": "dpa2_jax"})  # fmt: skip
    return path


@pytest.fixture(scope="session")
def se_models(tmp_path_factory) -> dict[str, pathlib.Path]:
    """.dp files of the tiny se_e2_a model (type map O, H; rcut 4 A; float64):
    ``calm`` and ``other``, random parameters (seeds 0 and 1) whose forces on water are below
    0.1 eV/A (atoms move almost freely: a stable MD over tens of steps); ``wild``, ``calm``
    with its fitting nets' last layer 1e4 times larger (forces of tens to hundreds of eV/A:
    a teacher whose MD runs away)."""
    from dpa2_jax.io.deepmd_config import model_config
    from dpa2_jax.model.jax_setup import enable_compilation_cache

    enable_compilation_cache()

    cfg = model_config(load_config_module("distill_water_tiny").get_config().student.model.to_dict())
    folder = tmp_path_factory.mktemp("se_models")
    calm, other = random_params(cfg, seed=0), random_params(cfg, seed=1)
    wild = {**calm, "heads": {"default": {**calm["heads"]["default"]}}}
    fitting = dict(wild["heads"]["default"]["fitting"])
    fitting["type_layers"] = [[*layers[:-1], {**layers[-1], "w": layers[-1]["w"] * 1e4}]
                              for layers in fitting["type_layers"]]  # fmt: skip
    wild["heads"]["default"]["fitting"] = fitting
    return {name: _write(folder / f"{name}.dp", cfg, params)
            for name, params in (("calm", calm), ("other", other), ("wild", wild))}  # fmt: skip
