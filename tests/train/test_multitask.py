"""Multi-task training: DeePMD-kit's multi-task input, a head per task over one descriptor, one
compiled step per task, untouched heads bit for bit, per-task lcurve columns, and zero-shot use
of a head by name; then fine-tuning from the pretrained model (new element, frozen descriptor,
change-bias) and the bad inputs of both."""

import contextlib
import io
import json
import re

import jax
import numpy as np
import optax
import pytest

import dpa2_jax
from dpa2_jax.cli.main import main
from dpa2_jax.errors import ConfigError
from dpa2_jax.train.config import read_input, run_config
from dpa2_jax.train.lcurve import read_lcurve
from tests.conftest import ROOT, SYSTEMS, plumbing_model

WATER, CHO, CHNO = SYSTEMS / "water", SYSTEMS / "cho_molecules", SYSTEMS / "chno_molecules"


def _loss():
    return {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1}


def multi_task_input(steps: int = 6) -> dict:
    """Three tasks over a tiny descriptor: water (O, H), two C/H/O molecule sets."""
    model = plumbing_model()
    fitting = model["fitting_net"]
    return {
        "model": {
            "shared_dict": {"tm": ["O", "H", "C"], "dpa2": model["descriptor"]},
            "model_dict": {
                "water": {"type_map": "tm", "descriptor": "dpa2", "fitting_net": dict(fitting)},
                "cho": {"type_map": ["C", "H", "O"], "descriptor": "dpa2",
                        "fitting_net": dict(fitting)},
                "cho2": {"type_map": "tm", "descriptor": "dpa2:0", "fitting_net": dict(fitting)},
            },
        },
        "learning_rate": {"type": "exp", "decay_steps": 2, "start_lr": 0.005, "stop_lr": 1e-4},
        "loss_dict": {"water": _loss(), "cho": _loss(), "cho2": _loss()},
        "training": {
            "model_prob": {"water": 1, "cho": 1, "cho2": 1},
            "data_dict": {
                "water": {"training_data": {"systems": [str(WATER / "data_3")], "batch_size": 1},
                          "validation_data": {"systems": [str(WATER / "data_3")],
                                              "batch_size": 1}},
                "cho": {"training_data": {"systems": [str(CHO / "C4H3O1")], "batch_size": 2},
                        "validation_data": {"systems": [str(CHO / "C4H3O1")], "batch_size": 2}},
                "cho2": {"training_data": {"systems": [str(CHO / "C3H3O4")], "batch_size": 2}},
            },
            "numb_steps": steps, "seed": 3, "disp_freq": 3, "save_freq": steps,
        },
    }  # fmt: skip


def test_multi_task_input_merges_type_maps_and_normalises_probabilities():
    run = run_config(multi_task_input())
    assert run.model.type_map == ("O", "H", "C") and run.model.head_names == (
        "water",
        "cho",
        "cho2",
    )
    assert [t.name for t in run.tasks] == ["water", "cho", "cho2"]
    assert [t.prob for t in run.tasks] == pytest.approx([1 / 3] * 3)
    assert run.tasks[2].validation_data is None
    d = multi_task_input()
    del d["training"]["model_prob"]  # DeePMD's default: proportional to the training systems
    d["training"]["data_dict"]["cho"]["training_data"]["systems"].append(str(CHO / "C1H4O2"))
    assert [t.prob for t in run_config(d).tasks] == pytest.approx([0.25, 0.5, 0.25])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["training"]["data_dict"].pop("cho2"), "task 'cho2' has no data"),
        (lambda d: d["training"]["model_prob"].update(water=0, cho=0, cho2=0),
         "must sum to a positive number"),
        (lambda d: d["training"]["model_prob"].update(cho=-1), "numbers >= 0"),
        (lambda d: d["loss_dict"].update(chox={}), "'chox' is not a task.*did you mean 'cho'"),
        (lambda d: d["model"]["model_dict"]["cho"].update(descriptor="dpa3"),
         "'dpa3' is not a key of shared_dict"),
        (lambda d: d["model"]["model_dict"]["cho"].update(fitting_net="fit"),
         "fitting nets shared between tasks are not supported"),
        (lambda d: d["training"]["data_dict"]["cho"].pop("training_data"),
         "data_dict.cho.training_data: missing"),
    ],
)  # fmt: skip
def test_bad_multi_task_inputs_name_the_problem(edit, message):
    d = multi_task_input()
    edit(d)
    with pytest.raises(ConfigError, match=message):
        run_config(d)


def test_a_step_leaves_the_other_heads_bit_for_bit(enable_x64):
    from dpa2_jax.data.dataset import read_systems
    from dpa2_jax.graph.dataset import Dataset
    from dpa2_jax.model import init
    from dpa2_jax.train.optimizer import make_optimizer
    from dpa2_jax.train.schedules import make_schedule
    from dpa2_jax.train.state import create_state
    from dpa2_jax.train.step import make_train_step

    run = run_config(multi_task_input())
    cfg = run.model
    data = Dataset(read_systems([WATER / "data_3"], cfg.type_map), cfg.descriptor.rcut,
                   cfg.descriptor.sel, 1)  # fmt: skip
    batch = data.sample(np.random.default_rng(0))[1]
    optimizer = make_optimizer()
    state = create_state(init(jax.random.key(0), cfg), optimizer)
    schedule = make_schedule(run.learning_rate, 10)
    step = jax.jit(make_train_step(cfg, "water", run.tasks[0].loss, optimizer, schedule))
    new, _ = step(state, batch)
    new, _ = step(new, batch)
    for head in ("cho", "cho2"):
        for a, b in zip(jax.tree.leaves(state.params["heads"][head]),
                        jax.tree.leaves(new.params["heads"][head]), strict=True):  # fmt: skip
            np.testing.assert_array_equal(a, b)
        for a, b in zip(jax.tree.leaves(state.opt_state[f"head/{head}"]),
                        jax.tree.leaves(new.opt_state[f"head/{head}"]), strict=True):  # fmt: skip
            np.testing.assert_array_equal(a, b)
    moved = optax.global_norm(jax.tree.map(lambda a, b: a - b, new.params["heads"]["water"],
                                           state.params["heads"]["water"]))  # fmt: skip
    assert float(moved) > 0 and int(new.opt_state["head/water"].count) == 2


COMPILATIONS = {}  # the pretraining run's count, from its final line


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrain")
    (folder / "input.json").write_text(json.dumps(multi_task_input()))
    workdir = folder / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["train", str(folder / "input.json"), "--workdir", str(workdir)]) == 0
    COMPILATIONS["pretrain"] = int(re.search(r"\((\d+) compilations\)", out.getvalue())[1])
    return workdir


def test_multi_task_run_compiles_once_per_task_and_logs_every_task(pretrained, caplog):
    columns = read_lcurve(str(pretrained / "lcurve.out"))
    assert columns["step"] == [1.0, 3.0, 6.0]
    for name in ("rmse_f_val_water", "rmse_f_trn_water", "rmse_e_val_cho", "rmse_f_trn_cho2"):
        assert all(np.isfinite(columns[name])), name
    assert "rmse_f_val_cho2" not in columns  # no validation data for that task
    header = (pretrained / "lcurve.out").read_text().splitlines()[0]
    assert header.split()[1:4] == ["step", "rmse_val_water", "rmse_trn_water"]
    # 3 tasks: a training and an evaluation step each, never one per step (6 steps run)
    assert COMPILATIONS["pretrain"] <= 6


@pytest.mark.slow
def test_compilations_are_counted_per_task(tmp_path, capsys):
    (tmp_path / "input.json").write_text(json.dumps(multi_task_input(steps=4)))
    assert main(["train", str(tmp_path / "input.json"), "--workdir", str(tmp_path / "w")]) == 0
    out, err = capsys.readouterr()  # the CLI logs to stderr through its own handler
    compiled = [line for line in err.splitlines() if "compiling the" in line]
    training = [m for m in compiled if "training step" in m]
    assert 1 <= len(training) <= 3 and len({m.split("task ")[1].split()[0] for m in training}) == len(
        training
    )  # at most one training step compiled per task
    assert len(compiled) <= 6 and "compilations)" in out


def test_zero_shot_head_by_name(pretrained, capsys):
    pot = dpa2_jax.load(pretrained)
    assert pot.heads == ("water", "cho", "cho2")
    coord = np.load(CHO / "C4H3O1" / "set.000" / "coord.npy")[:2].reshape(2, -1, 3)
    symbols = ["C", "H", "O"]
    types = [symbols[t] for t in np.loadtxt(CHO / "C4H3O1" / "type.raw", dtype=int)]
    a = pot.evaluate(coord, None, types, head="cho")["energy"]
    b = pot.evaluate(coord, None, types, head="cho2")["energy"]
    assert a.shape == (2,) and not np.allclose(a, b)
    with pytest.raises(ConfigError, match=r"unknown head 'nope'; this model has \['water', 'cho'"):
        pot.evaluate(coord, None, types, head="nope")
    assert main(["test", str(pretrained), str(CHO / "C4H3O1"), "--head", "cho"]) == 0
    assert "rmse" in capsys.readouterr().out.lower()
    assert main(["test", str(pretrained), str(CHO / "C4H3O1")]) == 2
    assert "choose one with --head" in capsys.readouterr().err


# fine-tuning ------------------------------------------------------------------------------------


def chno_input(tmp_path, steps: int = 4) -> str:
    """A single-task input on the C/H/N/O molecules (N is new to the pretrained model)."""
    model = plumbing_model()
    model["type_map"] = ["C", "H", "N", "O"]
    d = {
        "model": model,
        "learning_rate": {"type": "exp", "decay_steps": 2, "start_lr": 0.002, "stop_lr": 1e-4},
        "loss": _loss(),
        "training": {
            "training_data": {"systems": [str(CHNO / "H8C4N2O")], "batch_size": 1},
            "validation_data": {"systems": [str(CHNO / "H10C5N2O")], "batch_size": 1},
            "numb_steps": steps, "seed": 5, "disp_freq": 2, "save_freq": steps,
        },
    }  # fmt: skip
    path = tmp_path / "chno.json"
    path.write_text(json.dumps(d))
    return str(path)


def test_a_new_element_leaves_existing_embeddings_and_energies_unchanged(pretrained, enable_x64):
    from dpa2_jax.io.convert import read_model
    from dpa2_jax.model.potential import Potential
    from dpa2_jax.train.finetune import carry_over

    old_cfg, old_params, _ = read_model(pretrained)
    new_cfg = read_input(chno_input(pretrained.parent)).model  # C, H, N, O: permuted, N new
    with pytest.warns(UserWarning, match=r"elements \['N'\] are not in the pretrained type map"):
        params = carry_over(old_cfg, old_params, new_cfg, "cho", seed=0)
    coord = np.load(CHO / "C4H3O1" / "set.000" / "coord.npy")[:3].reshape(3, -1, 3)
    types = [["C", "H", "O"][t] for t in np.loadtxt(CHO / "C4H3O1" / "type.raw", dtype=int)]
    old = Potential(old_cfg, old_params).evaluate(coord, None, types, head="cho")
    new = Potential(new_cfg, params).evaluate(coord, None, types)
    np.testing.assert_allclose(new["energy"], old["energy"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(new["forces"], old["forces"], rtol=0, atol=1e-10)
    from dpa2_jax.descriptor import type_embedding

    table_old = type_embedding.apply(old_params["descriptor"]["type_embedding"], np.eye(3))
    table_new = type_embedding.apply(params["descriptor"]["type_embedding"], np.eye(4))
    for k, e in enumerate(new_cfg.type_map):
        if e in old_cfg.type_map:
            np.testing.assert_allclose(table_new[k], table_old[old_cfg.type_map.index(e)],
                                       atol=1e-14)  # fmt: skip


def test_random_branch_starts_from_the_energy_bias_with_zero_forces(pretrained, enable_x64):
    from dpa2_jax.io.convert import read_model
    from dpa2_jax.model.potential import Potential
    from dpa2_jax.train.finetune import RANDOM, carry_over

    old_cfg, old_params, _ = read_model(pretrained)
    new_cfg = read_input(chno_input(pretrained.parent)).model
    with pytest.warns(UserWarning, match="not in the pretrained type map"):
        params = carry_over(old_cfg, old_params, new_cfg, RANDOM, seed=0)
    *hidden, output = params["heads"]["default"]["fitting"]["layers"]
    assert not np.any(output["w"]) and not np.any(output["b"])
    assert all(np.std(layer["w"]) > 0.05 for layer in hidden)  # drawn as for a new model
    coord = np.load(CHNO / "H8C4N2O" / "set.000" / "coord.npy")[:2].reshape(2, -1, 3)
    types = np.loadtxt(CHNO / "H8C4N2O" / "type.raw", dtype=int)
    out = Potential(new_cfg, params).evaluate(coord, None, types)
    bias = np.asarray(params["heads"]["default"]["out_bias"]).reshape(-1)
    bias = bias + np.asarray(params["heads"]["default"]["fitting"]["bias_atom_e"]).reshape(-1)
    np.testing.assert_allclose(out["energy"], bias[types].sum(), rtol=1e-12)
    assert not np.any(out["forces"])


def test_finetune_with_frozen_descriptor_trains_the_head_only(pretrained, tmp_path, capsys):
    from dpa2_jax.io.convert import read_model
    from dpa2_jax.train.finetune import carry_over

    inp = chno_input(tmp_path)
    with pytest.warns(UserWarning, match="not in the pretrained type map"):
        code = main(["train", inp, "--workdir", str(tmp_path / "ft"), "--finetune",
                     str(pretrained), "--model-branch", "cho",
                     "--config.training.freeze_descriptor=true"])  # fmt: skip
    assert code == 0
    _, tuned, _ = read_model(tmp_path / "ft")
    old_cfg, old_params, _ = read_model(pretrained)
    cfg = read_input(inp).model
    with pytest.warns(UserWarning):
        start = carry_over(old_cfg, old_params, cfg, "cho", seed=5)
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(start["descriptor"])[0],
                            jax.tree.leaves(tuned["descriptor"]), strict=True):  # fmt: skip
        if getattr(path[-1], "key", None) not in (
            "davg",
            "dstd",
        ):  # the new element's statistics are set
            np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    w0 = start["heads"]["default"]["fitting"]["layers"][0]["w"]
    assert not np.array_equal(w0, tuned["heads"]["default"]["fitting"]["layers"][0]["w"])


@pytest.mark.slow
def test_finetune_smaller_descriptor_lr_and_random_branch_run(pretrained, tmp_path, capsys):
    with pytest.warns(UserWarning):
        code = main(["train", chno_input(tmp_path, steps=2), "--workdir", str(tmp_path / "ft"),
                     "--finetune", str(pretrained), "--model-branch", "RANDOM",
                     "--config.training.descriptor_lr_scale=0.1"])  # fmt: skip
    assert code == 0 and "trained 2 steps" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model-branch", "nope"], r"unknown head 'nope'; this model has \['water', 'cho', "
                                     r"'cho2'\] \(or RANDOM"),
        ([], "choose one with head="),
        (["--model-branch", "cho", "--config.model.descriptor.repinit.nsel=30"],
         r"descriptor disagrees .*descriptor.repinit.nsel \(40 vs 30\)"),
        (["--model-branch", "cho", "--config.model.fitting_net.neuron=[4]"],
         r"fitting_net disagrees with head 'cho'.*neuron"),
    ],
)  # fmt: skip
def test_bad_finetune_inputs_name_the_problem(pretrained, tmp_path, capsys, extra, message):
    code = main(["train", chno_input(tmp_path), "--workdir", str(tmp_path / "ft"), "--finetune",
                 str(pretrained), *extra])  # fmt: skip
    assert code == 2
    assert __import__("re").search(message, capsys.readouterr().err)


def test_change_bias_fits_the_residual(pretrained, tmp_path, capsys, enable_x64):
    from dpa2_jax.data.dataset import read_systems

    out = tmp_path / "biased"
    assert main(["change-bias", str(pretrained), str(WATER / "data_0"), "--head", "water",
                 "-o", str(out), "--frames", "20"]) == 0  # fmt: skip
    assert "energy bias of head 'water' (change)" in capsys.readouterr().out
    before, after = dpa2_jax.load(pretrained), dpa2_jax.load(out)
    assert after.heads == ("water", "cho", "cho2")
    [system] = read_systems([WATER / "data_0"], before.config.type_map)
    residual = []
    for pot in (before, after):
        e = pot.evaluate(system.coords[:20], system.cells[:20], system.atom_types,
                         head="water")["energy"]  # fmt: skip
        residual.append(system.energies[:20] - e)
    # least squares over one composition: the mean residual goes to zero
    assert abs(np.mean(residual[1])) < 1e-8 < abs(np.mean(residual[0]))
    np.testing.assert_allclose(np.std(residual[1]), np.std(residual[0]), rtol=1e-8)
    assert main(["change-bias", str(pretrained), str(WATER / "data_0"), "--head", "water",
                 "-o", str(out)]) == 2  # fmt: skip
    assert "already exists" in capsys.readouterr().err


def test_pretrain_mini_config_is_a_three_task_model():
    run = read_input(ROOT / "configs" / "pretrain_mini.py")
    assert set(run.model.head_names) == {"water", "water_virial", "cho"} and run.multi_task
    assert run.model.type_map == ("H", "C", "N", "O")


def test_heads_exported_to_dp_and_merged_back_give_deepmds_numbers(pretrained, tmp_path):
    """Each head of the pretrained model -> its own .dp (DeePMD-kit's format) -> merged again
    into one multi-head model: every head gives what DeePMD-kit computes from its .dp file."""
    pytest.importorskip("deepmd")
    from deepmd.dpmodel.model.base_model import BaseModel
    from deepmd.dpmodel.utils.serialization import load_dp_model

    files = {}
    for head in ("water", "cho"):
        files[head] = tmp_path / f"{head}.dp"
        assert main(["export", str(pretrained), str(files[head]), "--head", head]) == 0
    merged = tmp_path / "merged"
    assert main(["convert", str(files["water"]), str(files["cho"]), str(merged)]) == 0
    pot = dpa2_jax.load(merged)
    assert pot.heads == ("water", "cho")
    coord = np.load(CHO / "C4H3O1" / "set.000" / "coord.npy")[:2].reshape(2, -1, 3)
    types = np.loadtxt(CHO / "C4H3O1" / "type.raw", dtype=int)  # C, H, O in that folder
    symbols = [["C", "H", "O"][t] for t in types]
    model_types = np.array([pot.type_map.index(s) for s in symbols])
    for head, path in files.items():
        theirs = BaseModel.deserialize(load_dp_model(str(path))["model"])
        ref = theirs.call(coord.reshape(2, -1), np.tile(model_types, (2, 1)), box=None)
        ours = pot.evaluate(coord, None, symbols, head=head)["energy"]
        np.testing.assert_allclose(ours, np.asarray(ref["energy"]).reshape(2), rtol=0, atol=1e-10)


def test_change_bias_follows_the_bias_prior_where_water_cannot_separate_o_and_h(
    pretrained, tmp_path, capsys, enable_x64
):
    """Water has one composition: --bias-prior fixes the O/H split, the fit keeps the rest."""
    from dpa2_jax.data.dataset import read_systems

    biased = {}
    for name, extra in (("plain", []), ("prior", ["--bias-prior", "O=-400", "H=-20"])):
        out = tmp_path / name
        assert main(["change-bias", str(pretrained), str(WATER / "data_0"), "--head", "water",
                     "-o", str(out), "--mode", "set", *extra]) == 0  # fmt: skip
        biased[name] = dpa2_jax.load(out)
    type_map = biased["plain"].config.type_map
    [system] = read_systems([WATER / "data_0"], type_map)
    count = np.bincount(system.atom_types, minlength=len(type_map)).astype(float)
    plain, prior = (np.asarray(biased[k].params["heads"]["water"]["out_bias"]) for k in biased)
    np.testing.assert_allclose(count @ prior, count @ plain, rtol=1e-12)  # same energies
    o, h = type_map.index("O"), type_map.index("H")
    free = np.zeros(len(type_map))  # the undetermined direction: O and H against each other
    free[o], free[h] = count[h], -count[o]
    stated = np.zeros(len(type_map))
    stated[o], stated[h] = -400.0, -20.0
    assert abs(free @ (prior - stated)) < 1e-8 * abs(free @ stated)  # nearest to the prior
    assert abs(free @ (plain - stated)) > 100.0
    assert main(["change-bias", str(pretrained), str(WATER / "data_0"), "-o",
                 str(tmp_path / "bad"), "--head", "water", "--bias-prior", "O:-400"]) == 2  # fmt: skip
    assert "--bias-prior 'O:-400'" in capsys.readouterr().err
