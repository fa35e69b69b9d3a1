"""Static options of the DPA-2 descriptor, with DeePMD-kit's names and defaults.

These frozen dataclasses are hashable, so they enter ``jax.jit`` as static values. Every option
DeePMD-kit 3.2.0 accepts for DPA-2 is either here or rejected with a ConfigError by
``dpa2_jax.io.deepmd_config``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from dpa2_jax.descriptor import type_embedding
from dpa2_jax.errors import ConfigError
from dpa2_jax.nn.mlp import check_activation
from dpa2_jax.options import check_type_pairs

PRECISIONS = ("float64", "float32")


@dataclasses.dataclass(frozen=True)
class RepinitConfig:
    """The repinit block: DPA-1 embedding without attention, plus optional three-body."""

    rcut: float
    rcut_smth: float
    nsel: int
    neuron: tuple[int, ...] = (25, 50, 100)
    axis_neuron: int = 16
    tebd_dim: int = 8
    tebd_input_mode: str = "concat"
    set_davg_zero: bool = True
    activation_function: str = "tanh"
    type_one_side: bool = False
    resnet_dt: bool = False
    use_three_body: bool = False
    three_body_neuron: tuple[int, ...] = (2, 4, 8)
    three_body_sel: int = 40
    three_body_rcut: float = 4.0
    three_body_rcut_smth: float = 0.5

    def __post_init__(self):
        _check_cutoff("repinit", self.rcut, self.rcut_smth, self.nsel)
        if self.tebd_input_mode not in ("concat", "strip"):
            raise ConfigError(
                f"repinit.tebd_input_mode={self.tebd_input_mode!r}: use 'concat' or 'strip'"
            )
        check_activation(self.activation_function)
        if self.use_three_body:
            _check_cutoff(
                "repinit.three_body",
                self.three_body_rcut,
                self.three_body_rcut_smth,
                self.three_body_sel,
            )

    @property
    def dim_out(self) -> int:
        """Width of repinit's output (three-body output included)."""
        width = self.neuron[-1] * self.axis_neuron
        return width + (self.three_body_neuron[-1] if self.use_three_body else 0)


@dataclasses.dataclass(frozen=True)
class RepformerConfig:
    """The repformer stack (DeePMD's ``DescrptBlockRepformers``)."""

    rcut: float
    rcut_smth: float
    nsel: int
    nlayers: int = 3
    g1_dim: int = 128
    g2_dim: int = 16
    axis_neuron: int = 4
    direct_dist: bool = False
    update_g1_has_conv: bool = True
    update_g1_has_drrd: bool = True
    update_g1_has_grrg: bool = True
    update_g1_has_attn: bool = True
    update_g2_has_g1g1: bool = True
    update_g2_has_attn: bool = True
    update_h2: bool = False
    attn1_hidden: int = 64
    attn1_nhead: int = 4
    attn2_hidden: int = 16
    attn2_nhead: int = 4
    attn2_has_gate: bool = False
    activation_function: str = "tanh"
    update_style: str = "res_avg"
    update_residual: float = 0.001
    update_residual_init: str = "norm"
    set_davg_zero: bool = True
    trainable_ln: bool = True
    use_sqrt_nnei: bool = True
    g1_out_conv: bool = True
    g1_out_mlp: bool = True
    ln_eps: float = 1e-5

    def __post_init__(self):
        _check_cutoff("repformer", self.rcut, self.rcut_smth, self.nsel)
        if self.update_style not in ("res_avg", "res_incr", "res_residual"):
            raise ConfigError(
                f"repformer.update_style={self.update_style!r}: use 'res_avg', 'res_incr' "
                "or 'res_residual'"
            )
        if self.update_residual_init not in ("norm", "const"):
            raise ConfigError(
                f"repformer.update_residual_init={self.update_residual_init!r}: use 'norm' "
                "or 'const'"
            )
        if self.nlayers < 1:
            raise ConfigError(f"repformer.nlayers={self.nlayers}: must be at least 1")
        check_activation(self.activation_function)


@dataclasses.dataclass(frozen=True)
class DescriptorConfig:
    """The whole DPA-2 descriptor (DeePMD's ``DescrptDPA2``).

    With ``use_econf_tebd`` the type embedding reads each element's electron configuration
    instead of a one-hot vector, so the descriptor needs the model's ``type_map`` (element
    symbols, one per type); without it ``type_map`` stays None.
    """

    ntypes: int
    repinit: RepinitConfig
    repformer: RepformerConfig
    concat_output_tebd: bool = True
    precision: str = "float64"
    smooth: bool = True
    exclude_types: tuple[tuple[int, int], ...] = ()
    env_protection: float = 0.0
    add_tebd_to_repinit_out: bool = False
    use_tebd_bias: bool = False
    use_econf_tebd: bool = False
    type_map: tuple[str, ...] | None = None

    family: ClassVar[str] = "dpa2"

    def __post_init__(self):
        if self.use_econf_tebd:
            if self.type_map is None:
                raise ConfigError("descriptor.use_econf_tebd=True needs the model's type_map")
            type_embedding.inputs(self.ntypes, self.type_map)  # every entry an element
        elif self.type_map is not None:
            raise ConfigError("descriptor.type_map is only used with use_econf_tebd=True")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"descriptor.precision={self.precision!r}: use one of {PRECISIONS}")
        if not self.repinit.rcut > self.repformer.rcut:
            raise ConfigError(
                f"repinit.rcut={self.repinit.rcut} must be larger than "
                f"repformer.rcut={self.repformer.rcut}"
            )
        if not self.repinit.nsel > self.repformer.nsel:
            raise ConfigError(
                f"repinit.nsel={self.repinit.nsel} must be larger than "
                f"repformer.nsel={self.repformer.nsel}"
            )
        if self.repinit.use_three_body and (
            self.repinit.three_body_rcut > self.repinit.rcut
            or self.repinit.three_body_sel > self.repinit.nsel
        ):
            raise ConfigError(
                "repinit.three_body_rcut/three_body_sel must not exceed repinit.rcut/nsel"
            )
        check_type_pairs(self.exclude_types, self.ntypes, "descriptor.exclude_types")

    @property
    def rcut(self) -> float:
        """The largest cutoff: the one neighbor graphs must be built with [Angstrom]."""
        return self.repinit.rcut

    @property
    def sel(self) -> int:
        """Neighbor slots per atom of the graph the descriptor reads."""
        return self.repinit.nsel

    @property
    def dim_out(self) -> int:
        """Width of the per-atom descriptor."""
        return self.repformer.g1_dim + (self.repinit.tebd_dim if self.concat_output_tebd else 0)

    @property
    def tebd_inputs(self):
        """[n_type, n_in] float64 inputs of the type-embedding network (one-hot or econf)."""
        return type_embedding.inputs(self.ntypes, self.type_map if self.use_econf_tebd else None)

    @property
    def excluded_pairs(self) -> frozenset[tuple[int, int]]:
        """Both orders of every excluded (center type, neighbor type) pair."""
        return frozenset((a, b) for a, b in self.exclude_types) | frozenset(
            (b, a) for a, b in self.exclude_types
        )


def _check_cutoff(block: str, rcut: float, rcut_smth: float, nsel: int) -> None:
    if not 0 <= rcut_smth < rcut:
        raise ConfigError(
            f"{block}: rcut_smth={rcut_smth} must satisfy 0 <= rcut_smth < rcut={rcut}"
        )
    if nsel < 1:
        raise ConfigError(f"{block}: nsel={nsel} must be positive")
