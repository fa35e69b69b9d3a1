"""The DPA-2 descriptor family (Zhang et al., npj Comput. Mater. 2024): repinit, optional
three-body, repformer layers. ``descriptor.py`` composes the blocks in the paper's order."""

from dpa2_jax.descriptor.dpa2 import deepmd, descriptor
from dpa2_jax.descriptor.dpa2.config import (
    DescriptorConfig,
    RepformerConfig,
    RepinitConfig,
    config_from_dict,
    config_to_dict,
)
from dpa2_jax.descriptor.family import DescriptorFamily

FAMILY = DescriptorFamily.from_modules(
    "dpa2", DescriptorConfig, descriptor, deepmd,
    config_from_dict=config_from_dict, config_to_dict=config_to_dict,
)  # fmt: skip

__all__ = ["FAMILY", "DescriptorConfig", "RepformerConfig", "RepinitConfig"]
