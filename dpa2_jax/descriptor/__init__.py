"""Descriptors: graph -> per-atom descriptor, one folder per family, looked up by name.

Adding a family: a folder defining a ``DescriptorFamily`` (see ``family.py``) and one line in
``FAMILIES`` (or, from outside the package, ``register(family)``).
"""

from __future__ import annotations

from dpa2_jax.descriptor import dpa2, se_e2_a
from dpa2_jax.descriptor.family import Block, DescriptorFamily, Layout
from dpa2_jax.errors import ConfigError

FAMILIES: dict[str, DescriptorFamily] = {
    dpa2.FAMILY.name: dpa2.FAMILY,
    **dict.fromkeys(se_e2_a.deepmd.TYPES, se_e2_a.FAMILY),  # DeePMD's name and alias
}


def register(fam: DescriptorFamily, *aliases: str) -> DescriptorFamily:
    """Adds ``fam`` to ``FAMILIES`` under its name (and ``aliases``); returns it."""
    for name in (fam.name, *aliases):
        FAMILIES[name] = fam
    return fam


def family(name: str) -> DescriptorFamily:
    """The family registered as ``name`` (DeePMD's descriptor ``type``)."""
    if name not in FAMILIES:
        raise ConfigError(
            f"descriptor type {name!r} is not supported (available: {sorted(FAMILIES)})"
        )
    return FAMILIES[name]


def family_of(cfg) -> DescriptorFamily:
    """The family of a descriptor config."""
    return family(cfg.family)


__all__ = ["Block", "DescriptorFamily", "FAMILIES", "Layout", "family", "family_of", "register"]
