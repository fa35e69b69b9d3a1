"""dpa2-jax command line (cli/*.py), .dp <-> model directory conversion (io/convert.py) and the
dp-test-style metrics (metrics.py), all called in-process through main([...])."""

from __future__ import annotations

import copy
import dataclasses
import pathlib

import ase.io
import numpy as np
import pytest
from tests.conftest import SYSTEMS, random_params

import dpa2_jax
from dpa2_jax.cli.main import main
from dpa2_jax.data import read_npy_system, system_to_atoms
from dpa2_jax.errors import ConfigError
from dpa2_jax.io.checkpoints import load_model
from dpa2_jax.io.convert import (
    convert,
    flatten,
    merge_heads,
    model_def_script,
    read_model,
)
from dpa2_jax.io.deepmd_export import to_deepmd
from dpa2_jax.io.dp_format import write_dp
from dpa2_jax.metrics import error_stats, merge_metrics, test_system

WATER = SYSTEMS / "water"
WATER_3 = WATER / "data_3"


def _write(path: pathlib.Path, cfg, params) -> pathlib.Path:
    write_dp(path, {"model": to_deepmd(cfg, params), "model_def_script": model_def_script(cfg)})
    return path


def _assert_trees_equal(a, b):
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    for key in fa:
        np.testing.assert_array_equal(np.asarray(fa[key]), np.asarray(fb[key]), err_msg=key)


@pytest.mark.parametrize("command", ["convert", "export", "test", "graphs"])
def test_help_names_units_and_formats(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "Angstrom" in text or "eV" in text
    assert ".dp" in text or "npy" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert dpa2_jax.__version__ in capsys.readouterr().out


def test_library_error_is_one_line_exit_2(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.dp"), str(tmp_path / "out.dp")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dpa2-jax: error: ") and "missing.dp" in err
    assert "Traceback" not in err


def test_log_lines_are_written_around_the_progress_bar(monkeypatch):
    """The command line's log handler prints through tqdm.write, which clears a progress bar,
    prints the line and draws the bar again, instead of writing into the bar's line."""
    import logging
    import sys

    from dpa2_jax.cli import main as cli_main

    written = []
    monkeypatch.setattr(cli_main.tqdm, "write", lambda text, file=None: written.append((text, file)))
    with cli_main._logging_to_stderr(verbose=False):
        logging.getLogger("dpa2_jax.train.loop").info("restarted from step %d", 10)
    assert written == [("INFO dpa2_jax.train.loop: restarted from step 10", sys.stderr)]


def test_interruptions_outside_training_are_one_line(monkeypatch, capsys):
    from dpa2_jax.cli import export

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "run", interrupted)
    assert main(["export", "a", "b.dp"]) == 130
    err = capsys.readouterr().err
    assert err == "dpa2-jax: interrupted\n"


def test_convert_export_roundtrip_same_energies(tiny_dp, tmp_path):
    model_dir, exported = tmp_path / "model", tmp_path / "exported.dp"
    assert main(["convert", str(tiny_dp), str(model_dir)]) == 0
    assert main(["export", str(model_dir), str(exported)]) == 0
    cfg0, params0, _ = read_model(tiny_dp)
    for path in (model_dir, exported):
        cfg, params, _ = read_model(path)
        assert cfg == cfg0
        _assert_trees_equal(params, params0)
    water = read_npy_system(WATER_3).select_frames([0, 1])
    energies = [
        dpa2_jax.load(path).evaluate(water.coords, water.cells, water.atom_types)["energy"]
        for path in (tiny_dp, model_dir, exported)
    ]
    np.testing.assert_array_equal(energies[1], energies[0])
    np.testing.assert_array_equal(energies[2], energies[0])


def test_multi_head_convert_and_export(tiny_config, tiny_params, tmp_path, capsys):
    other = random_params(tiny_config, seed=1)
    other["descriptor"] = tiny_params["descriptor"]  # same descriptor, other fitting net
    water = _write(tmp_path / "water.dp", tiny_config, tiny_params)
    cho = _write(tmp_path / "cho.dp", tiny_config, other)
    assert main(["convert", str(water), str(cho), str(tmp_path / "mt"),
                 "--head-names", "w,c"]) == 0  # fmt: skip
    cfg, params, meta = load_model(tmp_path / "mt")
    assert cfg.head_names == ("w", "c")
    _assert_trees_equal(params["heads"]["w"], tiny_params["heads"]["default"])
    _assert_trees_equal(params["heads"]["c"], other["heads"]["default"])
    assert set(meta["converted_from"]) == {"w", "c"}
    assert convert([water, cho], tmp_path / "stems").head_names == ("water", "cho")

    assert main(["export", str(tmp_path / "mt"), str(tmp_path / "x.dp")]) == 2
    assert "--head" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "mt"), str(tmp_path / "x.dp"), "--head", "c"]) == 0
    _, exported, _ = read_model(tmp_path / "x.dp")
    _assert_trees_equal(exported["heads"]["default"], other["heads"]["default"])


def test_mismatched_descriptors_name_the_variable(tiny_config, tiny_params, tmp_path, capsys):
    other = copy.deepcopy(tiny_params)
    other["descriptor"]["repformers"]["layers"][1]["linear1"]["w"][0, 0] *= 1 + 1e-9
    a = _write(tmp_path / "a.dp", tiny_config, tiny_params)
    b = _write(tmp_path / "b.dp", tiny_config, other)
    assert main(["convert", str(a), str(b), str(tmp_path / "ab")]) == 2
    err = capsys.readouterr().err
    assert "descriptor/repformers/layers/1/linear1/w" in err
    assert not (tmp_path / "ab").exists()

    tiny = copy.deepcopy(tiny_params)
    tiny["descriptor"]["repinit"]["dstd"] *= 1 + 1e-14  # within 1e-12 relative: accepted
    merge_heads([("a", tiny_config, tiny_params), ("b", tiny_config, tiny)])
    smooth = dataclasses.replace(tiny_config.descriptor, smooth=False)
    with pytest.raises(ConfigError, match="descriptor.smooth"):
        merge_heads(
            [
                ("a", tiny_config, tiny_params),
                ("b", dataclasses.replace(tiny_config, descriptor=smooth), tiny_params),
            ]
        )
    with pytest.raises(ConfigError, match="repeat"):
        merge_heads([("a", tiny_config, tiny_params), ("a", tiny_config, tiny_params)])


def test_export_and_convert_refuse_to_overwrite(tiny_dp, tmp_path, capsys):
    dst = tmp_path / "out.dp"
    assert main(["export", str(tiny_dp), str(dst)]) == 0
    before = dst.read_bytes()
    assert main(["export", str(tiny_dp), str(dst)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert dst.read_bytes() == before
    assert main(["export", str(tiny_dp), str(dst), "--overwrite"]) == 0
    (tmp_path / "dir").mkdir()
    assert main(["convert", str(tiny_dp), str(tmp_path / "dir")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_test_command_reports_and_detail_files(tiny_dp, tmp_path, capsys):
    prefix = str(tmp_path / "detail")
    assert main(["test", str(tiny_dp), str(WATER), "--numb-test", "2",
                 "--detail-file", prefix]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.count("# testing system") == 4
    for line in ("Energy RMSE        :", "Energy RMSE/Natoms :", "Force  RMSE        :"):
        assert out.count(line) == 5  # four systems and the weighted average
    assert "Virial" not in out  # the water systems have no virial labels
    assert "# number of systems : 4" in out

    e = np.loadtxt(prefix + ".e.out")
    assert e.shape == (8, 2)
    labels = np.concatenate([read_npy_system(WATER / f"data_{k}").energies[:2] for k in range(4)])
    np.testing.assert_allclose(e[:, 0], labels)
    pot = dpa2_jax.load(tiny_dp)
    water = read_npy_system(WATER_3).select_frames([0, 1])
    np.testing.assert_allclose(
        e[6:, 1], pot.evaluate(water.coords, water.cells, water.atom_types)["energy"], rtol=1e-12
    )
    np.testing.assert_allclose(np.loadtxt(prefix + ".e_peratom.out"), e / 192)
    shapes = {".f.out": (8 * 192, 6), ".v.out": (8, 18), ".v_peratom.out": (8, 18)}
    for suffix, shape in shapes.items():
        assert np.loadtxt(prefix + suffix).shape == shape
    header = pathlib.Path(prefix + ".f.out").read_text().splitlines()
    assert header[0] == f"# {WATER / 'data_0'}: data_fx data_fy data_fz pred_fx pred_fy pred_fz"
    assert sum(line.startswith("#") for line in header) == 1
    v_header = pathlib.Path(prefix + ".v.out").read_text().splitlines()[0]
    assert v_header.endswith("data_vzz pred_vxx pred_vxy pred_vxz pred_vyx pred_vyy pred_vyz "
                             "pred_vzx pred_vzy pred_vzz")  # fmt: skip
    rmse = float(out.split("weighted average")[1].split("Energy RMSE        :")[1].split()[0])
    assert rmse == pytest.approx(np.sqrt(np.mean((e[:, 0] - e[:, 1]) ** 2)), rel=1e-6)


def test_test_command_on_ase_file(tiny_dp, tmp_path, capsys):
    water = read_npy_system(WATER_3).select_frames([0, 1])
    ase.io.write(tmp_path / "water.extxyz", [system_to_atoms(water, k) for k in range(2)])
    assert main(["test", str(tiny_dp), str(tmp_path / "water.extxyz"),
                 "--detail-file", str(tmp_path / "x")]) == 0  # fmt: skip
    assert "Force  RMSE" in capsys.readouterr().out
    pred = dpa2_jax.load(tiny_dp).evaluate(water.coords, water.cells, water.atom_types)
    # extxyz stores positions to 1e-8 A, hence the tolerance
    np.testing.assert_allclose(np.loadtxt(tmp_path / "x.e.out")[:, 1], pred["energy"], rtol=1e-8)


class _FakePotential:
    """Predicts labels + 1 (energy), + 0.5 (forces), + 2 (virial): known errors, no compile."""

    type_map = ("O", "H")
    atoms_per_batch = 384

    def __init__(self, labels):
        self.labels, self.done = labels, 0

    def evaluate(self, coord, cell, atom_types, head=None):
        frames = slice(self.done, self.done + len(coord))
        self.done += len(coord)
        return {
            "energy": self.labels.energies[frames] + 1.0,
            "forces": self.labels.forces[frames] + 0.5,
            "virial": self.labels.virials[frames] + 2.0,
        }


def test_metrics_weights_and_virials():
    system = read_npy_system(SYSTEMS / "water_virial_384").select_frames(slice(0, 3))
    calls = []
    result = test_system(_FakePotential(system), system, progress=calls.append)
    assert calls == [1, 1, 1]  # 384 atoms per call -> one frame per call
    m = result["metrics"]
    assert m["energy"] == {"mae": 1.0, "rmse": 1.0, "count": 3}
    assert m["energy_per_atom"]["rmse"] == pytest.approx(1 / 384)
    assert m["forces"]["count"] == 3 * 384 * 3 and m["forces"]["mae"] == pytest.approx(0.5)
    assert m["virial"]["rmse"] == pytest.approx(2.0) and m["virial"]["count"] == 27
    merged = merge_metrics(
        [
            {"energy": error_stats([1.0], [0.0])},
            {"energy": error_stats([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])},
        ]
    )
    assert merged["energy"]["mae"] == pytest.approx(0.25)
    assert merged["energy"]["rmse"] == pytest.approx(0.5)


def test_graphs_command(capsys):
    assert main(["graphs", str(WATER_3), str(SYSTEMS / "cho_molecules" / "C4H3O1"),
                 "--rcut", "6", "--sel", "120"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "systems: 2 (1 periodic), frames: 95, atoms (all frames): 15480" in out
    assert "atoms over sel=120: 0" in out
    # water: 80 frames of 192 atoms in batches of 10 frames; molecules: one batch of 15 frames
    assert "2 -> 2 compilations, 9 batches" in out
    assert main(["graphs", str(WATER_3), "--rcut", "6", "--sel", "60"]) == 0
    over = int(capsys.readouterr().out.split("atoms over sel=60: ")[1].split()[0])
    assert over > 0


def test_exported_dp_loads_in_deepmd(tiny_dp, tmp_path, small_cell):
    pytest.importorskip("deepmd")
    from deepmd.dpmodel.model.base_model import BaseModel
    from deepmd.dpmodel.model.model import get_model
    from deepmd.dpmodel.utils.serialization import load_dp_model

    assert main(["convert", str(tiny_dp), str(tmp_path / "m")]) == 0
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "out.dp")]) == 0
    data = load_dp_model(str(tmp_path / "out.dp"))
    model = BaseModel.deserialize(copy.deepcopy(data["model"]))
    types = np.array([0, 0, 1, 1, 1, 1])
    ref = model.call(small_cell.positions.reshape(1, -1), types[None],
                     box=small_cell.cell.array.reshape(1, 9))["energy"]  # fmt: skip
    ours = dpa2_jax.load(tmp_path / "out.dp").evaluate(
        small_cell.positions, small_cell.cell.array, types)["energy"]  # fmt: skip
    np.testing.assert_allclose(ours, np.ravel(ref), rtol=1e-10)
    # The model_def_script builds the same model in DeePMD (every option, not the variables).
    rebuilt = get_model(copy.deepcopy(data["model_def_script"])).serialize()
    options = {k: v for k, v in flatten(data["model"]).items() if "@variables" not in k}
    assert options == {k: v for k, v in flatten(rebuilt).items() if "@variables" not in k}
