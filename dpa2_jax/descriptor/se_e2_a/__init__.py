"""The se_e2_a (DeepPot-SE, Zhang et al., NeurIPS 2018) descriptor family: per-type embedding
nets of the normalised 1/r, contracted with the environment matrix. The cheap student model
for distillation. ``descriptor.py`` holds the formula; ``tabulate.py`` its compression
(``compress``: the embedding nets replaced by quintic tables, as ``dp compress``)."""

from dpa2_jax.descriptor.family import DescriptorFamily
from dpa2_jax.descriptor.se_e2_a import deepmd, descriptor
from dpa2_jax.descriptor.se_e2_a.config import SeE2AConfig
from dpa2_jax.descriptor.se_e2_a.tabulate import compress

FAMILY = DescriptorFamily.from_modules(
    "se_e2_a", SeE2AConfig, descriptor, deepmd, compress=compress, mixed_types=False
)

__all__ = ["FAMILY", "SeE2AConfig"]
