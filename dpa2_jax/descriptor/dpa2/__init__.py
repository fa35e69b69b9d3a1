"""The DPA-2 descriptor family (Zhang et al., npj Comput. Mater. 2024): repinit, optional
three-body, repformer layers. ``descriptor.py`` composes the blocks in the paper's order."""

from dpa2_jax.descriptor.dpa2 import deepmd, descriptor
from dpa2_jax.descriptor.dpa2.config import DescriptorConfig, RepformerConfig, RepinitConfig
from dpa2_jax.descriptor.family import DescriptorFamily

FAMILY = DescriptorFamily.from_modules("dpa2", DescriptorConfig, descriptor, deepmd)

__all__ = ["FAMILY", "DescriptorConfig", "RepformerConfig", "RepinitConfig"]
