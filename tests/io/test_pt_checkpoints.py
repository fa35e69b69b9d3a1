"""DeePMD-kit PyTorch checkpoints (``.pt``) and frozen models (``.pth``) read without torch
(io/torch_pickle.py, io/deepmd_checkpoint.py): every head gives DeePMD-kit's numbers; convert
and fine-tune from the command line; bad and hostile files are refused with a clear error.

Reference values: ``scripts/make_pt_checkpoint_reference.py`` (tests/reference/pt_checkpoints/).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

import dpa2_jax
from dpa2_jax.cli.main import main
from dpa2_jax.errors import CheckpointError, ConfigError
from dpa2_jax.io.convert import first_difference, flatten, read_model
from dpa2_jax.io.torch_pickle import read_torch_file
from tests.conftest import SYSTEMS

REF = Path(__file__).resolve().parent.parent / "reference" / "pt_checkpoints"
MULTI, SINGLE, FROZEN = REF / "multitask_dpa2.ckpt.pt", REF / "se_e2_a.ckpt.pt", REF / "se_e2_a.pth"
# One compilation per model and geometry: the molecule for both DPA-2 heads by default, the
# 192-atom periodic water (virial included) with -m slow.
CASES = [
    (MULTI, "water", "molecule"),
    (MULTI, "cho", "molecule"),
    (SINGLE, "default", "water"),
    (FROZEN, "default", "water"),
    pytest.param(MULTI, "water", "water", marks=pytest.mark.slow),
    pytest.param(MULTI, "cho", "water", marks=pytest.mark.slow),
]
TOL = {"energy": 1e-8, "forces": 1e-9, "virial": 1e-9, "atom_energy": 1e-9}


def _reference(path: Path, head: str, geometry: str) -> dict:
    stem = path.name.split(".")[0]
    return dict(np.load(REF / f"{stem}__{head}__{geometry}.npz"))


def _evaluate(pot, data: dict, head: str) -> dict:
    return pot.evaluate(coord=data["coords"], cell=data.get("cells"),
                        atom_types=data["atom_types"], fparam=data.get("fparam"),
                        head=None if head == "default" else head)  # fmt: skip


@pytest.fixture(scope="module")
def potentials():
    return {}


def _load(potentials, path):
    if path not in potentials:
        potentials[path] = dpa2_jax.load(path)
    return potentials[path]


@pytest.mark.parametrize("path,head,geometry", CASES, ids=lambda x: getattr(x, "name", x))
def test_every_head_gives_deepmd_numbers(potentials, path, head, geometry):
    data = _reference(path, head, geometry)
    out = _evaluate(_load(potentials, path), data, head)
    for key, tol in TOL.items():
        np.testing.assert_allclose(out[key], data[key], rtol=0, atol=tol, err_msg=key)


def test_heads_type_map_and_statistics_are_kept():
    cfg, params, meta = read_model(MULTI)
    assert cfg.head_names == ("water", "cho") and cfg.type_map == ("O", "H", "C")
    assert cfg.descriptor.family == "dpa2" and meta["train_infos"]["step"] == 3
    water, cho = params["heads"]["water"], params["heads"]["cho"]
    assert not np.array_equal(water["out_bias"], cho["out_bias"])  # a bias per head
    assert np.all(np.asarray(params["descriptor"]["repinit"]["dstd"]) != 1.0)  # data statistics
    cfg, params, _ = read_model(SINGLE)
    assert cfg.fitting("default").numb_fparam == 1 and cfg.type_map == ("O", "H")
    fitting = params["heads"]["default"]["fitting"]
    assert fitting["fparam_avg"].shape == (1,) and 0.5 < fitting["fparam_avg"][0] < 1.5
    frozen_cfg, frozen_params, _ = read_model(FROZEN)  # the same model, frozen by dp freeze
    assert frozen_cfg == cfg and first_difference(frozen_params, params, rtol=0) is None


def test_a_frozen_dpa2_head_is_that_head_of_the_checkpoint():
    cfg, params, meta = read_model(REF / "multitask_dpa2_cho.pth")  # dp freeze --head cho
    full_cfg, full, _ = read_model(MULTI)
    assert cfg.head_names == ("default",) and cfg.descriptor == full_cfg.descriptor
    assert cfg.fitting("default") == full_cfg.fitting("cho")
    assert first_difference(params["descriptor"], full["descriptor"], rtol=0) is None
    assert first_difference(params["heads"]["default"], full["heads"]["cho"], rtol=0) is None
    assert first_difference(params["heads"]["default"], full["heads"]["water"]) is not None


def test_convert_from_the_command_line_keeps_every_head(tmp_path, capsys):
    assert main(["convert", str(MULTI), str(tmp_path / "m")]) == 0
    cfg, params, meta = read_model(tmp_path / "m")
    ref_cfg, ref_params, _ = read_model(MULTI)
    assert cfg == ref_cfg and first_difference(params, ref_params, rtol=0) is None
    assert set(meta["converted_from"]) == {"water", "cho"}
    assert meta["model_def_script"]["cho"]["descriptor"]["type"] == "dpa2"
    assert main(["convert", str(MULTI), str(tmp_path / "r"), "--head-names", "w,c"]) == 0
    assert read_model(tmp_path / "r")[0].head_names == ("w", "c")
    assert main(["convert", str(MULTI), str(tmp_path / "x"), "--head-names", "w"]) == 2
    assert "1 head names ['w'] for 2 heads ['water', 'cho']" in capsys.readouterr().err


def test_head_aliases_are_read_and_kept_by_convert(tmp_path):
    from dpa2_jax.io.deepmd_checkpoint import head_aliases

    sections = {"water": {"model_branch_alias": ["H2O", "Water_1"]}, "cho": {}}
    assert head_aliases({"model_dict": sections}) == {"H2O": "water", "Water_1": "water"}
    assert head_aliases({"type_map": ["O"]}) == {}
    assert read_model(MULTI)[2]["head_aliases"] == {"CHO_molecules": "cho"}
    assert main(["convert", str(MULTI), str(tmp_path / "m")]) == 0
    assert read_model(tmp_path / "m")[2]["head_aliases"] == {"CHO_molecules": "cho"}


def _water_with_fparam(tmp_path: Path, nframes: int = 2) -> str:
    """Two frames of tests/systems/water/data_0 with a frame parameter (the se_e2_a model's)."""
    src, dst = SYSTEMS / "water" / "data_0", tmp_path / "water_fparam"
    (dst / "set.000").mkdir(parents=True)
    for name in ("type.raw", "type_map.raw"):
        (dst / name).write_text((src / name).read_text())
    for name in ("coord", "box", "energy", "force"):
        np.save(dst / "set.000" / f"{name}.npy", np.load(src / "set.000" / f"{name}.npy")[:nframes])
    np.save(dst / "set.000" / "fparam.npy", np.full((nframes, 1), 0.9))
    return str(dst)


def _finetune_input(tmp_path: Path, ckpt: Path, head: str | None, system: str) -> str:
    """The checkpoint's own model section (of ``head``), trained two steps on ``system``."""
    model = read_torch_file(ckpt)["model"]["_extra_state"]["model_params"]
    model = model["model_dict"][head] if head else model
    d = {
        "model": {k: model[k] for k in ("type_map", "descriptor", "fitting_net")},
        "learning_rate": {"type": "exp", "decay_steps": 2, "start_lr": 1e-3, "stop_lr": 1e-4},
        "loss": {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
                 "limit_pref_f": 1},
        "training": {
            "training_data": {"systems": [system], "batch_size": 1},
            "numb_steps": 2, "seed": 1, "disp_freq": 1, "save_freq": 2,
        },
    }  # fmt: skip
    path = tmp_path / "input.json"
    path.write_text(json.dumps(d))
    return str(path)


def _check_finetuned(workdir: Path, ckpt: Path) -> None:
    """The fine-tuned descriptor started from the checkpoint's: it moved, but only a little."""
    cfg, params, _ = read_model(workdir)
    old_cfg, old, _ = read_model(ckpt)
    assert cfg.type_map == old_cfg.type_map
    assert first_difference(params["descriptor"], old["descriptor"], rtol=0) is not None
    new_leaves, old_leaves = flatten(params["descriptor"]), flatten(old["descriptor"])
    change = max(np.max(np.abs(np.asarray(new_leaves[k]) - np.asarray(old_leaves[k])), initial=0)
                 for k in old_leaves)  # fmt: skip
    assert change < 0.01  # two Adam steps at lr 1e-3; a fresh model differs by O(1)


def test_finetune_from_a_checkpoint_on_the_command_line(tmp_path, capsys):
    inp = _finetune_input(tmp_path, SINGLE, None, _water_with_fparam(tmp_path))
    code = main(["train", inp, "--workdir", str(tmp_path / "ft"), "--finetune", str(SINGLE)])
    assert code == 0 and "trained 2 steps" in capsys.readouterr().out
    _check_finetuned(tmp_path / "ft", SINGLE)


@pytest.mark.slow
def test_finetune_from_a_multi_task_checkpoint_head_by_its_alias(tmp_path, capsys):
    system = str(SYSTEMS / "cho_molecules" / "C3H3O4")
    inp = _finetune_input(tmp_path, MULTI, "cho", system)
    code = main(["train", inp, "--workdir", str(tmp_path / "ft"), "--finetune", str(MULTI),
                 "--model-branch", "CHO_molecules"])  # fmt: skip
    assert code == 0 and "trained 2 steps" in capsys.readouterr().out
    _check_finetuned(tmp_path / "ft", MULTI)


def test_a_random_branch_keeps_the_descriptor_and_starts_a_fresh_head(tmp_path, enable_x64):
    from dpa2_jax.train.config import read_input
    from dpa2_jax.train.finetune import RANDOM, carry_over

    system = str(SYSTEMS / "cho_molecules" / "C3H3O4")
    cfg = read_input(_finetune_input(tmp_path, MULTI, "cho", system)).model
    old_cfg, old, _ = read_model(MULTI)
    params = carry_over(old_cfg, old, cfg, RANDOM, seed=0)
    assert first_difference(params["descriptor"], old["descriptor"], rtol=0) is None
    *_, output = params["heads"]["default"]["fitting"]["layers"]
    assert not np.any(output["w"]) and not np.any(output["b"])


def test_a_head_that_does_not_exist_lists_the_heads(tmp_path, capsys):
    system = str(SYSTEMS / "cho_molecules" / "C3H3O4")
    inp = _finetune_input(tmp_path, MULTI, "cho", system)
    code = main(["train", inp, "--workdir", str(tmp_path / "ft"), "--finetune", str(MULTI),
                 "--model-branch", "nope"])  # fmt: skip
    assert code == 2
    assert "unknown head 'nope'; this model has ['water', 'cho']" in capsys.readouterr().err


# ----------------------------------------------------------------------------- bad files
def test_truncated_and_foreign_files_are_refused(tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(MULTI.read_bytes()[: MULTI.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut.pt: not a PyTorch checkpoint .*truncated"):
        read_model(cut)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.pt: not a PyTorch checkpoint"):
        read_model(text)
    other = tmp_path / "other.pt"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("other/data.pkl", pickle.dumps({"weights": [1.0, 2.0]}, protocol=2))
    with pytest.raises(CheckpointError, match="other.pt: .*not a DeePMD-kit training checkpoint"):
        read_model(other)
    with zipfile.ZipFile(tmp_path / "plain.pt", "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="not one written by torch.save"):
        read_model(tmp_path / "plain.pt")


class _Exploit:
    """Pickles as a call of os.system: loading it with pickle.load would run the command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_forbidden_global_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = {"model": {"_extra_state": _Exploit(f"touch {marker}")}}
    path = tmp_path / "evil.ckpt.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match=r"evil.ckpt.pt: .*global (os|posix)\.system"):
        read_model(path)
    assert not marker.exists()


def _edited(src: Path, dst: Path, old: bytes, new: bytes) -> Path:
    """A copy of the checkpoint ``src`` with ``old`` replaced by ``new`` (same length) in its
    pickle."""
    assert len(old) == len(new)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith("/data.pkl"):
                assert old in data
                data = data.replace(old, new)
            zout.writestr(item, data)
    return dst


def test_an_unsupported_descriptor_is_named(tmp_path):
    path = _edited(SINGLE, tmp_path / "se_r.pt", b"se_e2_a", b"se_e2_r")
    with pytest.raises(ConfigError, match="se_e2_r"):
        read_model(path)


def test_a_missing_variable_is_named(tmp_path):
    path = _edited(SINGLE, tmp_path / "renamed.pt", b"sea.mean", b"sea.meah")
    with pytest.raises(CheckpointError, match=re.escape("module 'mean' is missing")):
        read_model(path)


def test_a_file_without_model_params_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not a DeePMD-kit training checkpoint"):
        read_model(_edited(SINGLE, tmp_path / "renamed.pth", b"model_params", b"model_paramz"))


# ----------------------------------------------------- heads that keep a variable of their own
PER_HEAD = REF / "per_head" / "per_head_tebd.ckpt.pt"  # scripts/make_pt_per_head_reference.py


@pytest.mark.parametrize("geometry", ["molecule", pytest.param("water", marks=pytest.mark.slow)])
def test_each_head_of_a_checkpoint_with_per_head_variables_gives_deepmd_numbers(geometry):
    for head in ("pbe_water", "wb97_chno", "cho_frag"):
        ref = dict(np.load(REF / "per_head" / f"per_head_tebd__{head}__{geometry}.npz"))
        pot = dpa2_jax.load(PER_HEAD, head=head)
        assert pot.heads == (head,)
        out = _evaluate(pot, ref, head)
        for key, tol in TOL.items():
            np.testing.assert_allclose(out[key], ref[key], rtol=0, atol=tol, err_msg=key)


def test_all_heads_of_such_a_checkpoint_are_refused_with_the_way_out(tmp_path, capsys):
    assert main(["convert", str(PER_HEAD), str(tmp_path / "all")]) == 2
    err = capsys.readouterr().err
    assert "descriptor/tebd_transform/w" in err and "--head NAME" in err
    assert not (tmp_path / "all").exists()
    assert main(["convert", str(PER_HEAD), str(tmp_path / "one"), "--head", "cho_frag"]) == 0
    assert dpa2_jax.load(tmp_path / "one").heads == ("cho_frag",)
    assert main(["convert", str(PER_HEAD), str(tmp_path / "two"), "--head", "nope"]) == 2
    assert "unknown head 'nope'" in capsys.readouterr().err


def test_one_head_by_its_alias_from_a_model_directory(tmp_path):
    main(["convert", str(MULTI), str(tmp_path / "both")])
    cfg, params, meta = read_model(tmp_path / "both", head="CHO_molecules")
    assert cfg.head_names == ("cho",) and list(params["heads"]) == ["cho"]
    with pytest.raises(ConfigError, match="unknown head 'nope'"):
        read_model(tmp_path / "both", head="nope")
