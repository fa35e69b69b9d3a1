"""The distillation stages without MD (dpa2_jax/distill): perturbation and committee selection,
the label stage on explored frames (its data set round-trips through read_npy_system and
DeePMD-kit's DeepmdData, holds the teacher's numbers, and is split into train and valid), and a
resumed run that skips finished stages; config errors name the key."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

from dpa2_jax.data import read_npy_system, select_frames
from dpa2_jax.distill import distill_config, pipeline
from dpa2_jax.distill.config import PerturbConfig
from dpa2_jax.distill.explore import Frames, perturb, select_by_deviation, write_frames
from dpa2_jax.distill.label import split_frames
from dpa2_jax.errors import ConfigError, DataError
from tests.conftest import ROOT, SYSTEMS, load_config_module

TEACHER = ROOT / "examples" / "water_tiny" / "model.dp"
pytestmark = pytest.mark.filterwarnings("ignore:dpa2_jax. enabling jax_enable_x64:UserWarning")


def _frames(n: int = 3) -> Frames:
    s = select_frames(read_npy_system(SYSTEMS / "water" / "data_3"), list(range(n)))
    return Frames(s.coords, s.cells, tuple(s.type_map[t] for t in s.atom_types),
                  np.arange(1, n + 1) * 10)  # fmt: skip


def test_perturb_keeps_fractional_coordinates():
    frames = _frames(2)
    out = perturb(frames, PerturbConfig(copies=3, strain=0.05, displacement=0.0),
                  np.random.default_rng(0))  # fmt: skip
    assert len(out.steps) == 8 and list(out.steps) == [10, 20, 10, 10, 10, 20, 20, 20]
    np.testing.assert_array_equal(out.coords[:2], frames.coords)  # originals first
    frac = np.linalg.solve(out.cells.transpose(0, 2, 1), out.coords.transpose(0, 2, 1))
    np.testing.assert_allclose(frac[2], frac[0], atol=1e-12)  # same fractional positions
    ratio = np.linalg.norm(out.cells[2:], axis=-1) / np.linalg.norm(frames.cells[[0]], axis=-1)
    assert np.all(np.abs(ratio - 1) < 0.1) and not np.allclose(ratio, 1)
    moved = perturb(frames, PerturbConfig(copies=1, strain=0.0, displacement=0.1),
                    np.random.default_rng(0))  # fmt: skip
    shift = moved.coords[2:] - frames.coords
    assert np.abs(shift).max() <= 0.1 and np.abs(shift).max() > 0.05


def test_select_by_deviation():
    mask = select_by_deviation([0.01, 0.05, 0.2, 0.3, 0.5], 0.05, 0.3)
    assert mask.tolist() == [False, True, True, False, False]


def test_split_frames():
    train, valid = split_frames(10, 0.2, np.random.default_rng(0))
    assert len(valid) == 2 and sorted([*train, *valid]) == list(range(10))
    assert len(split_frames(3, 0.1, np.random.default_rng(0))[1]) == 1  # at least one held out
    assert len(split_frames(1, 0.5, np.random.default_rng(0))[1]) == 0  # never all


def _config(tmp_path, **label):
    d = load_config_module("distill_water_tiny").get_config().to_dict()
    d["label"].update(label)
    return distill_config(d, str(ROOT / "configs"))


def test_label_stage_writes_deepmd_data_and_resumes(tmp_path, monkeypatch):
    cfg = _config(tmp_path, validation_fraction=0.25)
    workdir = str(tmp_path / "w")
    frames = _frames(4)
    write_frames(frames, ("O", "H"), os.path.join(workdir, "explore", "s0_300K"))
    with open(os.path.join(workdir, "explore", "summary.json"), "w") as f:
        json.dump({"runs": [{"name": "s0_300K"}]}, f)
    summary = pipeline.run(cfg, workdir, "label")["label"]
    assert summary["teacher"] == str(TEACHER) and summary["frames"] == 4
    assert (summary["train"], summary["valid"]) == (["data/train/s0_300K"], ["data/valid/s0_300K"])
    train = read_npy_system(os.path.join(workdir, "data", "train", "s0_300K"))
    valid = read_npy_system(os.path.join(workdir, "data", "valid", "s0_300K"))
    assert (train.nframes, valid.nframes) == (3, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from dpa2_jax import load

        teacher = load(TEACHER)
    parts = [teacher.evaluate(frames.coords[k], frames.cells[k], list(frames.symbols))
             for k in range(4)]  # one frame per call, as labelled: one compiled shape  # fmt: skip
    ref = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    order = [int(np.flatnonzero((frames.coords == c).all(axis=(1, 2)))[0])
             for c in np.concatenate([train.coords, valid.coords])]  # fmt: skip
    assert sorted(order) == [0, 1, 2, 3]  # every frame once, in train or valid
    labelled = {k: np.concatenate([getattr(train, k), getattr(valid, k)])
                for k in ("energies", "forces", "virials")}  # fmt: skip
    np.testing.assert_allclose(labelled["energies"], ref["energy"][order], rtol=1e-12)
    np.testing.assert_allclose(labelled["forces"], ref["forces"][order], atol=1e-12)
    np.testing.assert_allclose(labelled["virials"], ref["virial"][order], atol=1e-12)

    DeepmdData = pytest.importorskip("deepmd.utils.data").DeepmdData
    data = DeepmdData(os.path.join(workdir, "data", "train", "s0_300K"), shuffle_test=False,
                      type_map=["O", "H"], sort_atoms=False)  # fmt: skip
    for key, ndof, atomic in (("energy", 1, False), ("force", 3, True), ("virial", 9, False)):
        data.add(key, ndof, atomic=atomic, must=True, high_prec=key == "energy")
    test = data.get_test()
    np.testing.assert_allclose(test["coord"].reshape(3, -1, 3), train.coords, rtol=1e-12)
    np.testing.assert_allclose(test["box"].reshape(3, 3, 3), train.cells, rtol=1e-12)
    np.testing.assert_allclose(test["energy"].ravel(), train.energies, rtol=1e-12)
    np.testing.assert_allclose(test["force"].reshape(3, -1, 3), train.forces, atol=1e-12)
    np.testing.assert_allclose(test["virial"].reshape(3, 3, 3), train.virials, atol=1e-12)
    assert data.get_type_map() == ["O", "H"]

    # resumed: finished stages are skipped (the teacher is not even loaded)
    def refuse(path):
        raise AssertionError(f"{path} loaded by a finished stage")

    monkeypatch.setattr(pipeline, "_load", refuse)
    before = os.path.getmtime(os.path.join(workdir, "data", "summary.json"))
    assert pipeline.run(cfg, workdir, "explore")["explore"] == {"runs": [{"name": "s0_300K"}]}
    assert pipeline.run(cfg, workdir, "label")["label"] == summary
    assert os.path.getmtime(os.path.join(workdir, "data", "summary.json")) == before
    with pytest.raises(DataError, match="run --stage label first|not finished"):
        pipeline.run(cfg, str(tmp_path / "empty"), "report")


def test_config_errors_name_the_key():
    base = load_config_module("distill_water_tiny").get_config().to_dict()
    with pytest.raises(ConfigError, match="unknown key 'temperature'; did you mean 'temperatures'"):
        distill_config({**base, "explore": {**base["explore"], "temperature": 300}}, ".")
    with pytest.raises(ConfigError, match="unknown section 'studnet'; did you mean 'student'"):
        distill_config({**base, "studnet": {}}, ".")
    with pytest.raises(ConfigError, match="explore.committee.models: give two or more"):
        committee = {**base["explore"]["committee"], "models": ["a.dp"]}
        distill_config({**base, "explore": {**base["explore"], "committee": committee}}, ".")
    with pytest.raises(ConfigError, match="explore.steps 20 and explore.every 50"):
        distill_config({**base, "explore": {**base["explore"], "every": 50}}, ".")


def test_config_overrides_apply_and_name_bad_keys():
    from dpa2_jax.distill import read_distill_config

    path = ROOT / "configs" / "distill_water_tiny.py"
    cfg = read_distill_config(path, ["explore.steps=40", "explore.temperatures=[300, 900]"])
    assert cfg.explore.steps == 40 and tuple(cfg.explore.temperatures) == (300, 900)
    assert read_distill_config(path).explore.steps != 40
    with pytest.raises(ConfigError, match="no section 'explor'"):
        read_distill_config(path, ["explor.steps=40"])


def test_command_errors_name_the_problem(tmp_path, capsys):
    from dpa2_jax.cli.main import main

    missing = tmp_path / "nope.py"
    assert main(["distill", str(missing), "--workdir", str(tmp_path / "w")]) == 2
    assert f"{missing}: no such config file" in capsys.readouterr().err
    config = str(ROOT / "configs" / "distill_water_tiny.py")
    assert main(["distill", config, "--workdir", str(tmp_path / "w"), "--stage", "label"]) == 2
    assert "explore/summary.json: missing; run --stage explore first" in capsys.readouterr().err
    teacher = tmp_path / "teacher.dp"
    args = ["distill", config, "--workdir", str(tmp_path / "w"), "--teacher", str(teacher)]
    assert main(args) == 2
    assert f"{teacher}: no such model file or directory" in capsys.readouterr().err
    assert main(["distill", config, "--workdir", str(tmp_path / "w"), "--steps=3"]) == 2
    assert "distill: unknown option '--steps=3'" in capsys.readouterr().err


def test_committee_selection(tiny_dp, tmp_path):
    from dpa2_jax import load
    from dpa2_jax.distill.config import CommitteeConfig
    from dpa2_jax.distill.explore import _select, committee_deviation
    from dpa2_jax.model.deviation import read_model_devi

    frames = _frames(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pots = [load(TEACHER), load(tiny_dp)]
    table = committee_deviation(pots, frames, None)
    forces = np.stack([p.evaluate(frames.coords, frames.cells, list(frames.symbols))["forces"]
                       for p in pots])  # fmt: skip
    eps = np.sqrt(np.mean(np.sum((forces - forces.mean(0)) ** 2, axis=-1), axis=0))
    np.testing.assert_allclose(table[:, 4], eps.max(axis=1), rtol=1e-12)
    lo, hi = table[:, 4].min(), table[:, 4].max()  # hi is excluded: one frame kept
    cfg = CommitteeConfig(models=("a", "b"), lo=lo, hi=hi)
    kept = _select(frames, pots, cfg, str(tmp_path / "run"))
    assert list(kept.steps) == [frames.steps[int(np.argmin(table[:, 4]))]]
    written = read_model_devi(tmp_path / "run.model_devi.out")
    np.testing.assert_array_equal(written["step"], frames.steps)
