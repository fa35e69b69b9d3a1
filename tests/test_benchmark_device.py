"""scripts/benchmark.py --suite device: the table a GPU or TPU run prints, and its quick form."""

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import benchmark_device  # noqa: E402


def _results(quick: bool, failing: str = "") -> dict:
    """Results of the shape the workers return, with distinct numbers per case."""
    out = {}
    for k, name in enumerate(benchmark_device.case_names(quick)):
        if name == failing:
            out[name] = {"error": "RESOURCE_EXHAUSTED: out of memory"}
            continue
        atoms = int(name.split("_")[2]) if name.startswith("device_ef_") else 192
        out[name] = {"seconds_per_step": 0.5 + k, "seconds_per_frame": 0.25 + k,
                     "us_per_atom": 10.0 + k, "bytes_accessed": int(2e9), "flops": int(3e9),
                     "atoms": atoms, "peak_rss_gb": 2.0, "peak_device_gb": None}  # fmt: skip
    return out


@pytest.mark.parametrize("quick", [False, True])
def test_table_has_every_case_in_both_precisions(quick):
    names = benchmark_device.case_names(quick)
    assert len(names) == len(set(names))
    assert all(any(n.endswith(p) for n in names) for p in benchmark_device.PRECISIONS)
    text = benchmark_device.table(_results(quick), quick, "test device")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    big = benchmark_device.SETTINGS[quick]["ef_atoms"][-1]
    # header, train step (3 rows), E+F per size, E+F us/atom, MD, atoms per GB
    assert len(rows) == 1 + 3 + len(benchmark_device.SETTINGS[quick]["ef_atoms"]) + 3
    assert rows[-1].split("|")[2:4] == [f" {big / 2.0:.4g} "] * 2  # atoms / peak RSS
    assert "| train step, XLA bytes accessed, GB | 2 | 2 |" in rows
    assert "error" not in text


def test_a_failed_case_is_shown_not_hidden():
    failing = "device_md_float64"
    text = benchmark_device.table(_results(True, failing), True, "test device")
    md_row = next(line for line in text.splitlines() if line.startswith("| MD step"))
    assert md_row.endswith("| error |") and "error |" not in md_row.split("|")[2]
    assert f"{failing}: RESOURCE_EXHAUSTED" in text


@pytest.mark.slow
def test_quick_suite_runs_on_this_cpu():
    """The quick form end to end (tiny model, every case in its own process): minutes."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--suite", "device", "--quick"],
        capture_output=True, text=True, timeout=1800, check=True,
    )  # fmt: skip
    start = done.stdout.index("\n{")
    assert "error" not in done.stdout[:start], done.stdout
    results = json.loads(done.stdout[start:])
    assert set(results) == set(benchmark_device.case_names(True))
    for name, result in results.items():
        seconds = result.get("seconds_per_step", result.get("seconds_per_frame"))
        assert seconds > 0, name
    assert results["device_train_float64"]["bytes_accessed"] > 0
