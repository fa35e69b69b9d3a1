"""The project's own model directory: ``model.json`` (config) + ``params/`` (Orbax).

    DIR/model.json   {"format": "dpa2_jax-model", "version": 3, "config": {...},
                      "params_tree": {...}, "metadata": {...}}
    DIR/params/      Orbax PyTree checkpoint of the parameter tree

``params_tree`` describes the parameter tree (dicts as JSON objects, lists as JSON arrays, each
array as "dtype[shape]", e.g. "float64[6,12]", None as null); the checkpoint is restored into
that structure, so lists come back as lists and dicts as dicts, whatever their keys (head names
"0", "1" stay dict keys). Version 1 directories, without ``params_tree``, are still read.

Saving writes the new directory into a temporary sibling and swaps it in only when complete.
An existing DIR is replaced only if it is itself a model directory (model.json of this format
and nothing but model.json and params/) or an empty folder, never the working directory or an
ancestor of it, nor a folder holding one of the sources the model was read from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from dpa2_jax.errors import CheckpointError, ConfigError
from dpa2_jax.model.config import ModelConfig, config_from_dict, config_to_dict
from dpa2_jax.typing import Params

FORMAT = "dpa2_jax-model"
VERSION = 3  # 3: the descriptor as DeePMD's input section; 2 added "params_tree"; 1, 2 read
MODEL_FILES = ("model.json", "params")  # everything a model directory may hold
_LEAF = re.compile(r"^(\w+)\[([0-9,]*)\]$")  # "float64[6,12]"


def describe_tree(tree: Any, where: str = "params") -> Any:
    """JSON description of a parameter tree: dict -> object, list -> array, array -> "dtype[shape]".

    Raises:
      CheckpointError: a tuple, a non-string dict key or another node type, naming its path.
    """
    if tree is None:
        return None
    if isinstance(tree, dict):
        bad = [k for k in tree if not isinstance(k, str)]
        if bad:
            raise CheckpointError(f"{where}: dict key {bad[0]!r} is not a string")
        return {k: describe_tree(v, f"{where}/{k}") for k, v in tree.items()}
    if isinstance(tree, list):
        return [describe_tree(v, f"{where}/{k}") for k, v in enumerate(tree)]
    if isinstance(tree, (np.ndarray, np.generic, jax.Array, float, int)):
        array = np.asarray(tree)
        return f"{array.dtype.name}[{','.join(map(str, array.shape))}]"
    raise CheckpointError(f"{where}: cannot save a {type(tree).__name__} (only dicts, lists, "
                          "arrays and None)")  # fmt: skip


def abstract_tree(description: Any, where: str = "params") -> Any:
    """The restore target of a `describe_tree` description: jax.ShapeDtypeStruct leaves."""
    if description is None:
        return None
    if isinstance(description, dict):
        return {k: abstract_tree(v, f"{where}/{k}") for k, v in description.items()}
    if isinstance(description, list):
        return [abstract_tree(v, f"{where}/{k}") for k, v in enumerate(description)]
    match = _LEAF.match(description) if isinstance(description, str) else None
    try:
        dtype = np.dtype(match.group(1)) if match else None
    except TypeError:
        dtype = None
    if dtype is None:
        raise CheckpointError(f"params_tree {where}: expected 'dtype[shape]' such as "
                              f"'float64[6,12]', got {description!r}")  # fmt: skip
    shape = tuple(int(n) for n in match.group(2).split(",") if n)
    return jax.ShapeDtypeStruct(shape, dtype)


def _read_model_json(path: str) -> dict:
    """The parsed model.json of a model directory, its format and version checked."""
    meta_file = os.path.join(path, "model.json")
    if not os.path.isfile(meta_file):
        raise CheckpointError(f"{path}: not a dpa2_jax model directory (no model.json)")
    try:
        with open(meta_file) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{meta_file}: not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{meta_file}: format {found!r} is not {FORMAT!r}")
    version = meta.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{meta_file}: written by a newer dpa2_jax (format version {version!r}, this one "
            f"reads up to {VERSION}); upgrade dpa2_jax to read it"
        )
    return meta


def _inside(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or lies below it (both already resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_replaceable(path: str | os.PathLike, sources: Sequence[str | os.PathLike] = ()) -> None:
    """Checks that `path` may be (over)written with a new model directory.

    A missing path, an empty folder or a previous model directory may be; `sources` (the files
    the new model is read from) must not lie inside it, nor it inside a source folder.

    Raises:
      CheckpointError: saying why `path` is kept: it is a file or link, the working directory or
        an ancestor of it, holds or is a source, is not a model directory or holds other files.
    """
    path = os.path.abspath(os.fspath(path))
    real = os.path.realpath(path)
    keep = "so it is not replaced"
    if _inside(os.path.realpath(os.getcwd()), real):
        raise CheckpointError(f"{path}: is the working directory or an ancestor of it, {keep}")
    for src in sources:
        src_real = os.path.realpath(os.fspath(src))
        if _inside(src_real, real):
            raise CheckpointError(f"{path}: holds the source model {os.fspath(src)}, {keep}")
        if os.path.isdir(src_real) and _inside(real, src_real):
            raise CheckpointError(f"{path}: lies inside the source model {os.fspath(src)}; "
                                  "write the new model outside it")  # fmt: skip
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        kind = "a symbolic link" if os.path.islink(path) else "a file"
        raise CheckpointError(f"{path}: is {kind}, not a dpa2_jax model directory, {keep}")
    entries = sorted(os.listdir(path))
    if not entries:
        return
    not_model = f"{path}: not a dpa2_jax model directory, {keep}"
    if "model.json" not in entries:
        raise CheckpointError(f"{not_model} (it has no model.json)")
    try:
        _read_model_json(path)
    except CheckpointError as err:
        raise CheckpointError(f"{not_model} ({err})") from err
    extra = [e for e in entries if e not in MODEL_FILES]
    if extra:
        raise CheckpointError(f"{path}: holds {extra[:5]} besides model.json and params/; a "
                              f"dpa2_jax model directory holds nothing else, {keep}")  # fmt: skip
    params = os.path.join(path, "params")
    if os.path.lexists(params) and (os.path.islink(params) or not os.path.isdir(params)):
        raise CheckpointError(f"{not_model} ({params} is not a folder)")


def _write_model_dir(path: str, cfg: ModelConfig, params: Params, metadata: dict) -> None:
    """Writes model.json and params/ into the new, empty folder `path`."""
    host = jax.tree.map(np.asarray, params)
    meta = {"format": FORMAT, "version": VERSION, "config": config_to_dict(cfg),
            "params_tree": describe_tree(host), "metadata": metadata}  # fmt: skip
    with ocp.PyTreeCheckpointer() as ckpt:
        ckpt.save(os.path.join(path, "params"), host)
    with open(os.path.join(path, "model.json"), "w") as f:
        json.dump(meta, f, indent=1)


def save_model(
    path: str | os.PathLike,
    cfg: ModelConfig,
    params: Params,
    metadata: dict | None = None,
    overwrite: bool = False,
    sources: Sequence[str | os.PathLike] = (),
) -> None:
    """Writes a model directory at ``path``, replacing only a previous model directory.

    Args:
      path: the directory to write; its parent is created if missing.
      cfg: the model configuration (saved as JSON in model.json).
      params: the parameter tree: dicts, lists, arrays and None.
      metadata: JSON-serialisable extras stored in model.json.
      overwrite: replace an existing model directory (or empty folder) at ``path``.
      sources: files the model was read from; a ``path`` holding one is never replaced.

    Raises:
      CheckpointError: ``path`` exists and ``overwrite`` is False, or it may not be replaced
        (see `check_replaceable`).
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not overwrite:
        raise CheckpointError(f"{path}: already exists (pass overwrite=True to replace it)")
    check_replaceable(path, sources)
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.saving-", dir=parent)
    new, old = os.path.join(staging, "new"), os.path.join(staging, "old")
    try:
        os.mkdir(new)
        _write_model_dir(new, cfg, params, metadata or {})
        check_replaceable(path, sources)  # again: the save took a while
        if os.path.lexists(path):
            os.rename(path, old)
        try:
            os.rename(new, path)
        except OSError:
            if os.path.lexists(old):
                os.rename(old, path)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # only ever holds `new` or the old model


def load_model(path: str | os.PathLike) -> tuple[ModelConfig, Params, dict[str, Any]]:
    """Reads a model directory: (config, params as numpy arrays, metadata)."""
    path = os.path.abspath(os.fspath(path))
    meta = _read_model_json(path)
    meta_file = os.path.join(path, "model.json")
    try:
        cfg = config_from_dict(_current_config(meta["config"], meta.get("version", 0)))
    except KeyError as err:
        raise CheckpointError(f"{meta_file}: no 'config' entry") from err
    except ConfigError as err:
        raise CheckpointError(f"{meta_file}: {err}") from err
    params_dir = os.path.join(path, "params")
    if not os.path.isdir(params_dir):
        raise CheckpointError(f"{params_dir}: missing (the Orbax checkpoint of the parameters)")
    if "params_tree" not in meta:  # format version 1
        with ocp.PyTreeCheckpointer() as ckpt:
            return cfg, _version1_tree(ckpt.restore(params_dir)), meta.get("metadata", {})
    target = abstract_tree(meta["params_tree"])
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    try:
        with ocp.PyTreeCheckpointer() as ckpt:
            params = ckpt.restore(
                params_dir, args=ocp.args.PyTreeRestore(item=target, restore_args=args)
            )
    except ValueError as err:
        raise CheckpointError(f"{params_dir}: does not match params_tree in {meta_file}: "
                              f"{err}") from err  # fmt: skip
    return cfg, params, meta.get("metadata", {})


def _current_config(config: dict, version: int) -> dict:
    """A config of an older format version in the current form: before version 3 the
    descriptor was its dataclass fields (a family's input section reads them, but for the type
    tag, which defaulted to dpa2, and version 1's runtime ``node_chunk``)."""
    if version >= 3:
        return config
    descriptor = {"type": "dpa2", **config["descriptor"]}
    descriptor.pop("node_chunk", None)
    return {**config, "descriptor": descriptor}


def _version1_tree(params: dict) -> Params:
    """A version-1 tree: the heads stay a dict; below, digit-keyed dicts become lists."""
    tree = {k: _lists_back(v) for k, v in params.items() if k != "heads"}
    if isinstance(params.get("heads"), dict):
        tree["heads"] = {name: _lists_back(head) for name, head in params["heads"].items()}
    return tree


def _lists_back(tree: Any) -> Any:
    """Older Orbax returned lists as dicts keyed '0', '1', ...; turns those back into lists."""
    if isinstance(tree, dict):
        if tree and all(k.isdigit() for k in tree):
            return [_lists_back(tree[str(k)]) for k in range(len(tree))]
        return {k: _lists_back(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_lists_back(v) for v in tree]
    return np.asarray(tree) if tree is not None else None
