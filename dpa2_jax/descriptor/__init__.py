"""The DPA-2 descriptor: graph -> per-atom descriptor."""

from dpa2_jax.descriptor.config import DescriptorConfig, RepformerConfig, RepinitConfig

__all__ = ["DescriptorConfig", "RepformerConfig", "RepinitConfig"]
