"""The DPA-2 family <-> DeePMD-kit: its serialized ``dpa2`` descriptor dict (both ways), and
the ``descriptor`` section of a DeePMD input JSON.

DeePMD's misspelt key ``g1_shape_tranform`` appears only here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dpa2_jax.descriptor.dpa2.config import DescriptorConfig, RepformerConfig, RepinitConfig
from dpa2_jax.errors import ConfigError
from dpa2_jax.nn.deepmd import (
    check_version,
    collection_dict,
    embedding_net_dict,
    env_mat_dict,
    linear_dict,
    read_collection,
    read_layer,
    read_network,
)
from dpa2_jax.options import dataclass_kwargs, options_dict
from dpa2_jax.typing import Params

SERIALIZATION_VERSION = 4  # the newest ``dpa2`` @version read


# ----------------------------------------------------------------------------- reading
def config_from_deepmd(d: dict) -> DescriptorConfig:
    """DescriptorConfig from a serialized ``dpa2`` descriptor dict."""
    if d.get("type") != "dpa2":
        raise ConfigError(f"descriptor type {d.get('type')!r} is not supported (only 'dpa2')")
    check_version(d, "descriptor dpa2", SERIALIZATION_VERSION)
    if d.get("@version", 1) >= 4 or "compress" in d.get("repinit_variable", {}):
        raise ConfigError(
            "compressed DPA-2 models are not supported; convert the uncompressed model"
        )
    repformer_args = dict(d["repformer_args"])
    if d.get("@version", 1) < 3:  # older models predate these options
        repformer_args.update(use_sqrt_nnei=False, g1_out_conv=False, g1_out_mlp=False)
    top = {k: v for k, v in d.items() if not isinstance(v, dict) and not k.startswith("@")}
    top["exclude_types"] = tuple(tuple(p) for p in top.get("exclude_types", []))
    top.setdefault("use_tebd_bias", True)  # version-1 models had the bias
    # the econf inputs are not stored: they follow from the type map
    if top.get("use_econf_tebd"):
        top.setdefault("type_map", d.get("type_embedding", {}).get("type_map"))
        top["type_map"] = _econf_type_map(top)
    else:
        top["type_map"] = None
    kwargs = dataclass_kwargs(DescriptorConfig, top, "descriptor", ignore=("type", "trainable"))
    return DescriptorConfig(
        repinit=RepinitConfig(**dataclass_kwargs(RepinitConfig, d["repinit_args"], "repinit")),
        repformer=RepformerConfig(**dataclass_kwargs(RepformerConfig, repformer_args, "repformer")),
        **kwargs,
    )


def params_from_deepmd(d: dict) -> Params:
    """Descriptor parameters from a serialized ``dpa2`` descriptor dict."""
    ri, rf = d["repinit_variable"], d["repformers_variable"]

    def block(v):
        p = {
            "embedding": read_collection(v["embeddings"], "repinit embeddings"),
            "davg": np.asarray(v["@variables"]["davg"]),
            "dstd": np.asarray(v["@variables"]["dstd"]),
        }
        if v.get("embeddings_strip") is not None:
            p["embedding_strip"] = read_collection(
                v["embeddings_strip"], "repinit embeddings_strip"
            )
        return p

    params: Params = {
        "type_embedding": read_network(d["type_embedding"]["embedding"]),
        "repinit": block(ri),
        "repformers": {
            "g2_embd": read_layer(rf["g2_embd"]),
            "layers": [_read_repformer_layer(x) for x in rf["repformer_layers"]],
            "davg": np.asarray(rf["@variables"]["davg"]),
            "dstd": np.asarray(rf["@variables"]["dstd"]),
        },
    }
    if d.get("repinit_three_body_variable") is not None:
        params["three_body"] = block(d["repinit_three_body_variable"])
    if d.get("g1_shape_tranform", {}).get("@class") == "Layer":
        params["g1_shape_transform"] = read_layer(d["g1_shape_tranform"])
    if d.get("tebd_transform") is not None:
        params["tebd_transform"] = read_layer(d["tebd_transform"])
    return params


_LAYER_KEYS = ("linear1", "linear2", "g1_self_mlp", "proj_g1g2", "proj_g1g1g2")
_ATTENTION_KEYS = {
    "attn2g_map": ("mapqk",),
    "attn2_mh_apply": ("mapv", "head_map"),
    "attn2_ev_apply": ("head_map",),
    "loc_attn": ("mapq", "mapkv", "head_map"),
}


def _read_repformer_layer(d: dict) -> Params:
    p: Params = {k: read_layer(d[k]) for k in _LAYER_KEYS if d.get(k) is not None}
    for key, subs in _ATTENTION_KEYS.items():
        if d.get(key) is not None:
            p[key] = {s: read_layer(d[key][s]) for s in subs}
    if d.get("attn2_lm") is not None:
        v = d["attn2_lm"]["@variables"]
        p["attn2_lm"] = {"w": np.asarray(v["w"]), "b": np.asarray(v["b"])}
    if d.get("update_style") == "res_residual":
        v = d.get("@variables", {})
        for key in ("g1_residual", "g2_residual", "h2_residual"):
            p[key] = [np.asarray(a) for a in v.get(key, [])]
    return p


def _econf_type_map(section: dict) -> tuple[str, ...]:
    if not section.get("type_map"):
        raise ConfigError("descriptor option use_econf_tebd=True needs a type_map")
    return tuple(section["type_map"])


# ----------------------------------------------------------------------------- writing
def _attention_dict(
    cls: str, input_dim: int, head_num: int, prec: str, maps: Params, **options
) -> dict:
    """A serialized attention block: its options and linear maps (``mapqk``, ``mapv``...)."""
    return {
        "@class": cls, "@version": 1, "input_dim": input_dim, "head_num": head_num,
        "precision": prec, **options, **{k: linear_dict(v, prec) for k, v in maps.items()},
    }  # fmt: skip


def _repformer_layer_dict(
    p: Params, cfg: RepformerConfig, ntypes: int, last: bool, prec: str
) -> dict:
    update_g2 = not last

    def lin(key):
        return linear_dict(p[key], prec)

    d: dict = {
        "@class": "RepformerLayer",
        "@version": 2,
        "rcut": cfg.rcut,
        "rcut_smth": cfg.rcut_smth,
        "sel": [cfg.nsel],
        "ntypes": ntypes,
        "g1_dim": cfg.g1_dim,
        "g2_dim": cfg.g2_dim,
        "axis_neuron": cfg.axis_neuron,
        "update_chnnl_2": update_g2,
        "update_g1_has_conv": cfg.update_g1_has_conv,
        "update_g1_has_drrd": cfg.update_g1_has_drrd,
        "update_g1_has_grrg": cfg.update_g1_has_grrg,
        "update_g1_has_attn": cfg.update_g1_has_attn,
        "update_g2_has_g1g1": cfg.update_g2_has_g1g1 and update_g2,
        "update_g2_has_attn": cfg.update_g2_has_attn and update_g2,
        "update_h2": cfg.update_h2 and update_g2,
        "attn1_hidden": cfg.attn1_hidden,
        "attn1_nhead": cfg.attn1_nhead,
        "attn2_hidden": cfg.attn2_hidden,
        "attn2_nhead": cfg.attn2_nhead,
        "attn2_has_gate": cfg.attn2_has_gate,
        "activation_function": cfg.activation_function,
        "update_style": cfg.update_style,
        "smooth": None,  # filled by the caller
        "precision": prec,
        "trainable_ln": cfg.trainable_ln,
        "use_sqrt_nnei": cfg.use_sqrt_nnei,
        "g1_out_conv": cfg.g1_out_conv,
        "g1_out_mlp": cfg.g1_out_mlp,
        "ln_eps": cfg.ln_eps,
    }
    for key in _LAYER_KEYS:
        if key in p:
            d[key] = lin(key)
    if "attn2g_map" in p:
        d["attn2g_map"] = _attention_dict(
            "Atten2Map", cfg.g2_dim, cfg.attn2_nhead, prec, p["attn2g_map"],
            hidden_dim=cfg.attn2_hidden, has_gate=cfg.attn2_has_gate, smooth=None,
            attnw_shift=20.0,
        )  # fmt: skip
    if "attn2_mh_apply" in p:
        d["attn2_mh_apply"] = _attention_dict(
            "Atten2MultiHeadApply", cfg.g2_dim, cfg.attn2_nhead, prec, p["attn2_mh_apply"]
        )
        d["attn2_lm"] = {
            "@class": "LayerNorm", "@version": 1, "eps": cfg.ln_eps,
            "trainable": cfg.trainable_ln, "precision": prec,
            "@variables": {k: np.asarray(p["attn2_lm"][k]) for k in ("w", "b")},
        }  # fmt: skip
    if "attn2_ev_apply" in p:
        d["attn2_ev_apply"] = _attention_dict(
            "Atten2EquiVarApply", cfg.g2_dim, cfg.attn2_nhead, prec, p["attn2_ev_apply"]
        )
    if "loc_attn" in p:
        d["loc_attn"] = _attention_dict(
            "LocalAtten", cfg.g1_dim, cfg.attn1_nhead, prec, p["loc_attn"],
            hidden_dim=cfg.attn1_hidden, smooth=None, attnw_shift=20.0,
        )  # fmt: skip
    if cfg.update_style == "res_residual":
        d["@variables"] = {
            k: [np.asarray(a) for a in p.get(k, [])]
            for k in ("g1_residual", "g2_residual", "h2_residual")
        }
    return d


def _fill_smooth(d: dict, smooth: bool) -> dict:
    for key in ("attn2g_map", "loc_attn", None):
        target = d if key is None else d.get(key)
        if target is not None and "smooth" in target:
            target["smooth"] = smooth
    return d


def _g1_shape_transform(params: Params, cfg: DescriptorConfig) -> dict:
    """The repinit -> g1 map. DeePMD-kit 3.2.0 reads it back by comparing g1_dim with repinit's
    width *without* three-body, so where no map is needed but three-body is on, write an
    identity Layer instead of an Identity (same numbers, and DeePMD can load it)."""
    prec = cfg.precision
    if "g1_shape_transform" in params:
        return linear_dict(params["g1_shape_transform"], prec)
    if cfg.repinit.use_three_body:
        eye = np.eye(cfg.repformer.g1_dim, dtype=prec)
        return linear_dict({"w": eye}, prec)
    return {"@class": "Identity", "@version": 1}


def _block_dict(p: Params, ri: RepinitConfig, ntypes: int, rcut: float, rcut_smth: float,
                prec: str) -> dict:  # fmt: skip
    """A serialized DPA-1-style block (repinit or three-body): embeddings, env_mat, stats."""

    def embeddings(layers):
        net = embedding_net_dict(layers, ri.activation_function, ri.resnet_dt, prec)
        return collection_dict(net, ntypes, "embedding_network")

    v = {
        "embeddings": embeddings(p["embedding"]),
        "env_mat": env_mat_dict(rcut, rcut_smth),
        "@variables": {"davg": np.asarray(p["davg"]), "dstd": np.asarray(p["dstd"])},
    }
    if "embedding_strip" in p:
        v["embeddings_strip"] = embeddings(p["embedding_strip"])
    return v


def _type_embedding_dict(layers: list[Params], cfg: DescriptorConfig, type_map) -> dict:
    """A serialized ``TypeEmbedNet`` (one linear layer, padding row)."""
    return {
        "@class": "TypeEmbedNet", "@version": 2, "ntypes": cfg.ntypes,
        "neuron": [cfg.repinit.tebd_dim], "resnet_dt": False, "precision": cfg.precision,
        "activation_function": "Linear", "trainable": True, "padding": True,
        "use_econf_tebd": cfg.use_econf_tebd, "use_tebd_bias": cfg.use_tebd_bias,
        "type_map": list(type_map),
        "embedding": embedding_net_dict(layers, "Linear", False, cfg.precision),
    }  # fmt: skip


def _repformers_dict(p: Params, cfg: DescriptorConfig) -> dict:
    """The serialized repformer stack: g2 embedding, layers, env_mat and statistics."""
    rf, prec = cfg.repformer, cfg.precision
    layers = [
        _fill_smooth(
            _repformer_layer_dict(q, rf, cfg.ntypes, k == rf.nlayers - 1, prec), cfg.smooth
        )
        for k, q in enumerate(p["layers"])
    ]
    return {
        "g2_embd": linear_dict(p["g2_embd"], prec),
        "repformer_layers": layers,
        "env_mat": env_mat_dict(rf.rcut, rf.rcut_smth),
        "@variables": {"davg": np.asarray(p["davg"]), "dstd": np.asarray(p["dstd"])},
    }


def to_deepmd(cfg: DescriptorConfig, params: Params, type_map) -> dict:
    """The serialized ``dpa2`` descriptor dict DeePMD-kit 3.2 deserializes."""
    prec, ri, rf = cfg.precision, cfg.repinit, cfg.repformer
    if cfg.use_econf_tebd and tuple(type_map) != cfg.type_map:
        raise ConfigError(
            f"type_map {list(type_map)} differs from {list(cfg.type_map)}, the one the "
            "descriptor's electron-configuration type embedding was built for"
        )
    d = {
        "@class": "Descriptor", "type": "dpa2", "@version": 3, "ntypes": cfg.ntypes,
        "repinit_args": options_dict(ri), "repformer_args": options_dict(rf),
        "concat_output_tebd": cfg.concat_output_tebd, "precision": prec, "smooth": cfg.smooth,
        "exclude_types": [list(p) for p in cfg.exclude_types],
        "env_protection": cfg.env_protection, "trainable": True,
        "add_tebd_to_repinit_out": cfg.add_tebd_to_repinit_out,
        "use_econf_tebd": cfg.use_econf_tebd, "use_tebd_bias": cfg.use_tebd_bias,
        "type_map": list(type_map),
        "type_embedding": _type_embedding_dict(params["type_embedding"], cfg, type_map),
        "g1_shape_tranform": _g1_shape_transform(params, cfg),
        "repinit_variable": _block_dict(params["repinit"], ri, cfg.ntypes, ri.rcut,
                                        ri.rcut_smth, prec),
        "repformers_variable": _repformers_dict(params["repformers"], cfg),
    }  # fmt: skip
    if cfg.add_tebd_to_repinit_out:
        d["tebd_transform"] = linear_dict(params["tebd_transform"], prec)
    if ri.use_three_body:
        d["repinit_three_body_variable"] = _block_dict(
            params["three_body"], ri, cfg.ntypes, ri.three_body_rcut, ri.three_body_rcut_smth,
            prec,
        )  # fmt: skip
    return d


# ----------------------------------------------------------------------------- input JSON
_INPUT_IGNORED = {"type", "seed", "trainable", "_comment", "type_map", "use_econf_tebd"}
_INPUT_ALIASES = {"sel": "nsel"}


def _input_options(cls, section: dict, what: str, aliases: dict | None = None) -> dict:
    out = {}
    for key, value in section.items():
        key = (aliases or {}).get(key, key)
        if key in _INPUT_IGNORED or (key == "ln_eps" and value is None):  # None: DeePMD's 1e-5
            continue
        out[key] = value
    return dataclass_kwargs(cls, out, what)


def config_from_input(section: dict[str, Any], ntypes: int) -> DescriptorConfig:
    """DescriptorConfig from the ``descriptor`` section of a DeePMD input JSON. With
    ``use_econf_tebd`` the section must hold the model's ``type_map`` (DeePMD-kit copies it
    there too; ``io.deepmd_config`` does)."""
    top = {k: v for k, v in section.items() if k not in ("repinit", "repformer", "ntypes")}
    if "exclude_types" in top:
        top["exclude_types"] = tuple(tuple(p) for p in top["exclude_types"])
    econf = bool(section.get("use_econf_tebd"))
    return DescriptorConfig(
        ntypes=ntypes,
        use_econf_tebd=econf,
        type_map=_econf_type_map(section) if econf else None,
        repinit=RepinitConfig(
            **_input_options(RepinitConfig, section.get("repinit", {}), "repinit", _INPUT_ALIASES)
        ),
        repformer=RepformerConfig(
            **_input_options(
                RepformerConfig, section.get("repformer", {}), "repformer", _INPUT_ALIASES
            )
        ),
        **_input_options(DescriptorConfig, top, "descriptor"),
    )


def input_section(cfg: DescriptorConfig) -> dict[str, Any]:
    """The DeePMD input JSON ``descriptor`` section describing ``cfg``."""

    def lists(obj):
        return {
            k: [list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, tuple) else v
            for k, v in options_dict(obj).items()
        }

    section = {"type": "dpa2", **lists(cfg)}
    del section["ntypes"], section["type_map"]  # DeePMD takes them from the model's type map
    return section
