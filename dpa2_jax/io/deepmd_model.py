"""DeePMD-kit's serialized model dict -> (ModelConfig, params); ``deepmd_export`` goes back.

The serialized dict is what ``deepmd.dpmodel`` models produce with ``serialize()`` and what a
`.dp` file holds under ``"model"``: a ``standard`` model with a ``dpa2`` descriptor and an
``ener`` fitting. Our parameter leaves keep DeePMD's names (``w``, ``b``, ``idt``, ``davg``,
``dstd``, ``linear1``, ``loc_attn``...), so this module is a short mapping. DeePMD's misspelt
key ``g1_shape_tranform`` appears only here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from dpa2_jax.descriptor.config import DescriptorConfig, RepformerConfig, RepinitConfig
from dpa2_jax.errors import ConfigError
from dpa2_jax.fitting.energy import FittingConfig
from dpa2_jax.model.config import DEFAULT_HEAD, ModelConfig
from dpa2_jax.typing import Params

SUPPORTED_VERSIONS = {"Model": 2, "dpa2": 4, "ener": 4}


# ----------------------------------------------------------------------------- reading
def _check_version(d: dict, what: str, newest: int) -> None:
    version = d.get("@version", 1)
    if version > newest:
        raise ConfigError(
            f"{what} has serialization @version {version}; dpa2_jax reads up to {newest}"
        )


def _layer(d: dict) -> Params:
    v = d["@variables"]
    return {k: np.asarray(v[k]) for k in ("w", "b", "idt") if v.get(k) is not None}


def _network(d: dict) -> list[Params]:
    return [_layer(layer) for layer in d["layers"]]


def _collection(d: dict, what: str) -> list[Params]:
    nets = d["networks"]
    if d.get("ndim", 0) != 0 or len(nets) != 1:
        raise ConfigError(f"{what}: only one network shared by all types is supported")
    return _network(nets[0])


def _dataclass_kwargs(cls, args: dict, what: str, ignore=()) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(args) - names - set(ignore))
    if unknown:
        raise ConfigError(f"{what}: unsupported option(s) {unknown}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in args.items() if k in names}


def descriptor_config(d: dict) -> DescriptorConfig:
    """DescriptorConfig from a serialized ``dpa2`` descriptor dict."""
    if d.get("type") != "dpa2":
        raise ConfigError(f"descriptor type {d.get('type')!r} is not supported (only 'dpa2')")
    _check_version(d, "descriptor dpa2", SUPPORTED_VERSIONS["dpa2"])
    if d.get("@version", 1) >= 4 or "compress" in d.get("repinit_variable", {}):
        raise ConfigError(
            "compressed DPA-2 models are not supported; convert the uncompressed model"
        )
    if d.get("use_econf_tebd", False):
        raise ConfigError("descriptor option use_econf_tebd=True is not supported")
    repformer_args = dict(d["repformer_args"])
    if d.get("@version", 1) < 3:  # older models predate these options
        repformer_args.update(use_sqrt_nnei=False, g1_out_conv=False, g1_out_mlp=False)
    top = {k: v for k, v in d.items() if not isinstance(v, dict) and not k.startswith("@")}
    top["exclude_types"] = tuple(tuple(p) for p in top.get("exclude_types", []))
    top.setdefault("use_tebd_bias", True)  # version-1 models had the bias
    kwargs = _dataclass_kwargs(
        DescriptorConfig,
        top,
        "descriptor",
        ignore=("type", "trainable", "type_map", "use_econf_tebd"),
    )
    return DescriptorConfig(
        repinit=RepinitConfig(**_dataclass_kwargs(RepinitConfig, d["repinit_args"], "repinit")),
        repformer=RepformerConfig(
            **_dataclass_kwargs(RepformerConfig, repformer_args, "repformer")
        ),
        **kwargs,
    )


def fitting_config(d: dict) -> FittingConfig:
    """FittingConfig from a serialized ``ener`` fitting dict."""
    if d.get("type") != "ener":
        raise ConfigError(f"fitting type {d.get('type')!r} is not supported (only 'ener')")
    _check_version(d, "fitting ener", SUPPORTED_VERSIONS["ener"])
    for key in ("numb_fparam", "numb_aparam", "dim_case_embd"):
        if d.get(key, 0):
            raise ConfigError(f"fitting option {key}={d[key]} is not supported yet")
    for key in ("atom_ener", "spin", "layer_name"):
        if d.get(key):
            raise ConfigError(f"fitting option {key}={d[key]} is not supported")
    if not d.get("mixed_types", True):
        raise ConfigError("fitting with mixed_types=False (one net per type) is not supported")
    return FittingConfig(
        neuron=tuple(d["neuron"]),
        resnet_dt=d["resnet_dt"],
        activation_function=d["activation_function"],
        precision=d["precision"],
        exclude_types=tuple(d.get("exclude_types", [])),
    )


def descriptor_params(d: dict) -> Params:
    """Descriptor parameters from a serialized ``dpa2`` descriptor dict."""
    ri, rf = d["repinit_variable"], d["repformers_variable"]

    def block(v):
        p = {
            "embedding": _collection(v["embeddings"], "repinit embeddings"),
            "davg": np.asarray(v["@variables"]["davg"]),
            "dstd": np.asarray(v["@variables"]["dstd"]),
        }
        if v.get("embeddings_strip") is not None:
            p["embedding_strip"] = _collection(v["embeddings_strip"], "repinit embeddings_strip")
        return p

    params: Params = {
        "type_embedding": _network(d["type_embedding"]["embedding"]),
        "repinit": block(ri),
        "repformers": {
            "g2_embd": _layer(rf["g2_embd"]),
            "layers": [_repformer_layer(x) for x in rf["repformer_layers"]],
            "davg": np.asarray(rf["@variables"]["davg"]),
            "dstd": np.asarray(rf["@variables"]["dstd"]),
        },
    }
    if d.get("repinit_three_body_variable") is not None:
        params["three_body"] = block(d["repinit_three_body_variable"])
    if d.get("g1_shape_tranform", {}).get("@class") == "Layer":
        params["g1_shape_transform"] = _layer(d["g1_shape_tranform"])
    if d.get("tebd_transform") is not None:
        params["tebd_transform"] = _layer(d["tebd_transform"])
    return params


_LAYER_KEYS = ("linear1", "linear2", "g1_self_mlp", "proj_g1g2", "proj_g1g1g2")
_ATTENTION_KEYS = {
    "attn2g_map": ("mapqk",),
    "attn2_mh_apply": ("mapv", "head_map"),
    "attn2_ev_apply": ("head_map",),
    "loc_attn": ("mapq", "mapkv", "head_map"),
}


def _repformer_layer(d: dict) -> Params:
    p: Params = {k: _layer(d[k]) for k in _LAYER_KEYS if d.get(k) is not None}
    for key, subs in _ATTENTION_KEYS.items():
        if d.get(key) is not None:
            p[key] = {s: _layer(d[key][s]) for s in subs}
    if d.get("attn2_lm") is not None:
        v = d["attn2_lm"]["@variables"]
        p["attn2_lm"] = {"w": np.asarray(v["w"]), "b": np.asarray(v["b"])}
    if d.get("update_style") == "res_residual":
        v = d.get("@variables", {})
        for key in ("g1_residual", "g2_residual", "h2_residual"):
            p[key] = [np.asarray(a) for a in v.get(key, [])]
    return p


def from_deepmd(model: dict, head: str = DEFAULT_HEAD) -> tuple[ModelConfig, Params]:
    """(ModelConfig, params) from a serialized DeePMD model (the ``"model"`` entry of a .dp)."""
    if model.get("@class") != "Model" or model.get("type") != "standard":
        raise ConfigError(
            f"model @class={model.get('@class')!r} type={model.get('type')!r} is not supported "
            "(only standard energy models with a dpa2 descriptor)"
        )
    _check_version(model, "model", SUPPORTED_VERSIONS["Model"])
    if model.get("pair_exclude_types"):
        raise ConfigError(
            f"model option pair_exclude_types={model['pair_exclude_types']} is not supported"
        )
    desc_cfg = descriptor_config(model["descriptor"])
    fit_cfg = fitting_config(model["fitting"])
    if fit_cfg.precision != desc_cfg.precision:
        raise ConfigError(
            f"fitting precision {fit_cfg.precision} differs from descriptor precision "
            f"{desc_cfg.precision}; dpa2_jax runs a model in one precision"
        )
    cfg = ModelConfig(
        type_map=tuple(model["type_map"]),
        descriptor=desc_cfg,
        heads=((head, fit_cfg),),
        atom_exclude_types=tuple(model.get("atom_exclude_types", [])),
    )
    fitting = model["fitting"]
    out_bias = np.asarray(model["@variables"]["out_bias"])  # [1, n_type, 1]
    params = {
        "descriptor": descriptor_params(model["descriptor"]),
        "heads": {
            head: {
                "fitting": {
                    "layers": _collection(fitting["nets"], "fitting nets"),
                    "bias_atom_e": np.asarray(fitting["@variables"]["bias_atom_e"]),
                },
                "out_bias": out_bias.reshape(out_bias.shape[-2]),
            }
        },
    }
    return cfg, params


def model_json(data: dict) -> Any:
    """The serialized model inside a loaded .dp dict, with a clear error if absent."""
    if "model" not in data:
        raise ConfigError("the .dp file has no 'model' entry")
    return data["model"]
