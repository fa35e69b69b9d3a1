"""``dpa2-jax distill`` end to end (slow): configs/distill_water_tiny.py's teacher check and MD
on water, labels, a tiny se_e2_a student and the report with its g(r); a second run skips every
stage."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from dpa2_jax.cli.main import main
from dpa2_jax.data import read_npy_system
from tests.conftest import ROOT

pytest.importorskip("jax_md")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(
        "ignore:scatter inputs have incompatible types:FutureWarning",
        "ignore:dpa2_jax. enabling jax_enable_x64:UserWarning",
    ),
]
CONFIG = ROOT / "configs" / "distill_water_tiny.py"


def test_distill_end_to_end_and_resume(tmp_path, capsys):
    workdir = tmp_path / "w"
    assert main(["distill", str(CONFIG), "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert "student vs teacher, held out" in out and "speedup" in out
    report = json.loads((workdir / "report.json").read_text())
    assert set(report["errors"]) == {"student vs teacher, held out", "student vs DFT, data_3",
                                     "teacher vs DFT, data_3"}  # fmt: skip
    assert report["errors"]["teacher vs DFT, data_3"]["forces"]["rmse"] < 0.3  # 0.230 known
    assert report["speed"]["atoms"] == 192 and report["speed"]["speedup"] > 0
    assert "check: the teacher's NVE from 1 structure(s) at 300 K stays within" in out
    check = json.loads((workdir / "check" / "summary.json").read_text())
    [rec] = check["structures"]
    assert rec["finite"] and rec["max_force_eV_A"] < 12 and rec["max_temperature_K"] < 450
    explored = json.loads((workdir / "explore" / "summary.json").read_text())
    assert explored["dropped"] == 0  # a calm teacher over 20 steps at 300 K
    rdf = report["rdf"]
    assert set(rdf["pairs"]) == {"O-O", "O-H"} and rdf["teacher"]["frames"] == 4
    for diff in rdf["pairs"].values():  # a different student: a different trajectory
        assert 0 < diff["max_abs_diff"] and 2 <= diff["at_r"] <= 6
    assert (workdir / "rdf.png").is_file() and "g(r) O-O, NVT 300 K, 4 frames" in out
    # 20 MD steps, a frame every 5 (4 frames) and one perturbed copy each: 6 train + 2 valid
    train = read_npy_system(workdir / "data" / "train" / "s0_300K")
    valid = read_npy_system(workdir / "data" / "valid" / "s0_300K")
    assert (train.nframes, valid.nframes) == (6, 2)
    assert np.isfinite(train.forces).all() and train.virials is not None
    assert (workdir / "student" / "model").is_dir()

    start = time.perf_counter()
    assert main(["distill", str(CONFIG), "--workdir", str(workdir)]) == 0
    assert time.perf_counter() - start < 10  # every stage skipped: nothing compiled or run
    assert json.loads((workdir / "report.json").read_text()) == report
