"""DeePMD-kit input JSON (the ``model`` section) <-> ModelConfig.

Accepts the options DeePMD-kit 3.2.0 documents for the registered descriptor families (read by
each family's ``deepmd.py``) and an ``ener`` fitting net (names and defaults kept); anything
else is rejected with a ConfigError naming it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dpa2_jax.descriptor import family, family_of
from dpa2_jax.errors import ConfigError
from dpa2_jax.fitting.energy import FittingConfig
from dpa2_jax.model.config import DEFAULT_HEAD, ModelConfig, descriptor_config
from dpa2_jax.options import dataclass_kwargs

# fitting_net options DeePMD accepts that change nothing numerically here (dim_case_embd and
# use_aparam_as_mask only at their defaults, checked first).
_FITTING_IGNORED = {
    "type", "seed", "trainable", "_comment", "rcond", "atom_ener", "use_aparam_as_mask",
    "dim_case_embd",
}  # fmt: skip


def model_config(model: dict[str, Any], head: str = DEFAULT_HEAD) -> ModelConfig:
    """ModelConfig from DeePMD's ``model`` input section (single head)."""
    try:
        type_map = tuple(model["type_map"])
        desc = dict(model["descriptor"])
        fitting = dict(model.get("fitting_net", {}))
    except KeyError as err:
        raise ConfigError(f"model section is missing {err}") from err
    if fitting.get("type", "ener") != "ener":
        raise ConfigError(
            f"fitting_net type {fitting.get('type')!r} is not supported (only 'ener')"
        )
    if fitting.get("dim_case_embd"):
        raise ConfigError(
            f"fitting_net option dim_case_embd={fitting['dim_case_embd']} is not supported yet"
        )
    if fitting.get("use_aparam_as_mask"):
        raise ConfigError("fitting_net option use_aparam_as_mask=True is not supported")
    descriptor = descriptor_config(desc, type_map)
    fit = dataclass_kwargs(
        FittingConfig,
        {k: v for k, v in fitting.items() if k not in _FITTING_IGNORED},
        "fitting_net",
    )
    fit.setdefault("precision", descriptor.precision)
    fit["mixed_types"] = family(desc.get("type")).mixed_types  # DeePMD sets it from the descriptor
    if model.get("atom_exclude_types"):  # DeePMD's DPAtomicModel hands them to the fitting
        fit["exclude_types"] = tuple(model["atom_exclude_types"])
    return ModelConfig(
        type_map=type_map,
        descriptor=descriptor,
        heads=((head, FittingConfig(**fit)),),
        atom_exclude_types=tuple(model.get("atom_exclude_types", ())),
        pair_exclude_types=tuple(tuple(p) for p in model.get("pair_exclude_types", ())),
    )


def model_section(cfg: ModelConfig, head: str | None = None) -> dict[str, Any]:
    """DeePMD-kit's input ``model`` section describing one head of ``cfg``."""
    fit = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in dataclasses.asdict(cfg.fitting(cfg.resolve_head(head))).items()
        if k != "mixed_types"  # not an input option: DeePMD derives it from the descriptor
        and not (k in ("numb_fparam", "numb_aparam", "default_fparam") and not v)
    }
    section = {
        "type_map": list(cfg.type_map),
        "descriptor": family_of(cfg.descriptor).input_section(cfg.descriptor),
        "fitting_net": {"type": "ener", **fit},
    }
    if cfg.atom_exclude_types:
        section["atom_exclude_types"] = list(cfg.atom_exclude_types)
    if cfg.pair_exclude_types:
        section["pair_exclude_types"] = [list(p) for p in cfg.pair_exclude_types]
    return section
