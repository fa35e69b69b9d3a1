"""ModelConfig: a descriptor shared by one or more named energy heads."""

from __future__ import annotations

import dataclasses
from typing import Any

from dpa2_jax.descriptor import family, family_of
from dpa2_jax.errors import ConfigError
from dpa2_jax.fitting.energy import FittingConfig
from dpa2_jax.options import dataclass_kwargs

DEFAULT_HEAD = "default"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Static description of a model; hashable, so it can be a static jit argument.

    Attributes:
      type_map: element symbols; atom type t is ``type_map[t]``.
      descriptor: the descriptor's options, a config of one of the families registered in
        ``dpa2_jax.descriptor`` (its ``family`` attribute names it).
      heads: ordered (name, fitting options) pairs; a single-task model has one head.
      atom_exclude_types: types whose atomic energy is zero (DeePMD's model-level option).
      pair_exclude_types: (t_i, t_j) type pairs removed from the neighbor list before the
        descriptor, both orders (DeePMD's model-level option; the sorted slots keep their
        places, as DeePMD's list keeps -1 holes).
    """

    type_map: tuple[str, ...]
    descriptor: Any
    heads: tuple[tuple[str, FittingConfig], ...] = ((DEFAULT_HEAD, FittingConfig()),)
    atom_exclude_types: tuple[int, ...] = ()
    pair_exclude_types: tuple[tuple[int, int], ...] = ()

    def __post_init__(self):
        pairs = tuple(tuple(int(t) for t in p) for p in self.pair_exclude_types)
        if any(len(p) != 2 for p in pairs):
            raise ConfigError(f"pair_exclude_types={list(pairs)}: expected pairs of type indices")
        object.__setattr__(self, "pair_exclude_types", pairs)
        if len(self.type_map) != self.descriptor.ntypes:
            raise ConfigError(
                f"type_map has {len(self.type_map)} elements but the descriptor has "
                f"ntypes={self.descriptor.ntypes}"
            )
        if len(set(self.type_map)) != len(self.type_map):
            raise ConfigError(f"type_map {list(self.type_map)} repeats an element")
        own = getattr(self.descriptor, "type_map", None)  # e.g. for econf type embeddings
        if own is not None and tuple(own) != self.type_map:
            raise ConfigError(
                f"the descriptor was built for type_map {list(own)}, the model has "
                f"{list(self.type_map)}"
            )
        names = [name for name, _ in self.heads]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"heads must be a non-empty list of distinct names, got {names}")

    @property
    def head_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.heads)

    def resolve_head(self, head: str | None) -> str:
        """The head called ``head``; None is allowed only for a single-head model."""
        if head is None:
            if len(self.heads) > 1:
                raise ConfigError(
                    f"this model has several heads {list(self.head_names)}: choose one with head="
                )
            return self.heads[0][0]
        if head not in self.head_names:
            raise ConfigError(f"unknown head {head!r}; this model has {list(self.head_names)}")
        return head

    def fitting(self, head: str) -> FittingConfig:
        return dict(self.heads)[self.resolve_head(head)]


def descriptor_config(section: dict, type_map) -> Any:
    """A descriptor config from DeePMD's ``descriptor`` input section (the family's
    ``config_from_input``), for a model of element symbols ``type_map``."""
    section = dict(section)
    if section.get("use_econf_tebd"):  # DeePMD-kit hands the descriptor the model's type map
        section["type_map"] = list(type_map)
    return family(section.get("type")).config_from_input(section, len(type_map))


def config_to_dict(cfg: ModelConfig) -> dict:
    """A JSON-ready dict of ``cfg`` (``model.json``); the descriptor as DeePMD-kit's input
    section (its family's ``input_section``), so a family has one codec for its options."""
    return {
        "type_map": list(cfg.type_map),
        "descriptor": family_of(cfg.descriptor).input_section(cfg.descriptor),
        "heads": [[name, dataclasses.asdict(fit)] for name, fit in cfg.heads],
        "atom_exclude_types": list(cfg.atom_exclude_types),
        **({"pair_exclude_types": [list(p) for p in cfg.pair_exclude_types]}
           if cfg.pair_exclude_types else {}),
    }  # fmt: skip


def config_from_dict(d: dict) -> ModelConfig:
    """Inverse of ``config_to_dict``; unknown keys raise ConfigError naming them."""
    try:
        type_map = tuple(d["type_map"])
        heads = tuple(
            (name, FittingConfig(**dataclass_kwargs(FittingConfig, fit, f"head {name}")))
            for name, fit in d["heads"]
        )
        return ModelConfig(
            type_map=type_map,
            descriptor=descriptor_config(d["descriptor"], type_map),
            heads=heads,
            atom_exclude_types=tuple(d.get("atom_exclude_types", ())),
            pair_exclude_types=tuple(tuple(p) for p in d.get("pair_exclude_types", ())),
        )
    except KeyError as err:
        raise ConfigError(f"model config is missing {err}") from err
