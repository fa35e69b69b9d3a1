"""The teacher's check (distill/check.py), exploration's frame limits and the report's RDF
check (distill/physics.py): the numbers of a check from a known energy series, the message of
each limit, the check stage passing a calm teacher and stopping a runaway one, exploration
dropping frames outside the limits, and the report's g(r) of teacher and student (fields,
plot, reuse of saved curves). MD runs are tens of steps of a tiny se_e2_a model."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil

import numpy as np
import pytest

from dpa2_jax.distill import distill_config, physics, pipeline
from dpa2_jax.distill.check import record, violations
from dpa2_jax.distill.config import CheckConfig
from dpa2_jax.distill.explore import Frames, limits_mask, within_limits
from dpa2_jax.errors import ConfigError, UnstableDynamicsError
from dpa2_jax.md.sampling import Series
from tests.conftest import ROOT, SYSTEMS, load_config_module

pytest.importorskip("jax_md")
pytestmark = pytest.mark.filterwarnings(
    "ignore:scatter inputs have incompatible types:FutureWarning",
    "ignore:dpa2_jax. enabling jax_enable_x64:UserWarning",
)


def _series(total: np.ndarray, max_force=None, temperature=None, failure=None) -> Series:
    steps = np.arange(len(total)) * 10
    zeros = np.zeros(len(total))
    return Series(steps, total - 1.0, zeros + 1.0,
                  zeros + 300.0 if temperature is None else np.asarray(temperature),
                  zeros + 1.0 if max_force is None else np.asarray(max_force),
                  failure=failure)  # fmt: skip


def test_record_drift_excursion_and_extremes():
    # 10 atoms; total energy 0 eV for steps 0-20, a bump of 0.5 eV at step 50, 0.2 eV from 80
    total = np.array([0, 0, 0, 0.1, 0.1, 0.5, 0.1, 0.1, 0.2, 0.2, 0.2])
    force = np.linspace(1, 3, 11)
    temperature = 300 + 10 * np.sin(np.arange(11))
    rec = record(_series(total, force, temperature), n_atoms=10, window=20)
    assert rec["drift_eV_per_atom"] == pytest.approx(0.02)  # (0.2 - 0) / 10
    assert rec["excursion_eV_per_atom"] == pytest.approx(0.05)
    assert (rec["max_force_eV_A"], rec["max_force_step"]) == (3.0, 100)
    assert rec["max_temperature_K"] == pytest.approx(temperature.max())
    assert rec["max_temperature_step"] == 10 * int(np.argmax(temperature))
    assert rec["finite"] and rec["failure"] is None and rec["last_step"] == 100
    stopped = record(_series(np.array([0.0, np.nan])), 10, 10)
    assert not stopped["finite"]
    empty = record(_series(np.zeros(0), failure="step 0: non-finite energy nan"), 10, 10)
    assert not empty["finite"] and empty["failure"].startswith("step 0")


def test_violations_name_each_quantity_and_its_limit():
    cfg = CheckConfig(max_drift=1e-3, max_force=12.0, max_temperature=550.0,
                      max_temperature_factor=1.5)  # fmt: skip
    good = {"finite": True, "failure": None, "last_step": 100, "drift_eV_per_atom": 1e-5,
            "max_force_eV_A": 5.0, "max_force_step": 30, "max_temperature_K": 480.0,
            "max_temperature_step": 40}  # fmt: skip
    assert violations(good, cfg, 400.0) == []
    assert cfg.temperature_limit(400.0) == 550.0 and cfg.temperature_limit(300.0) == 450.0
    [msg] = violations({**good, "max_force_eV_A": 41.5}, cfg, 400.0)
    assert msg == "largest force 41.5 eV/A at step 30 > check.max_force 12 eV/A"
    [msg] = violations(good, cfg, 300.0)  # 480 K > 1.5 x 300 K
    assert msg == "temperature 480 K at step 40 > 450 K (check.max_temperature_factor 1.5 x 300 K)"
    [msg] = violations({**good, "max_temperature_K": 560.0}, cfg, 400.0)  # the cap: 550 K
    assert msg == "temperature 560 K at step 40 > 550 K (check.max_temperature)"
    [msg] = violations({**good, "drift_eV_per_atom": 0.004}, cfg, 400.0)
    assert msg == "energy drift 0.004 eV/atom > check.max_drift 0.001 eV/atom"
    bad = {**good, "finite": False, "failure": "step 60: non-finite energy nan",
           "drift_eV_per_atom": np.nan, "max_force_eV_A": np.nan}  # fmt: skip
    msgs = violations(bad, cfg, 400.0)
    assert msgs[0] == "the run stopped after step 100 (step 60: non-finite energy nan)"
    assert len(msgs) == 3  # and NaN is over every limit


def test_frames_outside_the_limits_are_dropped():
    assert limits_mask([1, 13, 2, np.nan], [300, 300, 500, 300], 12, 450).tolist() == [
        True, False, False, False]  # fmt: skip
    n = 6
    frames = Frames(np.zeros((n, 2, 3)), np.tile(np.eye(3) * 10, (n, 1, 1)), ("O", "H"),
                    np.arange(1, n + 1) * 5)  # fmt: skip
    stats = {"max_force": np.array([1.0, 20.0, 3.0, 30.0, 2.0, 1.0]),
             "temperature": np.array([300, 310, 700, 800, 320, 290.0])}  # fmt: skip
    kept, counts = within_limits(frames, stats, CheckConfig(), 400.0)  # <= 12 eV/A, <= 600 K
    assert list(kept.steps) == [5, 25, 30]
    assert counts == {"dropped": 3, "dropped_force": 2, "dropped_temperature": 2}
    everything, none = within_limits(frames, stats, None, 400.0)
    assert len(everything.steps) == n and none["dropped"] == 0


def _cfg(teacher, **sections) -> object:
    d = load_config_module("distill_water_tiny").get_config().to_dict()
    d["teacher"]["model"] = str(teacher)
    for name, values in sections.items():
        d[name].update(values)
    return distill_config(d, str(ROOT / "configs"))


def test_check_passes_a_calm_teacher_and_is_skipped_when_done(se_models, tmp_path, monkeypatch):
    cfg = _cfg(se_models["calm"])
    summary = pipeline.run(cfg, str(tmp_path), "check")["check"]
    [rec] = summary["structures"]
    assert rec["structure"] == str(SYSTEMS / "water" / "data_0")
    assert rec["temperature_K"] == 300.0 and rec["atoms"] == 192 and rec["steps"] == 20
    assert rec["finite"] and 0 < rec["max_force_eV_A"] < 0.1  # random nets: small forces
    assert rec["drift_eV_per_atom"] < 1e-5 and 290 < rec["max_temperature_K"] < 310
    log = np.loadtxt(rec["log"])
    np.testing.assert_array_equal(log[:, 0], [0, 5, 10, 15, 20])
    assert np.max(log[:, 5]) == pytest.approx(rec["max_force_eV_A"])
    assert summary["limits"]["max_force"] == 12.0
    assert pipeline.summary_line("check", summary).startswith(
        "check: the teacher's NVE from 1 structure(s) at 300 K stays within the limits")

    def refuse(path):
        raise AssertionError(f"{path} loaded by a finished stage")

    monkeypatch.setattr(pipeline, "_load", refuse)
    assert pipeline.run(cfg, str(tmp_path), "check")["check"] == summary
    skipped = _cfg(se_models["calm"], check={"steps": 0})
    assert pipeline.run(skipped, str(tmp_path / "none"), "check")["check"]["skipped"]


def _runaway_message(msg: str, tmp_path) -> None:
    structure = SYSTEMS / "water" / "data_0"
    assert msg.startswith(f"check: the teacher's NVE run from {structure} (initial velocities "
                          "at 300 K, 0.5 fs steps) ran away: largest force ")  # fmt: skip
    assert re.search(r"largest force [0-9.e+-]+ eV/A at step \d+ > check.max_force", msg)
    assert "examples/water_md/model.dp" in msg and str(tmp_path / "check" / "s0_300K.log") in msg
    assert not (tmp_path / "check" / "summary.json").exists()  # a rerun checks again
    assert not (tmp_path / "explore").exists()  # nothing explored


def test_check_stops_at_a_force_over_its_limit(se_models, tmp_path):
    cfg = _cfg(se_models["calm"], check={"max_force": 1e-4})  # its forces: 1e-3 eV/A
    with pytest.raises(UnstableDynamicsError) as err:
        pipeline.run(cfg, str(tmp_path), "all")
    _runaway_message(str(err.value), tmp_path)
    assert re.search(r"eV/A at step \d+ > check.max_force 0.0001 eV/A\. A student", str(err.value))


@pytest.mark.slow  # its own MD program: 10 s more
def test_check_stops_a_runaway_teacher(se_models, tmp_path):
    # forces of tens of eV/A from the start, of thousands after 10 steps (1e9 K)
    cfg = _cfg(se_models["wild"], check={"steps": 10, "every": 5, "window": 5})
    with pytest.raises(UnstableDynamicsError) as err:
        pipeline.run(cfg, str(tmp_path), "all")
    _runaway_message(str(err.value), tmp_path)
    assert re.search(r"eV/A at step \d+ > check.max_force 12 eV/A; temperature [0-9.e+]+ K at "
                     r"step \d+ > 450 K \(check.max_temperature_factor 1.5 x 300 K\); energy "
                     r"drift [0-9.e+]+ eV/atom > check.max_drift 0.001 eV/atom", str(err.value))


def test_explore_drops_frames_over_the_force_limit(se_models, tmp_path):
    # NVT at 300 K with random nets: the largest force grows from 0.0009 to 0.005 eV/A over
    # the 20 steps as atoms drift together; frames above a limit of 0.002 eV/A are dropped,
    # and the counts are kept on a resumed run
    cfg = _cfg(se_models["calm"], check={"max_force": 0.002},
               explore={"steps": 20, "every": 2, "perturb": {"copies": 0}})  # fmt: skip
    summary = pipeline.run(cfg, str(tmp_path), "explore")["explore"]
    [run] = summary["runs"]
    assert run["md_frames"] == 10 and run["dropped_temperature"] == 0
    assert 0 < run["dropped_force"] == run["dropped"] == summary["dropped"] < 10
    assert run["kept"] == 10 - run["dropped"] and run["max_force_eV_A"] > 0.002
    kept_steps = np.loadtxt(tmp_path / "explore" / "s0_300K" / "steps.raw")
    assert len(kept_steps) == run["kept"] and set(kept_steps) < set(range(2, 21, 2))
    assert summary["limits"]["max_force"] == 0.002
    assert "dropped outside the check's limits" in pipeline.summary_line("explore", summary)
    os.remove(tmp_path / "explore" / "summary.json")  # resumed: the run is skipped, not lost
    again = pipeline.run(cfg, str(tmp_path), "explore")["explore"]
    assert again["runs"][0]["skipped"] and again["dropped"] == summary["dropped"]


def test_config_errors_name_the_check_and_rdf_keys():
    base = load_config_module("distill_water_tiny").get_config().to_dict()
    with pytest.raises(ConfigError, match="check: unknown key 'max_forces'; did you mean"):
        distill_config({**base, "check": {"max_forces": 3}}, ".")
    with pytest.raises(ConfigError, match="check.steps 20, check.every 5 and check.window 40"):
        distill_config({**base, "check": {**base["check"], "window": 40}}, ".")
    with pytest.raises(ConfigError, match="check.max_force -1: expected a positive number"):
        distill_config({**base, "check": {**base["check"], "max_force": -1}}, ".")
    rdf = base["report"]["rdf"]
    with pytest.raises(ConfigError, match=r"report.rdf.pairs \[\['O', 'O', 'H'\]\]"):
        distill_config({**base, "report": {**base["report"], "rdf": {**rdf, "pairs": [
            ["O", "O", "H"]]}}}, ".")  # fmt: skip
    with pytest.raises(ConfigError, match=r"report.rdf.compare \[6.0, 2.0\]"):
        distill_config({**base, "report": {**base["report"], "rdf": {**rdf, "compare": [6, 2]}}},
                       ".")  # fmt: skip
    with pytest.raises(ConfigError, match="noise_seeds -1: need steps, equilibration, noise_"):
        distill_config({**base, "report": {**base["report"], "rdf": {**rdf, "noise_seeds": -1}}},
                       ".")  # fmt: skip
    with pytest.raises(ConfigError, match="report: rdf: unknown key 'step'"):
        distill_config({**base, "report": {**base["report"], "rdf": {"step": 3}}}, ".")


def test_rdf_comparison_per_pair():
    from dpa2_jax.distill.config import RdfConfig

    edges = np.arange(0, 6.51, 0.5).tolist()  # centers 0.25, ..., 6.25
    g_t = {"O-O": [0.0] * 4 + [1.0] * 9, "O-H": [1.0] * 13}
    g_s = {"O-O": [3.0] + [0.0] * 3 + [1.0, 1.2] + [1.0] * 7, "O-H": [1.0] * 12 + [2.0]}
    out = physics.compare({"edges": edges, "g": g_t}, {"edges": edges, "g": g_s}, RdfConfig())
    assert out["O-O"] == {"max_abs_diff": pytest.approx(0.2), "at_r": 2.75}  # 0.25 A: outside
    assert out["O-H"] == {"max_abs_diff": 0.0, "at_r": 2.25}  # 6.25 A: outside [2, 6]
    stopped = physics.compare({"edges": edges, "g": g_t}, {"failure": "step 40: nan"}, RdfConfig())
    assert stopped["O-O"] == {"max_abs_diff": None, "at_r": None}


def test_rdf_runs_outside_the_check_limits_are_named():
    from dpa2_jax.distill import report

    limits = CheckConfig(max_force=12.0, max_temperature_factor=1.5)
    calm = {"max_temperature_K": 340.0, "max_force_eV_A": 5.3}
    hot = {"max_temperature_K": 6383.8, "max_force_eV_A": 179.8}  # a student measured so
    assert physics.outside_limits(calm, limits, 300.0) == []
    assert physics.outside_limits(hot, limits, 300.0) == [
        "highest temperature 6384 K > 450 K", "largest force 179.8 eV/A > check.max_force 12"]
    assert physics.outside_limits({"max_temperature_K": None}, limits, 300.0) == []
    rdf = {"settings": {"compare": [2, 6], "temperature": 300.0}, "files": {},
           "pairs": {"O-O": {"max_abs_diff": 3.2, "at_r": 2.4}},
           "teacher": {"frames": 4, "outside_check_limits": []},
           "student": {"frames": 4, "outside_check_limits": physics.outside_limits(
               hot, limits, 300.0)}}  # fmt: skip
    assert ("g(r): the student's NVT MD left the check's limits (highest temperature 6384 K > "
            "450 K; largest force 179.8 eV/A > check.max_force 12): its g(r) is not the liquid's "
            "at 300 K") in report.rdf_lines(rdf)  # fmt: skip


def test_rdf_structure_is_checked_before_any_md():
    import ase

    from dpa2_jax.distill.config import RdfConfig
    from dpa2_jax.errors import DataError

    water = ase.Atoms("OH2OH2", positions=np.random.default_rng(0).uniform(0, 5, (6, 3)),
                      cell=np.eye(3) * 10, pbc=True)  # fmt: skip
    physics.check_structure(water, RdfConfig(), "w.xyz")
    with pytest.raises(DataError, match=r"report.rdf.pairs \['O', 'C'\]: w.xyz holds 2 O and 0 C"):
        physics.check_structure(water, RdfConfig(pairs=(("O", "O"), ("O", "C"))), "w.xyz")
    with pytest.raises(DataError, match="report.rdf.structure w.xyz: not periodic"):
        physics.check_structure(ase.Atoms("OH2", positions=np.eye(3)), RdfConfig(), "w.xyz")


@pytest.fixture(scope="module")
def rdf_report(se_models, tmp_path_factory):
    """The report's RDF part, with its inputs: teacher ``calm`` and, as the student, a copy of
    it (10 + 20 NVT steps at 300 K from data_0, a frame every 5, as exploration's: one MD
    program, compiled once; the slow end-to-end test has a trained student); the teacher once
    more with seed 1 (the noise)."""
    from dpa2_jax import load

    workdir = tmp_path_factory.mktemp("rdf_report")
    cfg = _cfg(se_models["calm"], report={"rdf": {"structure": "../tests/systems/water/data_0",
                                                  "equilibration": 10, "steps": 20, "every": 5,
                                                  "noise_seeds": 1}})  # fmt: skip
    os.makedirs(workdir / "student")
    shutil.copy(se_models["calm"], workdir / "student" / "model.dp")
    pots = {"teacher": load(se_models["calm"]), "student": load(workdir / "student" / "model.dp")}
    return cfg, str(workdir), pots, pipeline._rdf_report(cfg, str(workdir), pots)


def test_rdf_report_fields_and_plot(rdf_report):
    cfg, workdir, _, rdf = rdf_report
    assert rdf["structure"] == str(SYSTEMS / "water" / "data_0")
    assert rdf["settings"]["steps"] == 20 and rdf["settings"]["compare"] == [2.0, 6.0]
    assert rdf["r_max_used"] == pytest.approx(6.2)  # 12.44 A box: half its height, in 0.05 bins
    for name in ("teacher", "student"):
        assert rdf[name]["frames"] == 4 and rdf[name]["failure"] is None  # steps 15, 20, 25, 30
        assert 250 < rdf[name]["mean_temperature_K"] < 350
        assert rdf[name]["max_temperature_K"] >= rdf[name]["mean_temperature_K"]
        assert 0 < rdf[name]["max_force_eV_A"] < 1  # random nets: small forces
        assert rdf[name]["outside_check_limits"] == []
    saved = {name: json.loads(open(rdf["files"][name]).read()) for name in ("teacher", "student")}
    edges = np.asarray(saved["teacher"]["edges"])
    assert len(edges) == 125 and set(saved["teacher"]["g"]) == {"O-O", "O-H"}
    for pair in ("O-O", "O-H"):
        g_t, g_s = (np.asarray(saved[m]["g"][pair]) for m in ("teacher", "student"))
        centers = 0.5 * (edges[1:] + edges[:-1])
        inside = (centers >= 2.0) & (centers <= 6.0)
        # the same model from the same start with the same seed: the same trajectory
        np.testing.assert_array_equal(g_s, g_t)
        assert rdf["pairs"][pair]["max_abs_diff"] == 0.0 and 2.0 <= rdf["pairs"][pair]["at_r"]
        assert g_t[inside].max() > 0.5
    # water's O-H bond: g_OH has its first peak below 1.2 A in both (the nets are random, but
    # 20 steps do not break the starting structure's bonds)
    assert np.argmax(saved["teacher"]["g"]["O-H"]) < np.searchsorted(edges, 1.2)
    with open(rdf["files"]["plot"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert rdf["files"]["plot"] == os.path.join(workdir, "rdf.png")
    lines = pipeline.report.rdf_lines(rdf)
    assert lines[0].startswith("g(r) O-O, NVT 300 K, 4 frames: largest |student - teacher| "
                               "over 2-6 A ")  # fmt: skip
    # the structure's own DFT frames as the reference: liquid water's O-O peak near 2.8 A
    frames = len(np.load(SYSTEMS / "water" / "data_0" / "set.000" / "coord.npy"))
    reference = rdf["data frames"]
    assert reference["frames"] == frames >= physics.REFERENCE_FRAMES
    assert 2.6 < reference["first_peak"]["O-O"]["r"] < 3.0
    assert 2.0 < reference["first_peak"]["O-O"]["g"] < 4.0
    for name in ("teacher", "student"):
        against = rdf[name]["against_data_frames"]["O-O"]
        assert against["max_abs_diff"] > 0 and 2.0 <= against["at_r"] <= 6.0
        g_oo = np.asarray(saved[name]["g"]["O-O"])
        assert rdf[name]["first_peak"]["O-O"]["g"] == pytest.approx(g_oo[inside].max())
    assert any(line.startswith("g(r) O-O highest peak over 2-6 A: teacher ") and
               "data frames 2." in line for line in lines)  # fmt: skip
    # the teacher from another seed: another trajectory, so a nonzero difference (the noise)
    assert os.path.isfile(os.path.join(workdir, "rdf", "teacher_seed1.json"))
    assert rdf["teacher_seed1"]["frames"] == 4
    noise = rdf["noise"]["O-O"]
    assert noise["max_abs_diff"] > 0 and 2.0 <= noise["at_r"] <= 6.0
    assert f"(teacher, other seeds: {noise['max_abs_diff']:.3g})" in lines[0]
    assert physics.reference_rdf(str(SYSTEMS / "water" / "data_0" / "set.000"), cfg.report.rdf,
                                 edges) is None  # not a system: no reference  # fmt: skip


def test_rdf_report_reuses_saved_curves(rdf_report, monkeypatch):
    cfg, workdir, pots, rdf = rdf_report

    def refuse(*args, **kwargs):
        raise AssertionError("MD run again although its g(r) was saved")

    monkeypatch.setattr(physics, "nvt_rdf", refuse)
    assert pipeline._rdf_report(cfg, workdir, pots)["pairs"] == rdf["pairs"]
    # noise_seeds is not part of a run's settings: without it the saved runs still serve
    fewer = dataclasses.replace(cfg, report=dataclasses.replace(
        cfg.report, rdf=dataclasses.replace(cfg.report.rdf, noise_seeds=0)))  # fmt: skip
    assert "noise" not in pipeline._rdf_report(fewer, workdir, pots)
    # other settings: the saved curves are not reused
    calls = []
    monkeypatch.setattr(physics, "nvt_rdf", lambda *a, **k: calls.append(a[2]) or {"frames": 0})
    other = dataclasses.replace(cfg, report=dataclasses.replace(
        cfg.report, rdf=dataclasses.replace(cfg.report.rdf, seed=5)))  # fmt: skip
    out = pipeline._rdf_report(other, workdir, pots)
    assert len(calls) == 3 and out["pairs"]["O-O"]["max_abs_diff"] is None
    assert [c.seed for c in calls] == [5, 5, 6]
