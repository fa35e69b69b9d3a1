"""DeePMD `.dp` files <-> dpa2_jax model directories, and merging single-task models into heads.

    convert(["water.dp", "cho.dp"], "model/")   ->  one model, heads "water" and "cho"
    export("model/", "water.dp", head="water")  ->  a `.dp` that DeePMD-kit 3.2 loads

A `.dp` file holds one head. Several `.dp` files become one multi-task model only if they share
the descriptor exactly (same options, every variable equal to 1e-12 relative), as models
fine-tuned from one pre-trained multi-task model with a frozen descriptor do; the fitting nets
and output biases may differ.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from dpa2_jax.errors import CheckpointError, ConfigError
from dpa2_jax.fitting.energy import FittingConfig
from dpa2_jax.io.checkpoints import check_replaceable, load_model, save_model
from dpa2_jax.io.deepmd_checkpoint import SUFFIXES as PYTORCH_SUFFIXES
from dpa2_jax.io.deepmd_checkpoint import read_pytorch_model
from dpa2_jax.io.deepmd_config import model_section
from dpa2_jax.io.deepmd_export import to_deepmd
from dpa2_jax.io.deepmd_model import from_deepmd, model_json
from dpa2_jax.io.dp_format import read_dp, write_dp
from dpa2_jax.model.config import DEFAULT_HEAD, ModelConfig
from dpa2_jax.model.jax_setup import enable_x64_for
from dpa2_jax.model.potential import Potential
from dpa2_jax.typing import Params

DESCRIPTOR_RTOL = 1e-12  # relative to the largest |value| of the variable


def read_model(
    path: str | os.PathLike, head: str | None = None
) -> tuple[ModelConfig, Params, dict[str, Any]]:
    """(config, params, metadata) of a `.dp` file, a DeePMD-kit PyTorch checkpoint (`.pt`,
    every head) or frozen model (`.pth`), a dpa2_jax model directory, or a training workdir
    (its `model/`); with ``head`` (a name or DeePMD-kit alias), that head only."""
    path = os.fspath(path)
    if head is not None and not path.endswith(PYTORCH_SUFFIXES):
        cfg, params, meta = read_model(path)
        name = meta.get("head_aliases", {}).get(head, head)
        try:
            name = cfg.resolve_head(name)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err
        [(name, cfg, params)] = [h for h in split_heads(cfg, params) if h[0] == name]
        return cfg, params, meta
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such model file or directory")
    if os.path.isdir(path):
        trained = os.path.join(path, "model")  # a training workdir (dpa2-jax train --workdir)
        if not os.path.exists(os.path.join(path, "model.json")) and os.path.isfile(
            os.path.join(trained, "model.json")
        ):
            return load_model(trained)
        return load_model(path)
    if path.endswith(PYTORCH_SUFFIXES):
        heads, meta = read_pytorch_model(path, head)
        try:
            cfg, params = merge_heads(heads)
        except ConfigError as err:  # DeePMD-kit shares only some modules between heads
            raise ConfigError(
                f"{path}: {err}. DeePMD-kit's multi-task training does not share every "
                "descriptor variable between heads (a DPA-2's tebd_transform, used with "
                "add_tebd_to_repinit_out, stays per head); read one head: dpa2-jax convert "
                "FILE DST --head NAME, dpa2_jax.load(FILE, head=NAME), or --model-branch NAME "
                "when fine-tuning"
            ) from err
        return cfg, params, meta
    if not path.endswith(".dp"):
        raise CheckpointError(f"{path}: expected a DeePMD-kit .dp, .pt or .pth file or a "
                              "dpa2_jax model directory")  # fmt: skip
    data = read_dp(path)
    try:
        cfg, params = from_deepmd(model_json(data))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    script = data.get("model_def_script")
    return cfg, params, {"model_def_script": script} if script else {}


def load(
    path: str | os.PathLike, atoms_per_batch: int = 2048, head: str | None = None
) -> Potential:
    """Loads a DeePMD-kit ``.dp`` file, ``.pt`` training checkpoint (every head) or frozen
    ``.pth`` model, a dpa2_jax model directory or a training workdir as a ``Potential``
    (with ``head``, that head only); turns on ``jax_enable_x64`` for a float64 model (with a
    warning; ``model/jax_setup.py``)."""
    cfg, params, _ = read_model(path, head)
    enable_x64_for(cfg.descriptor.precision)
    return Potential(cfg, params, atoms_per_batch=atoms_per_batch)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a/b/0/w": leaf} for a nested dict/list tree; None leaves are kept."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}/{key}" if prefix else str(key)))
    return out


def config_difference(a: Any, b: Any, path: str) -> str | None:
    """Dotted path and values of the first option where two config dataclasses differ."""
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
        for field in dataclasses.fields(a):
            diff = config_difference(
                getattr(a, field.name), getattr(b, field.name), f"{path}.{field.name}"
            )
            if diff:
                return diff
        return None
    return None if a == b else f"{path} ({a!r} vs {b!r})"


def first_difference(a: Params, b: Params, rtol: float = DESCRIPTOR_RTOL) -> str | None:
    """Path and reason of the first variable of two parameter trees that differs, or None."""
    fa, fb = flatten(a), flatten(b)
    for path in sorted(set(fa) | set(fb)):
        if path not in fa or path not in fb:
            return f"{path} (present in only one model)"
        x, y = fa[path], fb[path]
        if x is None or y is None:
            if x is not y:
                return f"{path} (None in only one model)"
            continue
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape:
            return f"{path} (shape {x.shape} vs {y.shape})"
        scale = max(float(np.max(np.abs(x), initial=0.0)), float(np.max(np.abs(y), initial=0.0)))
        err = float(np.max(np.abs(x - y), initial=0.0))
        if err > rtol * scale:
            return f"{path} (max |difference| {err:.3g}, relative {err / scale:.3g} > {rtol:g})"
    return None


def merge_heads(models: Sequence[tuple[str, ModelConfig, Params]]) -> tuple[ModelConfig, Params]:
    """Joins single-head models sharing one descriptor into one model with a head each.

    Args:
      models: (head name, config, params) per model; each config has exactly one head, which
        is renamed to the given name. The first model's descriptor is kept.

    Returns:
      (config, params) with heads in the given order.

    Raises:
      ConfigError: repeated names, a multi-head input, or type maps, model options,
        descriptor options or descriptor variables that differ (naming the first one).
    """
    if not models:
        raise ConfigError("merge_heads: no models given")
    names = [name for name, _, _ in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"head names {names} repeat a name; give distinct names")
    name0, cfg0, params0 = models[0]
    heads: list[tuple[str, FittingConfig]] = []
    head_params: dict[str, Params] = {}
    for name, cfg, params in models:
        if len(cfg.heads) != 1:
            raise ConfigError(f"head {name!r}: the model has {len(cfg.heads)} heads; merge "
                              "single-head models only")  # fmt: skip
        where = f"head {name!r} vs head {name0!r}"
        if cfg.type_map != cfg0.type_map:
            raise ConfigError(f"{where}: type maps differ ({list(cfg.type_map)} vs "
                              f"{list(cfg0.type_map)})")  # fmt: skip
        if cfg.atom_exclude_types != cfg0.atom_exclude_types:
            raise ConfigError(f"{where}: atom_exclude_types differ ({list(cfg.atom_exclude_types)}"
                              f" vs {list(cfg0.atom_exclude_types)})")  # fmt: skip
        diff = config_difference(cfg.descriptor, cfg0.descriptor, "descriptor")
        if diff:
            raise ConfigError(f"{where}: descriptor options differ: {diff}")
        diff = first_difference(params["descriptor"], params0["descriptor"])
        if diff:
            raise ConfigError(f"{where}: descriptors differ at variable descriptor/{diff}")
        [(old, fitting)] = cfg.heads
        heads.append((name, fitting))
        head_params[name] = params["heads"][old]
    cfg = dataclasses.replace(cfg0, heads=tuple(heads))
    return cfg, {"descriptor": params0["descriptor"], "heads": head_params}


def split_heads(cfg: ModelConfig, params: Params) -> list[tuple[str, ModelConfig, Params]]:
    """One single-head (name, config, params) per head of a model, sharing its descriptor."""
    return [
        (name, dataclasses.replace(cfg, heads=((name, fitting),)),
         {"descriptor": params["descriptor"], "heads": {name: params["heads"][name]}})
        for name, fitting in cfg.heads
    ]  # fmt: skip


def read_heads(
    srcs: Sequence[str], head: str | None = None
) -> tuple[list[tuple[str, ModelConfig, Params, str, Any]], dict[str, str]]:
    """([(head name, one-head config, params, source path, model section or None)] of every
    head of every source (only ``head`` of a single source), for ``merge_heads``; {alias: head}
    of the multi-head sources). Heads of a multi-head source keep their names; a single-head
    source's head is named after its file stem, or "default" if it is the only source."""
    if head is not None and len(srcs) != 1:
        raise ConfigError(f"--head {head}: choose a head of one source, not of {len(srcs)}")
    heads, aliases = [], {}
    for src in srcs:
        cfg, params, meta = read_model(src, head)
        parts = split_heads(cfg, params)
        script = meta.get("model_def_script")
        if len(parts) > 1 or head is not None:
            aliases.update(meta.get("head_aliases", {}))
        for name, one_cfg, one_params in parts:
            section = script
            if isinstance(script, dict) and "model_dict" in script:  # this head's entry
                section = script["model_dict"].get(name)
            elif len(parts) == 1 and head is None:
                stem = os.path.splitext(os.path.basename(os.path.normpath(src)))[0]
                name = DEFAULT_HEAD if len(srcs) == 1 else stem
            heads.append((name, one_cfg, one_params, os.path.abspath(src), section))
    kept = {h[0] for h in heads}
    return heads, {alias: h for alias, h in aliases.items() if h in kept}


def convert(
    srcs: Sequence[str | os.PathLike],
    dst: str | os.PathLike,
    head_names: Sequence[str] | None = None,
    overwrite: bool = False,
    head: str | None = None,
) -> ModelConfig:
    """Converts DeePMD-kit models into one dpa2_jax model directory.

    Args:
      srcs: DeePMD `.dp` files (one head each), PyTorch `.pt` checkpoints (every head) or
        frozen `.pth` models, or dpa2_jax model directories; all heads must share one
        descriptor.
      dst: the model directory to write.
      head_names: one name per head; default: a multi-head source's own head names, else the
        file stems, or "default" for a single one-head source.
      overwrite: replace an existing `dst`, which must be a dpa2_jax model directory (or an
        empty folder) holding none of `srcs`; anything else is refused, never deleted.
      head: keep only this head (a name or DeePMD-kit alias) of a single multi-head source.

    Returns:
      The written model's config.

    Raises:
      CheckpointError: `dst` exists and `overwrite` is False, or `dst` may not be replaced
        (see `dpa2_jax.io.checkpoints.check_replaceable`); checked before reading any source.
    """
    srcs = [os.fspath(s) for s in srcs]
    if not srcs:
        raise ConfigError("convert: no source model given")
    if os.path.lexists(dst) and not overwrite:
        raise CheckpointError(f"{dst}: already exists (use --overwrite to replace it)")
    check_replaceable(dst, srcs)
    heads, aliases = read_heads(srcs, head)
    if head_names is not None:
        head_names = list(head_names)
        if len(head_names) != len(heads):
            raise ConfigError(f"{len(head_names)} head names {head_names} for "
                              f"{len(heads)} heads {[h[0] for h in heads]}")  # fmt: skip
        heads = [(new, *rest) for new, (_, *rest) in zip(head_names, heads)]
    cfg, params = merge_heads([(name, c, p) for name, c, p, _, _ in heads])
    metadata: dict[str, Any] = {"converted_from": {h[0]: h[3] for h in heads}}
    scripts = {h[0]: h[4] for h in heads if h[4]}
    if scripts:
        metadata["model_def_script"] = scripts
    if head_names is None and aliases:
        metadata["head_aliases"] = aliases  # so that --model-branch ALIAS still works
    save_model(dst, cfg, params, metadata=metadata, overwrite=overwrite, sources=srcs)
    return cfg


def model_def_script(cfg: ModelConfig, head: str | None = None) -> dict[str, Any]:
    """DeePMD-kit's input ``model`` section describing one head of ``cfg``."""
    return model_section(cfg, head)


def export(
    src: str | os.PathLike, dst: str | os.PathLike, head: str | None = None,
    overwrite: bool = False,
) -> str:  # fmt: skip
    """Writes one head of a model directory (or `.dp`) as a `.dp` file DeePMD-kit loads.

    Args:
      src: dpa2_jax model directory or `.dp` file.
      dst: the `.dp` file to write.
      head: the head to export; required if the model has several.
      overwrite: replace an existing `dst`.

    Returns:
      The name of the exported head.
    """
    dst = os.fspath(dst)
    if not dst.endswith(".dp"):
        raise CheckpointError(f"{dst}: the exported file name must end with .dp")
    if os.path.exists(dst) and not overwrite:
        raise CheckpointError(f"{dst}: already exists (use --overwrite to replace it)")
    cfg, params, _ = read_model(src)
    if head is None and len(cfg.heads) > 1:
        raise ConfigError(f"{src}: the model has heads {list(cfg.head_names)}; choose one to "
                          "export (--head NAME)")  # fmt: skip
    head = cfg.resolve_head(head)
    data = {
        "backend": "dpa2_jax",
        "model": to_deepmd(cfg, params, head),
        "model_def_script": model_def_script(cfg, head),
        "@variables": {},
    }
    write_dp(dst, data)
    return head
