"""How a repformer layer combines a representation with its updates u_1..u_m.

res_avg:      (x + sum_k u_k) / sqrt(m + 1)
res_incr:     x + sum_k u_k / sqrt(m)
res_residual: x + sum_k a_k * u_k       (a_k learnable vectors, DeePMD's *_residual)
"""

from __future__ import annotations

from collections.abc import Sequence

from dpa2_jax.typing import Array


def combine(style: str, x: Array, updates: Sequence[Array], scales: Sequence[Array] = ()) -> Array:
    """Applies ``style`` to x and its updates (``scales`` only for res_residual)."""
    if style == "res_avg":
        return (x + sum(updates)) / (len(updates) + 1) ** 0.5 if updates else x
    if style == "res_incr":
        return x + sum(updates) / len(updates) ** 0.5 if updates else x
    if style == "res_residual":
        if len(scales) != len(updates):
            raise ValueError(f"res_residual: {len(updates)} updates but {len(scales)} scales")
        for a, u in zip(scales, updates):
            x = x + a * u
        return x
    raise ValueError(f"unknown update_style {style!r}")
