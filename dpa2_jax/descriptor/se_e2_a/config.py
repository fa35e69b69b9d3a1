"""Static options of the se_e2_a (DeepPot-SE) descriptor, with DeePMD-kit's names and defaults.

DeePMD's ``sel`` is a list (slots per neighbor type); here it is ``type_sel``, because every
family's ``sel`` is the number of slots of the graph it reads: ``sum(type_sel)``. The JSON
forms (``model.json``, DeePMD's input and ``.dp``) keep the name ``sel``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from dpa2_jax.errors import ConfigError
from dpa2_jax.nn.mlp import check_activation
from dpa2_jax.options import check_type_pairs


@dataclasses.dataclass(frozen=True)
class SeE2AConfig:
    """DeePMD-kit's ``se_e2_a`` descriptor options (dpmodel/descriptor/se_e2_a.py)."""

    family: ClassVar[str] = "se_e2_a"

    ntypes: int
    rcut: float
    rcut_smth: float
    type_sel: tuple[int, ...]
    neuron: tuple[int, ...] = (24, 48, 96)
    axis_neuron: int = 8
    resnet_dt: bool = False
    type_one_side: bool = True
    exclude_types: tuple[tuple[int, int], ...] = ()
    env_protection: float = 0.0
    set_davg_zero: bool = False
    activation_function: str = "tanh"
    precision: str = "float64"

    def __post_init__(self):
        if not 0 <= self.rcut_smth < self.rcut:
            raise ConfigError(
                f"se_e2_a: rcut_smth={self.rcut_smth} must satisfy 0 <= rcut_smth < rcut={self.rcut}"
            )
        if len(self.type_sel) != self.ntypes or any(s < 0 for s in self.type_sel) or not self.sel:
            raise ConfigError(
                f"se_e2_a: sel={list(self.type_sel)} must give one non-negative count per type "
                f"({self.ntypes} types), not all zero"
            )
        if not self.neuron or not 0 < self.axis_neuron <= self.neuron[-1]:
            raise ConfigError(
                f"se_e2_a: axis_neuron={self.axis_neuron} must be in [1, neuron[-1]] "
                f"(neuron={list(self.neuron)})"
            )
        check_activation(self.activation_function)
        if self.precision not in ("float64", "float32"):
            raise ConfigError(f"se_e2_a: precision={self.precision!r}: use float64 or float32")
        check_type_pairs(self.exclude_types, self.ntypes, "se_e2_a: exclude_types")

    @property
    def sel(self) -> int:
        """Neighbor slots per atom of the graph the descriptor reads: sum over types."""
        return sum(self.type_sel)

    @property
    def dim_out(self) -> int:
        """Width of the per-atom descriptor: neuron[-1] * axis_neuron."""
        return self.neuron[-1] * self.axis_neuron

    @property
    def n_embeddings(self) -> int:
        """Embedding nets: one per neighbor type, or per (center, neighbor) type pair."""
        return self.ntypes if self.type_one_side else self.ntypes**2

    @property
    def excluded_pairs(self) -> frozenset[tuple[int, int]]:
        """Both orders of every excluded (center type, neighbor type) pair."""
        return frozenset((a, b) for a, b in self.exclude_types) | frozenset(
            (b, a) for a, b in self.exclude_types
        )
