"""Parity of the se_e2_a family with DeePMD-kit 3.2.0: stored reference values
(tests/reference/se_e2_a, made by scripts/make_se_e2_a_reference.py) for randomised models
(type_one_side on/off, exclude_types, resnet_dt, per-type lists cut by sel, float32) on a
12-atom triclinic cell and a 10-atom molecule; the `.dp` round trip; DeePMD evaluating our
export; our model.json and DeePMD input-JSON forms."""

import pathlib

import jax
import numpy as np
import pytest

import dpa2_jax
from dpa2_jax.graph import BucketPadder, batch_graphs, frame_to_graph
from dpa2_jax.io.deepmd_config import model_config, model_section
from dpa2_jax.io.deepmd_export import to_deepmd
from dpa2_jax.io.deepmd_model import from_deepmd, model_json
from dpa2_jax.io.dp_format import read_dp, write_dp
from dpa2_jax.model.compiled import compiled_forces_fn
from dpa2_jax.model.config import config_from_dict, config_to_dict

REFERENCE = pathlib.Path(__file__).resolve().parents[1] / "reference" / "se_e2_a"
VARIANTS = sorted(p.stem for p in REFERENCE.glob("*.dp"))
GEOMETRIES = ("small_cell", "molecule")
KEYS = ("energy", "forces", "virial", "atom_energy")


@pytest.fixture(scope="module", autouse=True)
def x64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def _reference(variant: str, geometry: str) -> dict:
    data = np.load(REFERENCE / f"{variant}__{geometry}.npz")
    return {k: data[k] for k in data.files}


def _evaluate(variant: str) -> dict[str, dict]:
    """Both geometries in one padded batch, through the compiled forces function."""
    pot = dpa2_jax.load(REFERENCE / f"{variant}.dp")
    refs = {g: _reference(variant, g) for g in GEOMETRIES}
    graphs = [
        frame_to_graph(r["coords"][0], r["atom_types"], r["cells"][0] if bool(r["pbc"]) else None,
                       pot.rcut, pot.config.descriptor.sel, dtype=pot.dtype)
        for r in refs.values()
    ]  # fmt: skip
    unpadded = batch_graphs(graphs)
    out = compiled_forces_fn(pot.config, "default", pot.layout([unpadded]), False)(
        pot.params, BucketPadder()(unpadded)
    )
    out = jax.tree.map(np.asarray, out)
    results, node = {}, 0
    for k, (g, r) in enumerate(refs.items()):
        nat = len(r["atom_types"])
        results[g] = {
            "energy": out["energy"][k : k + 1],
            "virial": out["virial"][k : k + 1],
            "forces": out["forces"][node : node + nat][None],
            "atom_energy": out["atom_energy"][node : node + nat][None],
        }
        node += nat
    return results


def _max_rel(ours, theirs) -> float:
    return float(np.max(np.abs(ours - theirs)) / max(float(np.max(np.abs(theirs))), 1.0))


@pytest.mark.parametrize("variant", VARIANTS)
def test_energy_forces_virial_match_deepmd(variant):
    """float64 to 1e-10 (relative to max(|value|, 1)); float32 to 1e-5 relative."""
    results = _evaluate(variant)
    for geometry, out in results.items():
        ref = _reference(variant, geometry)
        tol = 1e-10 if str(ref["precision"]) == "float64" else 1e-5
        for key in KEYS:
            err = _max_rel(out[key], ref[key])
            assert err < tol, f"{variant} {geometry} {key}: {err:.2e}"


def test_references_exercise_slots_and_exclusions():
    """Guards the test itself: per-slot statistics, cut per-type lists, zeroed excluded nets."""
    desc = read_dp(REFERENCE / "base.dp")["model"]["descriptor"]
    davg = np.asarray(desc["@variables"]["davg"])
    assert np.abs(np.diff(davg, axis=1)).max() > 1e-3  # slot order matters
    ex = read_dp(REFERENCE / "exclude_types.dp")["model"]["descriptor"]
    net = ex["embeddings"]["networks"][0 + 4 * 1]  # (center C, neighbor H): excluded
    assert not np.any(np.asarray(net["layers"][0]["@variables"]["w"]))
    assert bool(_reference("truncated_sel", "small_cell")["pbc"])


def _assert_same_tree(a, b, where="model"):
    if isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))}"
        for k in a:
            _assert_same_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            _assert_same_tree(x, y, f"{where}[{k}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_dp_roundtrip_is_exact(variant, tmp_path):
    """.dp -> (config, params) -> .dp gives DeePMD's serialized descriptor and fitting back."""
    original = model_json(read_dp(REFERENCE / f"{variant}.dp"))
    cfg, params = from_deepmd(original)
    exported = tmp_path / "export.dp"
    write_dp(exported, {"model": to_deepmd(cfg, params)})
    again = model_json(read_dp(exported))
    for key in ("descriptor", "fitting", "@variables", "type_map"):
        _assert_same_tree(original[key], again[key], key)
    assert from_deepmd(again)[0] == cfg


@pytest.mark.parametrize("variant", ["base", "two_side", "exclude_types", "resnet_dt"])
def test_deepmd_evaluates_our_export_to_the_same_energy(variant, tmp_path):
    """DeePMD-kit's numpy backend loads the .dp we write and gives the reference energies."""
    pytest.importorskip("deepmd")
    from deepmd.dpmodel.model.base_model import BaseModel
    from deepmd.dpmodel.utils.serialization import load_dp_model

    cfg, params = from_deepmd(model_json(read_dp(REFERENCE / f"{variant}.dp")))
    exported = tmp_path / "export.dp"
    write_dp(exported, {"model": to_deepmd(cfg, params)})
    model = BaseModel.deserialize(load_dp_model(str(exported))["model"])
    for geometry in GEOMETRIES:
        ref = _reference(variant, geometry)
        box = ref["cells"].reshape(1, 9) if bool(ref["pbc"]) else None
        out = model.call(ref["coords"].reshape(1, -1), ref["atom_types"][None], box=box)
        assert _max_rel(out["energy"].reshape(1), ref["energy"]) < 1e-10
        assert _max_rel(out["atom_energy"].reshape(1, -1), ref["atom_energy"]) < 1e-10


@pytest.mark.parametrize("variant", ["base", "exclude_types"])
def test_model_json_and_input_json_roundtrip(variant):
    """Our model.json form and DeePMD's input ``model`` section give the same config back;
    the input section has DeePMD's type name and per-type sel."""
    cfg, _ = from_deepmd(model_json(read_dp(REFERENCE / f"{variant}.dp")))
    assert config_from_dict(config_to_dict(cfg)) == cfg
    section = model_section(cfg)
    assert section["descriptor"]["type"] == "se_e2_a"
    assert section["descriptor"]["sel"] == [6, 6, 6, 6]
    assert "mixed_types" not in section["fitting_net"]
    assert model_config(section) == cfg
    alias = {**section, "descriptor": {**section["descriptor"], "type": "se_a"}}
    assert model_config(alias) == cfg


def test_convert_to_model_dir_and_export_back(tmp_path):
    """`dpa2-jax convert` (.dp -> model.json + params) and `dpa2-jax export` (-> .dp): the
    model directory evaluates to DeePMD's numbers and the exported descriptor is the original."""
    from dpa2_jax.cli.main import main

    src = REFERENCE / "two_side.dp"
    assert main(["convert", str(src), str(tmp_path / "model")]) == 0
    assert main(["export", str(tmp_path / "model"), str(tmp_path / "back.dp")]) == 0
    _assert_same_tree(model_json(read_dp(src))["descriptor"],
                      model_json(read_dp(tmp_path / "back.dp"))["descriptor"])  # fmt: skip
    pot = dpa2_jax.load(tmp_path / "model")
    ref = _reference("two_side", "small_cell")
    out = pot.evaluate(ref["coords"], ref["cells"], ref["atom_types"])
    for key in KEYS:
        assert _max_rel(out[key], ref[key]) < 1e-10, key
