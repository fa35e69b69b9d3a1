"""dpa2_jax/model/jax_setup.py: the persistent compilation cache serves a second process.

A first process evaluating a molecule compiles and writes the cache; a second one evaluating the
same shape loads the program from disk (JAX reports a persistent-cache hit) and compiles
nothing. First-call times, cold and warm, are measured by scripts/benchmark.py.
"""

import os
import subprocess
import sys

import pytest

from dpa2_jax.model.jax_setup import CACHE_ENV, cache_dir

CHILD = """
import sys, time
import jax, numpy as np
hits = []
jax.monitoring.register_event_listener(
    lambda event, **kw: hits.append(event) if event.endswith("cache_hits") else None)
import dpa2_jax
pot = dpa2_jax.load(sys.argv[1])
start = time.perf_counter()
out = pot.evaluate([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]], None, ["O", "H", "H"])
print(len(hits), time.perf_counter() - start, float(out["energy"][0]))
"""


def _first_call(model, env):
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(model)], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    hits, seconds, energy = done.stdout.split()
    return int(hits), float(seconds), float(energy)


def test_second_process_loads_compiled_programs_from_the_cache(tiny_dp, tmp_path):
    env = {**os.environ, CACHE_ENV: str(tmp_path / "xla")}
    hits_cold, _, energy_cold = _first_call(tiny_dp, env)
    assert hits_cold == 0 and any((tmp_path / "xla").iterdir())
    hits_warm, _, energy_warm = _first_call(tiny_dp, env)
    assert hits_warm >= 1
    assert energy_warm == energy_cold


@pytest.mark.parametrize(
    "value, expected",
    [("off", None), ("0", None), ("", None), ("/some/where", "/some/where")],
)
def test_cache_folder_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(CACHE_ENV, value)
    assert cache_dir() == expected


def test_default_cache_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == str(tmp_path / "dpa2_jax" / "xla")
