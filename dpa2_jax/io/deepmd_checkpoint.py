"""DeePMD-kit 3.x PyTorch model files -> one (ModelConfig, params) per head, without torch.

    model.ckpt.pt  (dp --pt train)   {"model": state_dict, "optimizer": ...}; the state_dict's
                                     "_extra_state" holds "model_params", the input's ``model``
                                     section (multi-task: a "model_dict" entry per head)
    frozen.pth     (dp --pt freeze)  a TorchScript module tree; its ``model_def_script``
                                     attribute holds the same ``model`` section

Both are read by ``torch_pickle``. The config comes from the ``model`` section (the input-JSON
path, ``deepmd_config.model_config``), the variables from DeePMD-kit's PyTorch module names::

    model.<HEAD>.atomic_model.descriptor.<block>...   descriptor (shared heads: identical copies)
    model.<HEAD>.atomic_model.fitting_net...          fitting net, bias_atom_e, fparam/aparam stats
    model.<HEAD>.atomic_model.out_bias                [1, ntypes, 1] energy bias

(single-task: HEAD is ``Default``), mapped per family (``_DESCRIPTORS``), then checked leaf by
leaf against a fresh model of the config: an unknown module surfaces as an error naming it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from dpa2_jax.errors import CheckpointError, ConfigError
from dpa2_jax.io.deepmd_config import model_config
from dpa2_jax.io.torch_pickle import ScriptObject, read_torch_file
from dpa2_jax.model import init
from dpa2_jax.model.config import DEFAULT_HEAD, ModelConfig
from dpa2_jax.typing import Params

SUFFIXES = (".pt", ".pth")
SINGLE_TASK_HEAD = "Default"  # DeePMD-kit's name of a single-task model's only head
_SUPPORTED_MODEL = {"type": ("standard", None), "bridging_method": ("None", None)}
_UNSUPPORTED_MODEL_KEYS = ("use_srtab", "spin", "zbl")  # present = a model we cannot run


# ----------------------------------------------------------------------------- module tree
def nested(flat: Mapping[str, Any], prefix: str) -> dict:
    """{"a": {"b": leaf}} from {"<prefix>a.b": leaf}, for the keys under ``prefix``."""
    tree: dict = {}
    for key, value in flat.items():
        if not key.startswith(prefix):
            continue
        *path, last = key[len(prefix):].split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def script_state(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """The arrays of a TorchScript module tree by dotted attribute path, as in a state dict."""
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, ScriptObject):
        for key, value in obj.attributes.items():
            out.update(script_state(value, f"{prefix}{key}."))
    elif isinstance(obj, np.ndarray):
        out[prefix[:-1]] = obj
    return out


def _items(node: dict) -> list:
    """The values of a ModuleList/ParameterList node ({"0": ..., "1": ...}), in order."""
    return [node[k] for k in sorted(node, key=int)]


def layer(node: dict) -> Params:
    """{"w", "b"?, "idt"?} of an MLPLayer or LayerNorm (``matrix``, ``bias``, ``idt``)."""
    out = {"w": node["matrix"]}
    for ours, theirs in (("b", "bias"), ("idt", "idt")):
        if node.get(theirs) is not None:
            out[ours] = node[theirs]
    return out


def network(node: dict) -> list[Params]:
    """The layers of an EmbeddingNet / FittingNet module (``layers.<k>``)."""
    return [layer(x) for x in _items(node["layers"])]


def networks(collection: dict) -> list[list[Params]]:
    """Every network of a NetworkCollection (``networks.<k>``)."""
    return [network(n) for n in _items(collection["networks"])]


# ----------------------------------------------------------------------------- families
def _block(node: dict) -> Params:
    """A DPA-1-style block (repinit, three-body): embeddings and statistics."""
    [embedding] = networks(node["filter_layers"])
    p = {"embedding": embedding, "davg": node["mean"], "dstd": node["stddev"]}
    if "filter_layers_strip" in node:
        [p["embedding_strip"]] = networks(node["filter_layers_strip"])
    return p


_REPFORMER_LAYERS = ("linear1", "linear2", "g1_self_mlp", "proj_g1g2", "proj_g1g1g2")
_REPFORMER_ATTENTION = ("attn2g_map", "attn2_mh_apply", "attn2_ev_apply", "loc_attn")
_RESIDUALS = ("g1_residual", "g2_residual", "h2_residual")


def _repformer_layer(node: dict) -> Params:
    p: Params = {k: layer(node[k]) for k in _REPFORMER_LAYERS if k in node}
    for key in _REPFORMER_ATTENTION:
        if key in node:
            p[key] = {sub: layer(v) for sub, v in node[key].items() if isinstance(v, dict)}
    if "attn2_lm" in node:  # a LayerNorm: matrix, bias
        p["attn2_lm"] = layer(node["attn2_lm"])
    if any(k in node for k in _RESIDUALS):
        for key in _RESIDUALS:
            p[key] = _items(node.get(key, {}))
    return p


def dpa2_params(node: dict) -> Params:
    """DPA-2 descriptor parameters from ``atomic_model.descriptor`` of a DescrptDPA2."""
    rf = node["repformers"]
    params: Params = {
        "type_embedding": network(node["type_embedding"]["embedding"]["embedding_net"]),
        "repinit": _block(node["repinit"]),
        "repformers": {
            "g2_embd": layer(rf["g2_embd"]),
            "layers": [_repformer_layer(x) for x in _items(rf["layers"])],
            "davg": rf["mean"],
            "dstd": rf["stddev"],
        },
    }
    if "repinit_three_body" in node:
        params["three_body"] = _block(node["repinit_three_body"])
    if "g1_shape_tranform" in node:  # DeePMD's spelling
        params["g1_shape_transform"] = layer(node["g1_shape_tranform"])
    if "tebd_transform" in node:
        params["tebd_transform"] = layer(node["tebd_transform"])
    return params


def se_e2_a_params(node: dict) -> Params:
    """se_e2_a descriptor parameters from ``atomic_model.descriptor`` of a DescrptSeA."""
    sea = node["sea"]
    return {
        "block": {"embeddings": networks(sea["filter_layers"]), "davg": sea["mean"],
                  "dstd": sea["stddev"]}  # fmt: skip
    }


_DESCRIPTORS = {"dpa2": dpa2_params, "se_e2_a": se_e2_a_params}


def head_params(atomic: dict, cfg: ModelConfig, head: str) -> Params:
    """One head's fitting parameters and energy bias from ``atomic_model``."""
    fit_cfg, fit = cfg.fitting(head), atomic["fitting_net"]
    nets = networks(fit["filter_layers"])
    fitting = {"layers": nets[0]} if fit_cfg.mixed_types else {"type_layers": nets}
    fitting["bias_atom_e"] = fit["bias_atom_e"]
    for name, n in (("fparam", fit_cfg.numb_fparam), ("aparam", fit_cfg.numb_aparam)):
        if n:
            for suffix in ("avg", "inv_std"):
                fitting[f"{name}_{suffix}"] = fit[f"{name}_{suffix}"]
    out_bias = np.asarray(atomic["out_bias"])  # [n_out, ntypes, 1]
    return {"fitting": fitting, "out_bias": out_bias.reshape(out_bias.shape[-2])}


# ----------------------------------------------------------------------------- checks
def check_model_section(section: dict, where: str) -> None:
    """ConfigError naming a ``model`` option this project cannot run (pair tables, spin...)."""
    for key, allowed in _SUPPORTED_MODEL.items():
        if section.get(key) not in allowed:
            raise ConfigError(f"{where}: model option {key}={section[key]!r} is not supported")
    for key in _UNSUPPORTED_MODEL_KEYS:
        if section.get(key):
            raise ConfigError(f"{where}: model option {key} is not supported")


def check_against(params: Params, expected: Any, where: str, path: str = "") -> None:
    """CheckpointError naming the first variable whose presence or shape differs from
    ``expected`` (a freshly initialised parameter tree)."""
    if isinstance(expected, dict) or isinstance(params, dict):
        if not (isinstance(expected, dict) and isinstance(params, dict)):
            raise CheckpointError(f"{where}: variable {path or '/'} has an unexpected layout")
        for key in sorted(set(expected) | set(params), key=str):
            sub = f"{path}/{key}" if path else str(key)
            if key not in params:
                raise CheckpointError(f"{where}: variable {sub} is missing from the checkpoint")
            if key not in expected:
                raise CheckpointError(f"{where}: variable {sub} is not expected for this config")
            check_against(params[key], expected[key], where, sub)
    elif isinstance(expected, (list, tuple)):
        if not isinstance(params, (list, tuple)) or len(params) != len(expected):
            n = len(params) if isinstance(params, (list, tuple)) else "no"
            raise CheckpointError(f"{where}: variable {path} has {n} entries; the model config "
                                  f"needs {len(expected)}")  # fmt: skip
        for k, (p, e) in enumerate(zip(params, expected)):
            check_against(p, e, where, f"{path}/{k}")
    elif expected is not None:
        shape = np.shape(params)
        if shape != tuple(expected.shape):
            raise CheckpointError(f"{where}: variable {path} has shape {list(shape)}; the model "
                                  f"config needs {list(expected.shape)}")  # fmt: skip


# ----------------------------------------------------------------------------- reading
def _state_and_params(obj: Any, path: str) -> tuple[Mapping[str, Any], dict]:
    """(flat state dict, model section) of a loaded checkpoint or TorchScript module."""
    if isinstance(obj, ScriptObject):
        script = obj.attributes.get("model_def_script")
        if not isinstance(script, str) or not script:
            raise CheckpointError(f"{path}: a TorchScript file without DeePMD-kit's "
                                  "model_def_script: not frozen by dp --pt freeze")  # fmt: skip
        try:
            section = json.loads(script)
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{path}: model_def_script is not valid JSON: {err}") from err
        state = {f"model.{SINGLE_TASK_HEAD}.{k}": v for k, v in script_state(obj).items()}
        return state, section
    state = obj.get("model", obj) if isinstance(obj, Mapping) else None
    extra = state.get("_extra_state") if isinstance(state, Mapping) else None
    if not isinstance(extra, Mapping) or not isinstance(extra.get("model_params"), Mapping):
        raise CheckpointError(f"{path}: a PyTorch file, but not a DeePMD-kit training "
                              "checkpoint (no model/_extra_state/model_params)")  # fmt: skip
    return state, dict(extra["model_params"])


def _head_sections(model_params: dict) -> dict[str, dict]:
    """{DeePMD head name: that head's ``model`` section}."""
    if "model_dict" in model_params:
        return dict(model_params["model_dict"])
    return {SINGLE_TASK_HEAD: model_params}


def head_aliases(model_params: dict) -> dict[str, str]:
    """{alias: head} from the heads' ``model_branch_alias`` lists (DeePMD-kit's other names of
    a head, accepted by ``--model-branch``)."""
    sections = model_params.get("model_dict", {})
    return {alias: head for head, section in sections.items()
            for alias in section.get("model_branch_alias", [])}  # fmt: skip


def _read_head(state: Mapping, section: dict, name: str, ours: str, where: str):
    where = f"{where}: head {name!r}" if name != SINGLE_TASK_HEAD else where
    check_model_section(section, where)
    try:
        cfg = model_config(section, ours)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from err
    mapper = _DESCRIPTORS.get(cfg.descriptor.family)
    if mapper is None:
        supported = sorted(_DESCRIPTORS)
        raise ConfigError(f"{where}: descriptor {cfg.descriptor.family!r} cannot be read from "
                          f"a PyTorch checkpoint yet (supported: {supported})")  # fmt: skip
    tree = nested(state, f"model.{name}.")
    try:
        atomic = tree["atomic_model"]
        params = {"descriptor": mapper(atomic["descriptor"]),
                  "heads": {ours: head_params(atomic, cfg, ours)}}  # fmt: skip
    except (KeyError, ValueError, TypeError) as err:
        family = cfg.descriptor.family
        raise CheckpointError(f"{where}: module {err} is missing or not as DeePMD-kit 3.x "
                              f"writes it for a {family!r} model") from err  # fmt: skip
    with warnings.catch_warnings():  # float64 leaves made as float32 without x64: shapes only
        warnings.simplefilter("ignore", UserWarning)
        expected = init(jax.random.key(0), cfg)  # a fresh model: the layout to match
    check_against(params, expected, where)
    return cfg, params


def read_pytorch_model(
    path: str | os.PathLike, head: str | None = None
) -> tuple[list[tuple[str, ModelConfig, Params]], dict[str, Any]]:
    """Every head of a DeePMD-kit ``.pt`` checkpoint or frozen ``.pth`` model, or only ``head``
    (a ``model_dict`` name or one of its ``model_branch_alias`` names).

    Returns:
      ([(head name, one-head config, params)], metadata). Heads keep their ``model_dict``
      names; a single-task model's head is ``default``. Metadata holds ``model_def_script``
      (the ``model`` section), ``head_aliases`` ({alias: head}, if any) and, for a checkpoint,
      ``train_infos`` (step, learning rate).

    Raises:
      CheckpointError: not such a file, or variables missing or of the wrong shape.
      ConfigError: a model option, model type or descriptor this project does not support, or
        no head ``head`` (the heads are listed).
    """
    path = os.fspath(path)
    obj = read_torch_file(path, torchscript=path.endswith(".pth"))
    state, model_params = _state_and_params(obj, path)
    sections = _head_sections(model_params)
    if head is not None:
        name = head_aliases(model_params).get(head, head)
        if name not in sections or name == SINGLE_TASK_HEAD:
            raise ConfigError(f"{path}: unknown head {head!r}; this model has {list(sections)}")
        sections = {name: sections[name]}
    heads = []
    for name, section in sections.items():
        ours = DEFAULT_HEAD if name == SINGLE_TASK_HEAD else name
        heads.append((ours, *_read_head(state, section, name, ours, path)))
    meta: dict[str, Any] = {"model_def_script": model_params}
    aliases, infos = head_aliases(model_params), state.get("_extra_state", {}).get("train_infos")
    meta.update({"head_aliases": aliases} if aliases else {})
    meta.update({"train_infos": {k: v for k, v in infos.items()
                                 if isinstance(v, (int, float))}} if infos else {})  # fmt: skip
    return heads, meta
