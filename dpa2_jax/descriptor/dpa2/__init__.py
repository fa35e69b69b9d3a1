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

FAMILY = DescriptorFamily(
    name="dpa2",
    config_class=DescriptorConfig,
    init=descriptor.init,
    apply=descriptor.apply,
    compactable_blocks=descriptor.compactable_blocks,
    config_from_deepmd=deepmd.config_from_deepmd,
    params_from_deepmd=deepmd.params_from_deepmd,
    to_deepmd=deepmd.to_deepmd,
    config_from_input=deepmd.config_from_input,
    input_section=deepmd.input_section,
    config_from_dict=config_from_dict,
    config_to_dict=config_to_dict,
    statistics=descriptor.statistics,
    change_type_map=descriptor.change_type_map,
)

__all__ = ["FAMILY", "DescriptorConfig", "RepformerConfig", "RepinitConfig"]
