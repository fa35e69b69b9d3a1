"""The project's own model directory: ``model.json`` (config) + ``params/`` (Orbax).

    DIR/model.json   {"format": "dpa2_jax-model", "version": 1, "config": {...}, "metadata": {...}}
    DIR/params/      Orbax PyTree checkpoint of the parameter tree

Saving goes to a temporary sibling directory that is renamed at the end, so an interrupted save
never leaves a half-written model behind and never destroys an existing one until the new one
is complete.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from dpa2_jax.errors import CheckpointError, ConfigError
from dpa2_jax.model.config import ModelConfig, config_from_dict, config_to_dict
from dpa2_jax.typing import Params

FORMAT = "dpa2_jax-model"
VERSION = 1


def save_model(
    path: str | os.PathLike,
    cfg: ModelConfig,
    params: Params,
    metadata: dict | None = None,
    overwrite: bool = False,
) -> None:
    """Writes a model directory at ``path``."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise CheckpointError(f"{path}: already exists (pass overwrite=True to replace it)")
    tmp = path + ".tmp-saving"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        host = jax.tree.map(np.asarray, params)
        with ocp.PyTreeCheckpointer() as ckpt:
            ckpt.save(os.path.join(tmp, "params"), host)
        with open(os.path.join(tmp, "model.json"), "w") as f:
            json.dump(
                {"format": FORMAT, "version": VERSION, "config": config_to_dict(cfg),
                 "metadata": metadata or {}},
                f, indent=1,
            )  # fmt: skip
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_model(path: str | os.PathLike) -> tuple[ModelConfig, Params, dict[str, Any]]:
    """Reads a model directory: (config, params as numpy arrays, metadata)."""
    path = os.fspath(path)
    meta_file = os.path.join(path, "model.json")
    if not os.path.isfile(meta_file):
        raise CheckpointError(f"{path}: not a dpa2_jax model directory (no model.json)")
    try:
        with open(meta_file) as f:
            meta = json.load(f)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{meta_file}: not valid JSON: {err}") from err
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_file}: format {meta.get('format')!r} is not {FORMAT!r}")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{meta_file}: written by a newer dpa2_jax (format version {meta['version']} > "
            f"{VERSION}); upgrade dpa2_jax to read it"
        )
    try:
        cfg = config_from_dict(meta["config"])
    except ConfigError as err:
        raise CheckpointError(f"{meta_file}: {err}") from err
    with ocp.PyTreeCheckpointer() as ckpt:
        params = ckpt.restore(os.path.join(os.path.abspath(path), "params"))
    return cfg, _lists_back(params), meta.get("metadata", {})


def _lists_back(tree: Any) -> Any:
    """Orbax may return lists as dicts keyed '0', '1', ...; turn those back into lists."""
    if isinstance(tree, dict):
        if tree and all(k.isdigit() for k in tree):
            return [_lists_back(tree[str(k)]) for k in range(len(tree))]
        return {k: _lists_back(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_lists_back(v) for v in tree]
    return np.asarray(tree) if tree is not None else None
