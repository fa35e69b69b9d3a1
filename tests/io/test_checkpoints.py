"""Tests for dpa2_jax/io/checkpoints.py: model directories round-trip their parameter tree, and
saving replaces nothing but a previous model directory."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from dpa2_jax.errors import CheckpointError
from dpa2_jax.io.checkpoints import (
    abstract_tree,
    check_replaceable,
    describe_tree,
    load_model,
    save_model,
)
from dpa2_jax.model.config import config_to_dict
from tests.conftest import random_params


def snapshot(root: pathlib.Path) -> dict[str, bytes]:
    """Every file below `root` (relative path -> content), to show a folder was left untouched."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def assert_same_params(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def digit_heads(tiny_config):
    """The tiny config with two heads named "0" and "1", and its random parameters."""
    fitting = tiny_config.heads[0][1]
    cfg = dataclasses.replace(tiny_config, heads=(("0", fitting), ("1", fitting)))
    return cfg, random_params(cfg, seed=3)


@pytest.fixture
def model_dir(tiny_config, tiny_params, tmp_path) -> pathlib.Path:
    path = tmp_path / "model"
    save_model(path, tiny_config, tiny_params)
    return path


def test_digit_head_names_round_trip(digit_heads, tmp_path):
    cfg, params = digit_heads
    assert isinstance(params["heads"], dict) and list(params["heads"]) == ["0", "1"]
    save_model(tmp_path / "m", cfg, params, metadata={"note": "x"})
    cfg2, params2, meta = load_model(tmp_path / "m")
    assert cfg2 == cfg and meta == {"note": "x"}
    assert_same_params(params2, params)
    assert isinstance(params2["heads"], dict)
    layers = params2["descriptor"]["repformers"]["layers"]
    assert isinstance(layers, list) and layers[1]["g2_residual"] == []


def _old_config(cfg) -> dict:
    """model.json's config before format version 3: the descriptor as its dataclass fields,
    without a type tag (version 1 also carried the runtime ``node_chunk``)."""
    descriptor = {**dataclasses.asdict(cfg.descriptor), "node_chunk": 1024}
    return {**config_to_dict(cfg), "descriptor": json.loads(json.dumps(descriptor))}


def test_version1_directory_still_loads(digit_heads, tmp_path):
    cfg, params = digit_heads
    path = tmp_path / "v1"
    path.mkdir()
    with ocp.PyTreeCheckpointer() as ckpt:
        ckpt.save(path / "params", jax.tree.map(np.asarray, params))
    v1 = {"format": "dpa2_jax-model", "version": 1, "config": _old_config(cfg), "metadata": {}}
    (path / "model.json").write_text(json.dumps(v1))
    cfg2, params2, _ = load_model(path)
    assert cfg2 == cfg
    assert_same_params(params2, params)


def test_version2_config_still_loads(digit_heads, model_dir):
    cfg, _ = digit_heads
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["version"] == 3 and meta["config"]["descriptor"]["type"] == "dpa2"
    meta["version"], meta["config"] = 2, _old_config(cfg)
    (model_dir / "model.json").write_text(json.dumps(meta))
    assert load_model(model_dir)[0] == cfg


def test_tree_description_and_errors(tmp_path, model_dir):
    tree = {"a": [np.zeros((2, 3)), None], "0": {"b": np.float32(1.0)}, "e": []}
    description = describe_tree(tree)
    assert description == {"a": ["float64[2,3]", None], "0": {"b": "float32[]"}, "e": []}
    target = abstract_tree(description)
    assert target["a"][0] == jax.ShapeDtypeStruct((2, 3), np.float64)
    with pytest.raises(CheckpointError, match="params/a/1: cannot save a tuple"):
        describe_tree({"a": [1.0, (2.0,)]})
    with pytest.raises(CheckpointError, match=r"params_tree params/x: .*'matrix'"):
        abstract_tree({"x": "matrix"})

    meta = json.loads((model_dir / "model.json").read_text())
    meta["params_tree"]["heads"]["extra"] = {"w": "float64[2]"}
    (model_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match params_tree"):
        load_model(model_dir)


def test_overwrite_replaces_a_model_directory(tiny_config, tiny_params, digit_heads, model_dir):
    with pytest.raises(CheckpointError, match="already exists"):
        save_model(model_dir, tiny_config, tiny_params)
    cfg, params = digit_heads
    save_model(model_dir, cfg, params, overwrite=True)
    assert load_model(model_dir)[0].head_names == ("0", "1")
    assert sorted(os.listdir(model_dir.parent)) == ["model"]  # no temporary folder left behind
    empty = model_dir.parent / "empty"
    empty.mkdir()
    save_model(empty, cfg, params, overwrite=True)  # an empty folder holds nothing to lose
    assert load_model(empty)[0] == cfg


def _refusals(root: pathlib.Path, model_dir: pathlib.Path) -> dict[str, tuple[pathlib.Path, str]]:
    """Destinations that must never be replaced -> (path, expected message)."""
    notes = root / "notes"
    notes.mkdir()
    (notes / "thesis.tex").write_text("years of work")
    (notes / "sub").mkdir()
    (notes / "sub" / "data.npy").write_bytes(b"\x93NUMPY")
    extra = root / "model_plus"
    extra.mkdir()
    (extra / "model.json").write_text((model_dir / "model.json").read_text())
    (extra / "params").mkdir()
    (extra / "README").write_text("keep me")
    other_format = root / "other"
    other_format.mkdir()
    (other_format / "model.json").write_text('{"format": "something-else"}')
    regular = root / "model.txt"
    regular.write_text("a file")
    return {
        "non-model folder": (notes, "notes: not a dpa2_jax model directory, so it is not replaced"),
        "extra files": (extra, r"holds \['README'\] besides model.json and params/"),
        "foreign model.json": (other_format, "not a dpa2_jax model directory.*something-else"),
        "regular file": (regular, "is a file, not a dpa2_jax model directory"),
    }


def test_refuses_to_replace_anything_else(tiny_config, tiny_params, tmp_path, model_dir):
    for case, (path, message) in _refusals(tmp_path, model_dir).items():
        before = snapshot(tmp_path)
        with pytest.raises(CheckpointError, match=message):
            save_model(path, tiny_config, tiny_params, overwrite=True)
        assert snapshot(tmp_path) == before, case
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_refuses_working_directory_and_sources(
    tiny_config, tiny_params, tmp_path, model_dir, monkeypatch
):
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="holds the source model"):
        save_model(model_dir, tiny_config, tiny_params, overwrite=True, sources=[model_dir])
    with pytest.raises(CheckpointError, match="holds the source model"):
        check_replaceable(tmp_path, sources=[model_dir / "model.json"])
    with pytest.raises(CheckpointError, match="lies inside the source model"):
        check_replaceable(model_dir / "new", sources=[model_dir])
    for cwd in (model_dir, model_dir / "params"):
        monkeypatch.chdir(cwd)
        with pytest.raises(CheckpointError, match="working directory or an ancestor"):
            save_model(model_dir, tiny_config, tiny_params, overwrite=True)
    monkeypatch.chdir(model_dir)
    for dst in (".", ".."):
        with pytest.raises(CheckpointError, match="working directory or an ancestor"):
            save_model(dst, tiny_config, tiny_params, overwrite=True)
    assert snapshot(tmp_path) == before
