"""DeePMD-kit input JSON (the ``model`` section) -> ModelConfig.

Accepts the options DeePMD-kit 3.2.0 documents for a ``dpa2`` descriptor and an ``ener``
fitting net (names and defaults kept); anything else is rejected with a ConfigError naming it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dpa2_jax.descriptor.config import DescriptorConfig, RepformerConfig, RepinitConfig
from dpa2_jax.errors import ConfigError
from dpa2_jax.fitting.energy import FittingConfig
from dpa2_jax.model.config import DEFAULT_HEAD, ModelConfig

# Options DeePMD accepts that change nothing numerically here.
_IGNORED = {"seed", "trainable", "type", "_comment", "type_map"}
_ALIASES = {"repformer": {"sel": "nsel"}, "repinit": {"sel": "nsel"}}


def _options(cls, section: dict, what: str, ignore=()) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for key, value in section.items():
        key = _ALIASES.get(what, {}).get(key, key)
        if key in _IGNORED or key in ignore:
            continue
        if key not in names:
            raise ConfigError(f"{what}: option {key!r} is not supported by dpa2_jax")
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def model_config(model: dict[str, Any], head: str = DEFAULT_HEAD) -> ModelConfig:
    """ModelConfig from DeePMD's ``model`` input section (single head)."""
    try:
        type_map = tuple(model["type_map"])
        desc = dict(model["descriptor"])
        fitting = dict(model.get("fitting_net", {}))
    except KeyError as err:
        raise ConfigError(f"model section is missing {err}") from err
    if desc.get("type") != "dpa2":
        raise ConfigError(f"descriptor type {desc.get('type')!r} is not supported (only 'dpa2')")
    if fitting.get("type", "ener") != "ener":
        raise ConfigError(
            f"fitting_net type {fitting.get('type')!r} is not supported (only 'ener')"
        )
    if desc.get("use_econf_tebd"):
        raise ConfigError("descriptor option use_econf_tebd=True is not supported")
    for key in ("numb_fparam", "numb_aparam", "dim_case_embd"):
        if fitting.get(key):
            raise ConfigError(f"fitting_net option {key}={fitting[key]} is not supported yet")
    for key in ("pair_exclude_types",):
        if model.get(key):
            raise ConfigError(f"model option {key} is not supported")
    top = {k: v for k, v in desc.items() if k not in ("repinit", "repformer")}
    top.pop("use_econf_tebd", None)
    if "exclude_types" in top:
        top["exclude_types"] = tuple(tuple(p) for p in top["exclude_types"])
    descriptor = DescriptorConfig(
        ntypes=len(type_map),
        repinit=RepinitConfig(**_options(RepinitConfig, desc.get("repinit", {}), "repinit")),
        repformer=RepformerConfig(
            **_options(RepformerConfig, desc.get("repformer", {}), "repformer")
        ),
        **_options(DescriptorConfig, top, "descriptor", ignore=("ntypes",)),
    )
    fit = _options(FittingConfig, fitting, "fitting_net", ignore=("rcond", "atom_ener"))
    fit.setdefault("precision", descriptor.precision)
    return ModelConfig(
        type_map=type_map,
        descriptor=descriptor,
        heads=((head, FittingConfig(**fit)),),
        atom_exclude_types=tuple(model.get("atom_exclude_types", ())),
    )
