"""The se_e2_a family <-> DeePMD-kit: its serialized ``se_e2_a`` descriptor dict (both ways),
and the ``descriptor`` section (type "se_e2_a" or "se_a") of a DeePMD input JSON."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from dpa2_jax.descriptor.se_e2_a.config import SeE2AConfig
from dpa2_jax.errors import ConfigError
from dpa2_jax.nn.deepmd import check_version, embedding_net_dict, env_mat_dict, read_network
from dpa2_jax.options import dataclass_kwargs
from dpa2_jax.typing import Params

SERIALIZATION_VERSION = 2  # the newest uncompressed ``se_e2_a`` @version (3 = compressed)
TYPES = ("se_e2_a", "se_a")  # DeePMD registers both names


def _kwargs(d: dict, what: str, ignore=()) -> dict:
    d = dict(d)
    if "sel" in d:
        sel = d.pop("sel")
        if isinstance(sel, str) or not isinstance(sel, (list, tuple)):
            raise ConfigError(
                f"{what}: sel={sel!r}: give one neighbor count per type (a list); "
                "'auto' needs DeePMD-kit's neighbor statistics"
            )
        d["type_sel"] = tuple(int(s) for s in sel)
    kwargs = dataclass_kwargs(SeE2AConfig, d, what, ignore=ignore)
    kwargs["exclude_types"] = tuple(tuple(p) for p in kwargs.get("exclude_types", ()))
    return kwargs


# ----------------------------------------------------------------------------- reading
def config_from_deepmd(d: dict) -> SeE2AConfig:
    """SeE2AConfig from a serialized ``se_e2_a`` descriptor dict."""
    if d.get("type") not in TYPES:
        raise ConfigError(f"descriptor type {d.get('type')!r} is not se_e2_a")
    check_version(d, "descriptor se_e2_a", 3)
    if d.get("compress") is not None:
        raise ConfigError("compressed se_e2_a models are not supported; use the uncompressed one")
    if d.get("spin") is not None:
        raise ConfigError("descriptor option spin is not supported")
    top = {k: v for k, v in d.items() if not isinstance(v, dict) and not k.startswith("@")}
    top["ntypes"] = len(top["sel"])
    return SeE2AConfig(
        **_kwargs(top, "descriptor se_e2_a", ignore=("type", "trainable", "type_map", "spin"))
    )


def params_from_deepmd(d: dict) -> Params:
    """Descriptor parameters from a serialized ``se_e2_a`` descriptor dict."""
    cfg = config_from_deepmd(d)
    coll = d["embeddings"]
    ndim = 1 if cfg.type_one_side else 2
    nets = coll["networks"]
    if coll.get("ndim") != ndim or len(nets) != cfg.n_embeddings or any(n is None for n in nets):
        raise ConfigError(
            f"se_e2_a embeddings: expected {cfg.n_embeddings} networks of ndim {ndim}, got "
            f"{len(nets)} of ndim {coll.get('ndim')}"
        )
    v = d["@variables"]
    return {
        "block": {
            "embeddings": [read_network(n) for n in nets],
            "davg": np.asarray(v["davg"]),
            "dstd": np.asarray(v["dstd"]),
        }
    }


# ----------------------------------------------------------------------------- writing
def to_deepmd(cfg: SeE2AConfig, params: Params, type_map) -> dict:
    """The serialized ``se_e2_a`` descriptor dict DeePMD-kit 3.2 deserializes.

    As DeePMD's ``serialize``, without type_one_side the (unused) nets of excluded type pairs
    are written as zeros."""
    prec, act = cfg.precision, cfg.activation_function
    block = params["block"]
    nets = [embedding_net_dict(layers, act, cfg.resnet_dt, prec) for layers in block["embeddings"]]
    if not cfg.type_one_side:
        for ti, tj in itertools.product(range(cfg.ntypes), repeat=2):
            if (ti, tj) in cfg.excluded_pairs:
                for layer in nets[ti + cfg.ntypes * tj]["layers"]:
                    v = layer["@variables"]
                    for k in v:
                        if v[k] is not None:
                            v[k] = np.zeros_like(v[k])
    return {
        "@class": "Descriptor", "type": "se_e2_a", "@version": SERIALIZATION_VERSION,
        "rcut": cfg.rcut, "rcut_smth": cfg.rcut_smth, "sel": list(cfg.type_sel),
        "neuron": list(cfg.neuron), "axis_neuron": cfg.axis_neuron, "resnet_dt": cfg.resnet_dt,
        "trainable": True, "type_one_side": cfg.type_one_side,
        "exclude_types": [list(p) for p in cfg.exclude_types],
        "env_protection": cfg.env_protection, "set_davg_zero": cfg.set_davg_zero,
        "activation_function": act, "precision": prec, "spin": None,
        "env_mat": env_mat_dict(cfg.rcut, cfg.rcut_smth, cfg.env_protection),
        "embeddings": {
            "@class": "NetworkCollection", "@version": 1,
            "ndim": 1 if cfg.type_one_side else 2, "ntypes": cfg.ntypes,
            "network_type": "embedding_network", "networks": nets,
        },
        "@variables": {"davg": np.asarray(block["davg"]), "dstd": np.asarray(block["dstd"])},
        "type_map": list(type_map),
    }  # fmt: skip


# ----------------------------------------------------------------------------- input JSON
_INPUT_IGNORED = ("type", "seed", "trainable", "_comment", "type_map", "ntypes")
# DeePMD's argcheck defaults (they differ from the class defaults of DescrptSeA)
_INPUT_DEFAULTS = {
    "rcut": 6.0, "rcut_smth": 0.5, "neuron": [10, 20, 40], "axis_neuron": 4,
    "type_one_side": False, "precision": "float64",
}  # fmt: skip


def config_from_input(section: dict[str, Any], ntypes: int) -> SeE2AConfig:
    """SeE2AConfig from the ``descriptor`` section of a DeePMD input JSON."""
    d = {**_INPUT_DEFAULTS, **section}
    if "n_axis_neuron" in d:  # DeePMD's alias
        d["axis_neuron"] = d.pop("n_axis_neuron")
    if d["precision"] == "default":
        d["precision"] = "float64"
    if "sel" not in d:
        raise ConfigError("descriptor se_e2_a: sel (one neighbor count per type) is required")
    if isinstance(d["sel"], list) and len(d["sel"]) != ntypes:
        raise ConfigError(
            f"descriptor se_e2_a: sel={d['sel']} has {len(d['sel'])} entries; the type_map "
            f"has {ntypes} types"
        )
    return SeE2AConfig(ntypes=ntypes, **_kwargs(d, "descriptor se_e2_a", ignore=_INPUT_IGNORED))


def input_section(cfg: SeE2AConfig) -> dict[str, Any]:
    """The DeePMD input JSON ``descriptor`` section describing ``cfg``."""
    return {
        "type": "se_e2_a", "sel": list(cfg.type_sel), "rcut": cfg.rcut,
        "rcut_smth": cfg.rcut_smth, "neuron": list(cfg.neuron), "axis_neuron": cfg.axis_neuron,
        "resnet_dt": cfg.resnet_dt, "type_one_side": cfg.type_one_side,
        "exclude_types": [list(p) for p in cfg.exclude_types],
        "env_protection": cfg.env_protection, "set_davg_zero": cfg.set_davg_zero,
        "activation_function": cfg.activation_function, "precision": cfg.precision,
    }  # fmt: skip
