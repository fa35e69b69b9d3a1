"""DeePMD-kit's serialized model dict -> (ModelConfig, params); ``deepmd_export`` goes back.

The serialized dict is what ``deepmd.dpmodel`` models produce with ``serialize()`` and what a
`.dp` file holds under ``"model"``: a ``standard`` model with a descriptor of a registered
family (read by the family's own ``deepmd.py``) and an ``ener`` fitting. Our parameter leaves
keep DeePMD's names (``w``, ``b``, ``idt``, ``davg``, ``dstd``...), so this is a short mapping.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dpa2_jax.descriptor import family as descriptor_family
from dpa2_jax.errors import ConfigError
from dpa2_jax.fitting.energy import FittingConfig
from dpa2_jax.model.config import DEFAULT_HEAD, ModelConfig
from dpa2_jax.nn.deepmd import check_version, read_collection, read_network
from dpa2_jax.typing import Params

SUPPORTED_VERSIONS = {"Model": 2, "ener": 4}  # descriptors: their family's deepmd.py


# ----------------------------------------------------------------------------- reading
def fitting_config(d: dict) -> FittingConfig:
    """FittingConfig from a serialized ``ener`` fitting dict."""
    if d.get("type") != "ener":
        raise ConfigError(f"fitting type {d.get('type')!r} is not supported (only 'ener')")
    check_version(d, "fitting ener", SUPPORTED_VERSIONS["ener"])
    if d.get("dim_case_embd", 0):
        raise ConfigError(f"fitting option dim_case_embd={d['dim_case_embd']} is not supported yet")
    for key in ("atom_ener", "spin", "layer_name", "use_aparam_as_mask"):
        if d.get(key):
            raise ConfigError(f"fitting option {key}={d[key]} is not supported")
    return FittingConfig(
        neuron=tuple(d["neuron"]),
        resnet_dt=d["resnet_dt"],
        activation_function=d["activation_function"],
        precision=d["precision"],
        exclude_types=tuple(d.get("exclude_types", [])),
        mixed_types=d.get("mixed_types", True),
        numb_fparam=d.get("numb_fparam", 0),
        numb_aparam=d.get("numb_aparam", 0),
        default_fparam=d.get("default_fparam"),
    )


def fitting_statistics(d: dict, cfg: FittingConfig) -> Params:
    """The fparam/aparam normalisation of a serialized fitting: {name: [n]} per present block."""
    stats = {}
    for name, n in (("fparam", cfg.numb_fparam), ("aparam", cfg.numb_aparam)):
        for suffix in ("avg", "inv_std"):
            key = f"{name}_{suffix}"
            if n:
                value = np.asarray(d["@variables"][key])
                if value.shape != (n,):
                    raise ConfigError(f"fitting @variables {key}: expected shape [{n}], "
                                      f"got {list(value.shape)}")  # fmt: skip
                stats[key] = value
    return stats


def fitting_nets(d: dict, cfg: FittingConfig) -> Params:
    """{"layers"} (one net) or {"type_layers"} (one per type) of a serialized fitting."""
    if cfg.mixed_types:
        return {"layers": read_collection(d["nets"], "fitting nets")}
    nets = d["nets"]["networks"]
    if d["nets"].get("ndim") != 1 or any(n is None for n in nets):
        raise ConfigError("fitting nets: expected one network per type (ndim 1)")
    return {"type_layers": [read_network(n) for n in nets]}


def from_deepmd(model: dict, head: str = DEFAULT_HEAD) -> tuple[ModelConfig, Params]:
    """(ModelConfig, params) from a serialized DeePMD model (the ``"model"`` entry of a .dp)."""
    if model.get("@class") != "Model" or model.get("type") != "standard":
        raise ConfigError(
            f"model @class={model.get('@class')!r} type={model.get('type')!r} is not supported "
            "(only standard energy models)"
        )
    check_version(model, "model", SUPPORTED_VERSIONS["Model"])
    desc = model["descriptor"]
    family = descriptor_family(desc.get("type"))
    desc_cfg = family.deepmd_codec("config_from_deepmd")(desc)
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
        pair_exclude_types=tuple(tuple(p) for p in model.get("pair_exclude_types", [])),
    )
    fitting = model["fitting"]
    out_bias = np.asarray(model["@variables"]["out_bias"])  # [1, n_type, 1]
    params = {
        "descriptor": family.deepmd_codec("params_from_deepmd")(desc),
        "heads": {
            head: {
                "fitting": {
                    **fitting_nets(fitting, fit_cfg),
                    "bias_atom_e": np.asarray(fitting["@variables"]["bias_atom_e"]),
                    **fitting_statistics(fitting, fit_cfg),
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
