"""DeePMD-kit's serialized building blocks (layers, networks, collections), both ways.

Descriptor families and the model-level mapping (``io/``) compose these. Our parameter leaves keep
DeePMD's names (``w``, ``b``, ``idt``), so each reader and writer is a few lines.
"""

from __future__ import annotations

import numpy as np

from dpa2_jax.errors import ConfigError
from dpa2_jax.typing import Params


# ----------------------------------------------------------------------------- reading
def check_version(d: dict, what: str, newest: int) -> None:
    """ConfigError if ``d`` was serialized by a newer DeePMD-kit than we read."""
    version = d.get("@version", 1)
    if version > newest:
        raise ConfigError(
            f"{what} has serialization @version {version}; dpa2_jax reads up to {newest}"
        )


def read_layer(d: dict) -> Params:
    """{"w", "b"?, "idt"?} of a serialized ``Layer``."""
    v = d["@variables"]
    return {k: np.asarray(v[k]) for k in ("w", "b", "idt") if v.get(k) is not None}


def read_network(d: dict) -> list[Params]:
    """The layers of a serialized ``EmbeddingNetwork`` / ``FittingNetwork``."""
    return [read_layer(layer) for layer in d["layers"]]


def read_collection(d: dict, what: str) -> list[Params]:
    """The one network of a type-independent ``NetworkCollection``."""
    nets = d["networks"]
    if d.get("ndim", 0) != 0 or len(nets) != 1:
        raise ConfigError(f"{what}: only one network shared by all types is supported")
    return read_network(nets[0])


# ----------------------------------------------------------------------------- writing
def layer_dict(p: Params, act: str, resnet: bool, precision: str) -> dict:
    """A serialized ``Layer``."""
    return {
        "@class": "Layer",
        "@version": 2,
        "bias": p.get("b") is not None,
        "use_timestep": p.get("idt") is not None,
        "activation_function": act,
        "resnet": resnet,
        "precision": precision,
        "trainable": True,
        "@variables": {
            k: (np.asarray(p[k]) if p.get(k) is not None else None) for k in ("w", "b", "idt")
        },
    }


def linear_dict(p: Params, precision: str) -> dict:
    """A serialized ``Layer`` without activation or residual (projections, maps)."""
    return layer_dict(p, "none", False, precision)


def embedding_net_dict(layers: list[Params], act: str, resnet_dt: bool, precision: str) -> dict:
    """A serialized ``EmbeddingNetwork`` (every layer residual where widths allow)."""
    return {
        "@class": "EmbeddingNetwork",
        "@version": 2,
        "in_dim": int(np.shape(layers[0]["w"])[0]),
        "neuron": [int(np.shape(p["w"])[1]) for p in layers],
        "activation_function": act,
        "resnet_dt": resnet_dt,
        "bias": layers[0].get("b") is not None,
        "precision": precision,
        "layers": [layer_dict(p, act, True, precision) for p in layers],
    }


def fitting_net_dict(layers: list[Params], act: str, resnet_dt: bool, precision: str) -> dict:
    """A serialized ``FittingNetwork`` (residual hidden layers, linear output layer)."""
    hidden, out = layers[:-1], layers[-1]
    return {
        "@class": "FittingNetwork",
        "@version": 1,
        "in_dim": int(np.shape(layers[0]["w"])[0]),
        "out_dim": int(np.shape(out["w"])[1]),
        "neuron": [int(np.shape(p["w"])[1]) for p in hidden],
        "activation_function": act,
        "resnet_dt": resnet_dt,
        "precision": precision,
        "bias_out": True,
        "layers": [layer_dict(p, act, True, precision) for p in hidden]
        + [linear_dict(out, precision)],
    }


def collection_dict(net: dict, ntypes: int, network_type: str) -> dict:
    """A ``NetworkCollection`` holding one network shared by all types."""
    return {
        "@class": "NetworkCollection",
        "@version": 1,
        "ndim": 0,
        "ntypes": ntypes,
        "network_type": network_type,
        "networks": [net],
    }


def env_mat_dict(rcut: float, rcut_smth: float, protection: float = 0.0) -> dict:
    """A serialized ``EnvMat`` (the smooth switch's cutoffs)."""
    return {
        "rcut": rcut, "rcut_smth": rcut_smth, "protection": protection, "use_exp_switch": False
    }  # fmt: skip
