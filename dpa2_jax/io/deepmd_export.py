"""(ModelConfig, params) -> DeePMD-kit's serialized model dict, the inverse of
``deepmd_model.from_deepmd``: every key DeePMD-kit 3.2.0's ``serialize()`` writes, so that its
``deserialize()`` (and a `.dp` file holding the result) loads our models.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dpa2_jax.descriptor.config import DescriptorConfig, RepformerConfig
from dpa2_jax.io.deepmd_model import _LAYER_KEYS
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.typing import Params


def _np(x) -> np.ndarray:
    return np.asarray(x)


def _layer_dict(p: Params, act: str, resnet: bool, precision: str) -> dict:
    return {
        "@class": "Layer",
        "@version": 2,
        "bias": p.get("b") is not None,
        "use_timestep": p.get("idt") is not None,
        "activation_function": act,
        "resnet": resnet,
        "precision": precision,
        "trainable": True,
        "@variables": {k: (_np(p[k]) if p.get(k) is not None else None) for k in ("w", "b", "idt")},
    }


def _embedding_net(layers: list[Params], act: str, resnet_dt: bool, precision: str) -> dict:
    return {
        "@class": "EmbeddingNetwork",
        "@version": 2,
        "in_dim": int(_np(layers[0]["w"]).shape[0]),
        "neuron": [int(_np(p["w"]).shape[1]) for p in layers],
        "activation_function": act,
        "resnet_dt": resnet_dt,
        "bias": layers[0].get("b") is not None,
        "precision": precision,
        "layers": [_layer_dict(p, act, True, precision) for p in layers],
    }


def _fitting_net(layers: list[Params], act: str, resnet_dt: bool, precision: str) -> dict:
    hidden, out = layers[:-1], layers[-1]
    return {
        "@class": "FittingNetwork",
        "@version": 1,
        "in_dim": int(_np(layers[0]["w"]).shape[0]),
        "out_dim": int(_np(out["w"]).shape[1]),
        "neuron": [int(_np(p["w"]).shape[1]) for p in hidden],
        "activation_function": act,
        "resnet_dt": resnet_dt,
        "precision": precision,
        "bias_out": True,
        "layers": [_layer_dict(p, act, True, precision) for p in hidden]
        + [_layer_dict(out, "none", False, precision)],
    }


def _collection_dict(net: dict, ntypes: int, network_type: str) -> dict:
    return {
        "@class": "NetworkCollection",
        "@version": 1,
        "ndim": 0,
        "ntypes": ntypes,
        "network_type": network_type,
        "networks": [net],
    }


def _env_mat(rcut: float, rcut_smth: float) -> dict:
    return {"rcut": rcut, "rcut_smth": rcut_smth, "protection": 0.0, "use_exp_switch": False}


def _args(cfg) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def _repformer_layer_dict(
    p: Params, cfg: RepformerConfig, ntypes: int, last: bool, prec: str
) -> dict:
    update_g2 = not last

    def lin(key):
        return _layer_dict(p[key], "none", False, prec)

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
        d["attn2g_map"] = {
            "@class": "Atten2Map", "@version": 1, "input_dim": cfg.g2_dim,
            "hidden_dim": cfg.attn2_hidden, "head_num": cfg.attn2_nhead,
            "has_gate": cfg.attn2_has_gate, "smooth": None, "attnw_shift": 20.0,
            "precision": prec,
            "mapqk": _layer_dict(p["attn2g_map"]["mapqk"], "none", False, prec),
        }  # fmt: skip
    if "attn2_mh_apply" in p:
        q = p["attn2_mh_apply"]
        d["attn2_mh_apply"] = {
            "@class": "Atten2MultiHeadApply", "@version": 1, "input_dim": cfg.g2_dim,
            "head_num": cfg.attn2_nhead, "precision": prec,
            "mapv": _layer_dict(q["mapv"], "none", False, prec),
            "head_map": _layer_dict(q["head_map"], "none", False, prec),
        }  # fmt: skip
        d["attn2_lm"] = {
            "@class": "LayerNorm", "@version": 1, "eps": cfg.ln_eps,
            "trainable": cfg.trainable_ln, "precision": prec,
            "@variables": {"w": _np(p["attn2_lm"]["w"]), "b": _np(p["attn2_lm"]["b"])},
        }  # fmt: skip
    if "attn2_ev_apply" in p:
        d["attn2_ev_apply"] = {
            "@class": "Atten2EquiVarApply", "@version": 1, "input_dim": cfg.g2_dim,
            "head_num": cfg.attn2_nhead, "precision": prec,
            "head_map": _layer_dict(p["attn2_ev_apply"]["head_map"], "none", False, prec),
        }  # fmt: skip
    if "loc_attn" in p:
        q = p["loc_attn"]
        d["loc_attn"] = {
            "@class": "LocalAtten", "@version": 1, "input_dim": cfg.g1_dim,
            "hidden_dim": cfg.attn1_hidden, "head_num": cfg.attn1_nhead, "smooth": None,
            "attnw_shift": 20.0, "precision": prec,
            **{k: _layer_dict(q[k], "none", False, prec) for k in ("mapq", "mapkv", "head_map")},
        }  # fmt: skip
    if cfg.update_style == "res_residual":
        d["@variables"] = {
            k: [_np(a) for a in p.get(k, [])] for k in ("g1_residual", "g2_residual", "h2_residual")
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
        return _layer_dict(params["g1_shape_transform"], "none", False, prec)
    if cfg.repinit.use_three_body:
        eye = np.eye(cfg.repformer.g1_dim, dtype=prec)
        return _layer_dict({"w": eye}, "none", False, prec)
    return {"@class": "Identity", "@version": 1}


def descriptor_to_deepmd(params: Params, cfg: DescriptorConfig, type_map) -> dict:
    """The serialized ``dpa2`` descriptor dict DeePMD-kit 3.2 deserializes."""
    prec, ri, rf = cfg.precision, cfg.repinit, cfg.repformer
    ntypes = cfg.ntypes

    def block(p, rcut, rcut_smth):
        v = {
            "embeddings": _collection_dict(
                _embedding_net(p["embedding"], ri.activation_function, ri.resnet_dt, prec),
                ntypes, "embedding_network",
            ),
            "env_mat": _env_mat(rcut, rcut_smth),
            "@variables": {"davg": _np(p["davg"]), "dstd": _np(p["dstd"])},
        }  # fmt: skip
        if "embedding_strip" in p:
            v["embeddings_strip"] = _collection_dict(
                _embedding_net(p["embedding_strip"], ri.activation_function, ri.resnet_dt, prec),
                ntypes, "embedding_network",
            )  # fmt: skip
        return v

    tebd_layers = params["type_embedding"]
    tebd_net = _embedding_net(tebd_layers, "Linear", False, prec)
    d = {
        "@class": "Descriptor",
        "type": "dpa2",
        "@version": 3,
        "ntypes": ntypes,
        "repinit_args": _args(ri),
        "repformer_args": _args(rf),
        "concat_output_tebd": cfg.concat_output_tebd,
        "precision": prec,
        "smooth": cfg.smooth,
        "exclude_types": [list(p) for p in cfg.exclude_types],
        "env_protection": cfg.env_protection,
        "trainable": True,
        "add_tebd_to_repinit_out": cfg.add_tebd_to_repinit_out,
        "use_econf_tebd": False,
        "use_tebd_bias": cfg.use_tebd_bias,
        "type_map": list(type_map),
        "type_embedding": {
            "@class": "TypeEmbedNet",
            "@version": 2,
            "ntypes": ntypes,
            "neuron": [ri.tebd_dim],
            "resnet_dt": False,
            "precision": prec,
            "activation_function": "Linear",
            "trainable": True,
            "padding": True,
            "use_econf_tebd": False,
            "use_tebd_bias": cfg.use_tebd_bias,
            "type_map": list(type_map),
            "embedding": tebd_net,
        },  # fmt: skip
        "g1_shape_tranform": _g1_shape_transform(params, cfg),
        "repinit_variable": block(params["repinit"], ri.rcut, ri.rcut_smth),
        "repformers_variable": {
            "g2_embd": _layer_dict(params["repformers"]["g2_embd"], "none", False, prec),
            "repformer_layers": [
                _fill_smooth(
                    _repformer_layer_dict(p, rf, ntypes, k == rf.nlayers - 1, prec), cfg.smooth
                )
                for k, p in enumerate(params["repformers"]["layers"])
            ],
            "env_mat": _env_mat(rf.rcut, rf.rcut_smth),
            "@variables": {
                "davg": _np(params["repformers"]["davg"]),
                "dstd": _np(params["repformers"]["dstd"]),
            },
        },
    }
    if cfg.add_tebd_to_repinit_out:
        d["tebd_transform"] = _layer_dict(params["tebd_transform"], "none", False, prec)
    if ri.use_three_body:
        d["repinit_three_body_variable"] = block(
            params["three_body"], ri.three_body_rcut, ri.three_body_rcut_smth
        )
    return d


def to_deepmd(cfg: ModelConfig, params: Params, head: str | None = None) -> dict:
    """The serialized DeePMD model dict of one head (a `.dp` file holds one head)."""
    head = cfg.resolve_head(head)
    fit = cfg.fitting(head)
    hp = params["heads"][head]
    ntypes = cfg.descriptor.ntypes
    prec = fit.precision
    layers = hp["fitting"]["layers"]
    fitting = {
        "@class": "Fitting", "@version": 4, "type": "ener", "var_name": "energy",
        "ntypes": ntypes, "dim_descrpt": cfg.descriptor.dim_out, "neuron": list(fit.neuron),
        "resnet_dt": fit.resnet_dt, "numb_fparam": 0, "numb_aparam": 0, "dim_case_embd": 0,
        "default_fparam": None, "rcond": None,
        "activation_function": fit.activation_function, "precision": prec,
        "mixed_types": True, "exclude_types": list(fit.exclude_types),
        "type_map": list(cfg.type_map), "tot_ener_zero": False,
        "trainable": [True] * (len(fit.neuron) + 1), "layer_name": None,
        "use_aparam_as_mask": False, "spin": None, "dim_out": 1, "atom_ener": None,
        "nets": _collection_dict(
            _fitting_net(layers, fit.activation_function, fit.resnet_dt, prec),
            ntypes, "fitting_network",
        ),
        "@variables": {
            "bias_atom_e": _np(hp["fitting"]["bias_atom_e"]), "case_embd": None,
            "fparam_avg": None, "fparam_inv_std": None,
            "aparam_avg": None, "aparam_inv_std": None,
        },
    }  # fmt: skip
    out_bias = _np(hp["out_bias"]).reshape(1, ntypes, 1)
    return {
        "@class": "Model",
        "type": "standard",
        "@version": 2,
        "type_map": list(cfg.type_map),
        "atom_exclude_types": list(cfg.atom_exclude_types),
        "pair_exclude_types": [],
        "rcond": None,
        "preset_out_bias": None,
        "descriptor": descriptor_to_deepmd(params["descriptor"], cfg.descriptor, cfg.type_map),
        "fitting": fitting,
        "@variables": {"out_bias": out_bias, "out_std": np.ones_like(out_bias)},
    }
