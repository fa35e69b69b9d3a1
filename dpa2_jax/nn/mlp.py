"""DeePMD-style dense layers and networks as pure functions.

A layer's parameters are a dict ``{"w": [d_in, d_out], "b": [d_out], "idt": [d_out]}`` where
``b`` and ``idt`` (the "timestep" scale of a residual layer) are optional. One layer computes

    y = r(x) + idt * act(x @ w + b),

with the residual r(x) = x when d_out == d_in, [x, x] when d_out == 2 d_in, and nothing
otherwise (DeePMD's ``NativeLayer.call`` with ``resnet=True``). Embedding networks use the
residual on every layer; fitting networks on every hidden layer, with a plain linear output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dpa2_jax.errors import ConfigError
from dpa2_jax.typing import Array, Params, Rng


def _gelu_tanh(x: Array) -> Array:
    # DeePMD's "gelu" is the tanh approximation.
    return 0.5 * x * (1.0 + jnp.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def _silut(threshold: float) -> Callable[[Array], Array]:
    sig = 1.0 / (1.0 + np.exp(-threshold))
    slope = sig + threshold * sig * (1.0 - sig)
    const = threshold * sig

    def fn(x: Array) -> Array:
        return jnp.where(
            x < threshold, x * jax.nn.sigmoid(x), jnp.tanh(slope * (x - threshold)) + const
        )

    return fn


_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": lambda x: x * (x > 0).astype(x.dtype),
    "gelu": _gelu_tanh,
    "gelu_tf": _gelu_tanh,
    "relu6": lambda x: jnp.clip(x, 0.0, 6.0),
    "softplus": jax.nn.softplus,
    "sigmoid": jax.nn.sigmoid,
    "silu": lambda x: x * jax.nn.sigmoid(x),
    "none": lambda x: x,
    "linear": lambda x: x,
}


def activation(name: str) -> Callable[[Array], Array]:
    """Returns the activation function called ``name`` (DeePMD's names, case-insensitive)."""
    key = name.lower()
    if key in _ACTIVATIONS:
        return _ACTIVATIONS[key]
    if key.startswith(("silut", "custom_silu")):
        return _silut(float(key.split(":")[-1]) if ":" in key else 3.0)
    raise ConfigError(
        f"activation_function {name!r} is not supported; choose one of {sorted(_ACTIVATIONS)}, "
        "silut or silut:THRESHOLD"
    )


def check_activation(name: str) -> str:
    """Raises ConfigError for an unknown activation; returns the name."""
    activation(name)
    return name


def has_residual(d_in: int, d_out: int) -> bool:
    """Whether a residual layer d_in -> d_out adds its input (d_out = d_in or 2 d_in)."""
    return d_out in (d_in, 2 * d_in)


def residual_matrix(d_in: int, d_out: int) -> np.ndarray:
    """[d_in, d_out] R with r(x) = x @ R: the residual a layer d_in -> d_out adds (module
    docstring), as a matrix."""
    eye = np.eye(d_in)
    if d_out == d_in:
        return eye
    if d_out == 2 * d_in:
        return np.concatenate([eye, eye], axis=1)
    return np.zeros((d_in, d_out))


def dense(params: Params, x: Array, act: str = "none", resnet: bool = False) -> Array:
    """One DeePMD layer. x: [..., d_in] -> [..., d_out]."""
    w = params["w"]
    # A 2-D product: XLA:CPU runs [..., d_in] @ w with leading batch axes far slower.
    y = (x.reshape(-1, w.shape[0]) @ w).reshape(*x.shape[:-1], w.shape[1])
    if params.get("b") is not None:
        y = y + params["b"]
    y = activation(act)(y)
    if params.get("idt") is not None:
        y = y * params["idt"]
    if resnet:
        d_in, d_out = w.shape
        if d_out == d_in:
            y = y + x
        elif d_out == 2 * d_in:  # y + [x, x], without materialising the concatenation
            y = (y.reshape(*y.shape[:-1], 2, d_in) + x[..., None, :]).reshape(y.shape)
    return y


def network(layers: Sequence[Params], x: Array, act: str, linear_output: bool = False) -> Array:
    """An embedding network (every layer residual, activated), or with ``linear_output`` a
    fitting network whose last layer is linear without residual. x: [..., d_in]."""
    n = len(layers)
    for k, layer in enumerate(layers):
        if linear_output and k == n - 1:
            x = dense(layer, x, "none", resnet=False)
        else:
            x = dense(layer, x, act, resnet=True)
    return x


def init_dense(
    rng: Rng,
    d_in: int,
    d_out: int,
    bias: bool = True,
    timestep: bool = False,
    dtype: jnp.dtype = jnp.float64,
    stddev: float = 1.0,
) -> Params:
    """Initial parameters of a layer: w ~ N(0, stddev^2 / (d_in + d_out)), b ~ N(0, 1),
    idt ~ N(0.1, 0.001^2), the initialisation DeePMD uses."""
    w = rng.standard_normal((d_in, d_out)) * stddev / np.sqrt(d_in + d_out)
    params: Params = {"w": w.astype(dtype)}
    if bias:
        params["b"] = rng.standard_normal(d_out).astype(dtype)
    if timestep:
        params["idt"] = (0.1 + 0.001 * rng.standard_normal(d_out)).astype(dtype)
    return params


def init_network(
    rng: Rng,
    d_in: int,
    neuron: Sequence[int],
    resnet_dt: bool = False,
    bias: bool = True,
    d_out: int | None = None,
    dtype: jnp.dtype = jnp.float64,
) -> list[Params]:
    """Layers of a network d_in -> neuron[0] -> ... (-> d_out through a linear layer)."""
    widths = [d_in, *neuron]
    # As DeePMD, a timestep scale only where the residual connection exists.
    layers = [
        init_dense(
            rng, widths[k], widths[k + 1], bias,
            resnet_dt and widths[k + 1] in (widths[k], 2 * widths[k]), dtype,
        )
        for k in range(len(neuron))
    ]  # fmt: skip
    if d_out is not None:
        layers.append(init_dense(rng, widths[-1], d_out, True, False, dtype))
    return layers


def first_layer_split(layer: Params, widths: Sequence[int]) -> list[Array]:
    """Splits a layer's weight rows by input blocks of the given widths."""
    bounds = np.cumsum([0, *widths])
    return [layer["w"][bounds[k] : bounds[k + 1]] for k in range(len(widths))]


def dense_from_projections(layer: Params, pre: Array, act: str) -> Array:
    """Finishes a layer whose x @ w was assembled from per-block projections (no residual:
    only valid when the layer's input width differs from its output width and its double)."""
    d_in, d_out = layer["w"].shape
    assert d_out not in (d_in, 2 * d_in), "residual layers need the explicit input"
    if layer.get("b") is not None:
        pre = pre + layer["b"]
    y = activation(act)(pre)
    if layer.get("idt") is not None:
        y = y * layer["idt"]
    return y
