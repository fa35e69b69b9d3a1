"""Model compression of se_e2_a: each embedding net N(s) replaced by a piecewise quintic table
(DeePMD-kit's ``dp compress``; ``DPTabulate`` in deepmd/utils/tabulate.py and its evaluation
``tabulate_fusion`` in deepmd/dpmodel/utils/tabulate.py, both of DeePMD-kit 3.2.0).

Range. The net's input is s~ = (s(r) - davg) / dstd, the first column of R~. It is smallest
for an empty slot or a neighbor at the cutoff (s = 0) and largest at the closest pair distance
d_min of the training data (s(r)/r falls with r). Per center type t, as DeePMD's
``_get_env_mat_range``, rounded outwards to integers:

    lower_t = floor(-davg_t / dstd_t)     upper_t = ceil((sw(d_min) / (d_min + p) - davg_t) / dstd_t)

A net shared by several center types (``type_one_side``) takes the widest range over the center
types it serves. (DeePMD's PyTorch path also lets the angular columns' statistics widen
``upper``; we use the radial column, the only one the net reads.)

Grid. ``stride1`` on [lower, upper] (upper raised to a whole number of strides), then
``stride2`` from upper up to ``extrapolate * upper`` (also raised to a whole number of strides):

    knots  x_k = lower + k stride1 (k <= n1),   then   upper + k stride2 (k <= n2)

Polynomial. On each interval [x_k, x_k + h], with dx = x - x_k and every output channel apart,

    G(x) = c0 + c1 dx + c2 dx^2 + c3 dx^3 + c4 dx^4 + c5 dx^5

the quintic Hermite interpolant: value, slope and curvature of the net (JAX forward-mode
autodiff of ``nn.network``) match at both ends, so G is C2 across knots (smooth forces and
Hessians). Its error is O(h^6 |N^(6)|).

Outside the table (s~ < lower or s~ >= extrapolate * upper): continued linearly from the
nearest end, G(x) = P(x_end) + P'(x_end) (x - x_end), as DeePMD-kit 3.2.0's ``tabulate_fusion``
(C1). (DeePMD's older C++ kernel, ``locate_xx_se_a``, holds G constant instead.) Below lower
cannot happen with the data's own statistics (lower is at most -davg/dstd, the value of
s = 0); above the table means a pair closer than d_min / extrapolate-ish, far outside the data.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dpa2_jax.descriptor.env_mat import switch_function
from dpa2_jax.descriptor.se_e2_a.config import SeE2AConfig
from dpa2_jax.errors import ConfigError
from dpa2_jax.nn import network
from dpa2_jax.typing import Array, Params

_SLACK = 1e-9  # strides counted with this tolerance: (upper - lower) / stride = 399.99999...


# ----------------------------------------------------------------------------- range
def table_range(block: Params, cfg: SeE2AConfig, min_dist: float) -> tuple[np.ndarray, ...]:
    """(lower, upper) [n_embeddings] of each embedding net's input (module docstring).

    Args:
      block: the descriptor's ``block`` params (``davg``/``dstd`` [ntypes, sel, 4]).
      min_dist: the closest pair distance of the training data [Angstrom].
    """
    davg = np.asarray(block["davg"], np.float64)[..., 0]  # [ntypes, sel]
    dstd = np.asarray(block["dstd"], np.float64)[..., 0]
    s_max = switch_function(np.float64(min_dist), cfg.rcut_smth, cfg.rcut) / (
        min_dist + cfg.env_protection
    )
    low = np.floor((-davg / dstd).min(axis=1))  # [ntypes] per center type
    high = np.ceil(((s_max - davg) / dstd).max(axis=1))
    n = cfg.ntypes
    if not cfg.type_one_side:  # net ti + ntypes * tj: the center type ti's range
        return np.tile(low, n), np.tile(high, n)
    lower, upper = np.empty(n), np.empty(n)
    for tj in range(n):  # net tj serves every center type not excluded with tj
        centers = [ti for ti in range(n) if (ti, tj) not in cfg.excluded_pairs] or list(range(n))
        lower[tj], upper[tj] = low[centers].min(), high[centers].max()
    return lower, upper


# ----------------------------------------------------------------------------- tables
def net_derivatives(layers: Sequence[Params], act: str, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Value, first and second derivative of a 1 -> ng embedding net at points x [k], each
    [k, ng] float64, by forward-mode autodiff of ``network`` (each point is independent, so a
    tangent of ones gives every point's own derivative)."""
    with jax.enable_x64(True):  # tables are built in float64 whatever the model's precision
        layers64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), list(layers))
        x = jnp.asarray(x, jnp.float64)
        ones = jnp.ones_like(x)

        def value(x):
            return network(layers64, x[:, None], act)  # [k, ng]

        def slope(x):
            return jax.jvp(value, (x,), (ones,))[1]

        v, d1 = jax.jvp(value, (x,), (ones,))
        d2 = jax.jvp(slope, (x,), (ones,))[1]
        return np.asarray(v), np.asarray(d1), np.asarray(d2)


def quintic_hermite(y: np.ndarray, d1: np.ndarray, d2: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Coefficients [n_interval, ng, 6] (c0..c5 in powers of dx) of the quintics matching
    value y, slope d1 and curvature d2 [n_interval + 1, ng] at both ends of intervals of
    widths h [n_interval]."""
    h = h[:, None]  # [n_interval, 1]
    y0, y1, a0, a1, b0, b1 = y[:-1], y[1:], d1[:-1], d1[1:], d2[:-1], d2[1:]
    dy = y1 - y0  # [n_interval, ng]
    c3 = (20 * dy - (8 * a1 + 12 * a0) * h - (3 * b0 - b1) * h**2) / (2 * h**3)
    c4 = (-30 * dy + (14 * a1 + 16 * a0) * h + (3 * b0 - 2 * b1) * h**2) / (2 * h**4)
    c5 = (12 * dy - 6 * (a1 + a0) * h + (b1 - b0) * h**2) / (2 * h**5)
    return np.stack([y0, a0, 0.5 * b0, c3, c4, c5], axis=-1)


def table_grid(
    lower: float, upper: float, stride1: float, stride2: float, extrapolate: float
) -> np.ndarray:
    """[lower, upper, table_max, stride1, stride2] of a table: upper raised to a whole number
    of stride1 above lower, table_max to a whole number of stride2 above that (at least one)."""
    if not (stride1 > 0 and stride2 > 0 and upper > lower and extrapolate >= 1):
        raise ConfigError(
            f"compress: need stride1 > 0, stride2 > 0, upper > lower, extrapolate >= 1; got "
            f"stride1={stride1}, stride2={stride2}, lower={lower}, upper={upper}, "
            f"extrapolate={extrapolate}"
        )
    n1 = int(np.ceil((upper - lower) / stride1 - _SLACK))
    top = lower + n1 * stride1
    n2 = max(1, int(np.ceil((extrapolate * upper - top) / stride2 - _SLACK)))
    return np.array([lower, top, top + n2 * stride2, stride1, stride2], np.float64)


def knots(grid: np.ndarray) -> np.ndarray:
    """The table's knots [n_interval + 1], computed as ``tabulated_embedding`` locates them."""
    lower, upper, top, stride1, stride2 = grid
    n1 = int(round((upper - lower) / stride1))
    n2 = int(round((top - upper) / stride2))
    fine = lower + np.arange(n1 + 1) * stride1
    return np.concatenate([fine[:-1], upper + np.arange(n2 + 1) * stride2])


def build_tables(
    params: Params,
    cfg: SeE2AConfig,
    lower: float | Sequence[float],
    upper: float | Sequence[float],
    stride1: float = 0.01,
    stride2: float = 0.1,
    extrapolate: float = 5,
) -> list[dict[str, np.ndarray]]:
    """One table per embedding net (``block["embeddings"]`` order).

    Args:
      params: the descriptor params ({"block": {"embeddings", ...}}).
      lower, upper: the tabulated range of s~, one for all nets or one per net
        (``table_range``).
      stride1, stride2: interval widths on [lower, upper] and beyond it (DeePMD: 0.01, 0.1).
      extrapolate: the table ends at extrapolate * upper.

    Returns:
      per net {"coef": [n_interval, ng, 6], "grid": [5] (``table_grid``)}, numpy float64.
    """
    nets = params["block"]["embeddings"]
    lower = np.broadcast_to(np.asarray(lower, np.float64), (len(nets),))
    upper = np.broadcast_to(np.asarray(upper, np.float64), (len(nets),))
    tables = []
    for k, layers in enumerate(nets):
        grid = table_grid(lower[k], upper[k], stride1, stride2, extrapolate)
        x = knots(grid)  # [n_interval + 1]
        y, d1, d2 = net_derivatives(layers, cfg.activation_function, x)
        tables.append({"coef": quintic_hermite(y, d1, d2, np.diff(x)), "grid": grid})
    return tables


# ----------------------------------------------------------------------------- evaluation
def _value_and_slope(coef: Array, grid: Array, s: Array) -> tuple[Array, Array]:
    """G(s) and dG/ds [..., ng]: one gather of the interval's coefficients, Horner for both."""
    lower, upper, top, stride1, stride2 = (grid[k] for k in range(5))
    n1 = jnp.round((upper - lower) / stride1)
    inside = jnp.clip(s, lower, top)  # the table's own domain
    fine = jnp.floor((inside - lower) / stride1)
    coarse = n1 + jnp.floor((inside - upper) / stride2)
    idx = jnp.clip(jnp.where(inside < upper, fine, coarse), 0, coef.shape[0] - 1)
    start = jnp.where(idx < n1, lower + idx * stride1, upper + (idx - n1) * stride2)
    dx = (inside - jax.lax.stop_gradient(start))[..., None]  # [..., 1]
    c = jnp.swapaxes(coef, 1, 2)[idx.astype(jnp.int32)]  # [..., 6, ng]: powers contiguous
    value = c[..., 5, :]
    slope = 5 * c[..., 5, :]
    for k in (4, 3, 2, 1):  # Horner: value and slope of the quintic at dx
        value = value * dx + c[..., k, :]
        slope = slope * dx + k * c[..., k, :]
    value = value * dx + c[..., 0, :]  # [..., ng]
    return value + slope * (s - inside)[..., None], slope  # linear beyond the table (C1)


@jax.custom_jvp
def _tabulated(coef: Array, grid: Array, s: Array) -> Array:
    return _value_and_slope(coef, grid, s)[0]


@_tabulated.defjvp
def _tabulated_jvp(primals, tangents):
    # The slope comes with the value, so reverse mode keeps [..., ng] slopes, not the
    # [..., ng, 6] gathered coefficients. The table is a constant: no tangent for it.
    coef, grid, s = primals
    value, slope = _value_and_slope(coef, grid, s)
    return value, slope * tangents[2][..., None]


def tabulated_embedding(table: Params, s: Array) -> Array:
    """G = N(s) from a table (module docstring), jittable and differentiable in s (to any
    order; not in the table, which is treated as a constant).

    Args:
      table: {"coef": [n_interval, ng, 6], "grid": [5]} from ``build_tables``.
      s: [...] inputs s~.

    Returns:
      [..., ng]
    """
    return _tabulated(jnp.asarray(table["coef"]), jnp.asarray(table["grid"]), s)


# ----------------------------------------------------------------------------- entry point
def compress(
    params: Params,
    cfg: SeE2AConfig,
    min_dist: float,
    stride: float = 0.01,
    extrapolate: float = 5,
    stride2: float | None = None,
) -> Params:
    """The descriptor params with ``block["tables"]`` added (``dp compress``'s defaults: fine
    stride 0.01, coarse stride 10x, table to 5x the data's upper bound). The nets stay, so
    exporting the model writes the uncompressed nets; the tables are a cache of them.

    Args:
      params: descriptor params ({"block": {"embeddings", "davg", "dstd"}}).
      min_dist: the training data's closest pair distance [Angstrom]
        (``min_neighbor_distance``).
    """
    block = params["block"]
    lower, upper = table_range(block, cfg, min_dist)
    tables = build_tables(
        params, cfg, lower, upper, stride, 10 * stride if stride2 is None else stride2, extrapolate
    )
    return {**params, "block": {**block, "tables": tables}}
