"""Type embedding: T_t = N(e_t), one row per type plus a zero padding row.

Matches DeePMD's ``TypeEmbedNet``: a one-layer linear network (with the network's residual rule,
so tebd_dim == n_in or 2 n_in adds the input) over

  * e_t = one_hot(t)                     [n_type]   by default, or
  * e_t = econf(type_map[t])             [118]      with ``use_econf_tebd``: the element's
    ground-state orbital occupations, two +-1 entries per orbital (0 -> -1 -1, 1 -> -1 +1,
    2 -> +1 +1) over 1s 2s 2p ... 7p (59 orbitals), scaled by 1/sqrt(118) to unit length.

The occupations come from ``dpa2_jax/data/econf.json`` (made by scripts/make_econf_table.py
from the mendeleev package; its header says how). The padding type never enters the network.
"""

from __future__ import annotations

import functools
import importlib.resources
import json

import jax.numpy as jnp
import numpy as np

from dpa2_jax.errors import ConfigError
from dpa2_jax.nn import init_network, network
from dpa2_jax.nn.mlp import residual_matrix
from dpa2_jax.typing import Array, Params, Rng

# orbital occupation (0, 1, 2) -> its (spin down, spin up) entries
_SPIN_ENTRIES = {"0": (-1.0, -1.0), "1": (-1.0, 1.0), "2": (1.0, 1.0)}


@functools.cache
def econf_occupations() -> dict[str, str]:
    """{element symbol: one digit (0, 1, 2) per orbital, 1s first} from the packaged table."""
    text = importlib.resources.files("dpa2_jax.data").joinpath("econf.json").read_text()
    return json.loads(text)["occupations"]


def econf_width() -> int:
    """Length of an electron-configuration vector (118: two spins x 59 orbitals)."""
    return 2 * len(next(iter(econf_occupations().values())))


def econf_vectors(type_map) -> np.ndarray:
    """[n_type, 118] float64: the unit-length electron-configuration vector of each element."""
    table = econf_occupations()
    unknown = [t for t in type_map if t not in table]
    if unknown:
        raise ConfigError(
            f"use_econf_tebd needs element symbols in type_map, but {unknown} "
            f"{'is' if len(unknown) == 1 else 'are'} not an element with a known electron "
            "configuration (symbols are case sensitive, e.g. 'Fe')"
        )
    spins = np.array(
        [[x for o in table[t] for x in _SPIN_ENTRIES[o]] for t in type_map], dtype=np.float64
    )
    return spins / np.sqrt(spins.shape[-1])


def inputs(ntypes: int, type_map=None) -> np.ndarray:
    """[n_type, n_in] float64 network inputs: one-hot rows, or with a ``type_map`` (only for
    ``use_econf_tebd``) the econf vectors of its elements."""
    if type_map is None:
        return np.eye(ntypes)
    if len(type_map) != ntypes:
        raise ConfigError(f"type_map {list(type_map)} does not have ntypes={ntypes} entries")
    return econf_vectors(type_map)


def init(rng: Rng, n_in: int, tebd_dim: int, bias: bool, dtype) -> list[Params]:
    """n_in: n_type (one-hot inputs) or ``econf_width()``."""
    return init_network(rng, n_in, [tebd_dim], bias=bias, dtype=dtype)


def change_type_map(layers: list[Params], index, rng: Rng) -> list[Params]:
    """The one-hot embedding's layer for a new type map: each kept element's row of the table
    (weights plus the residual term, which depends on the number of types) is carried over
    exactly; new elements (``index`` -1; else the old type) get table rows drawn uniformly in
    [0, 1) (DeePMD-kit's ``change_type_map`` draws them before taking the new residual off the
    weights)."""
    [layer] = layers
    w = np.asarray(layer["w"])  # [old ntypes, tebd_dim]
    width = w.shape[1]
    table = w + residual_matrix(w.shape[0], width)  # [old ntypes, tebd_dim] without the bias
    new_res = residual_matrix(len(index), width)
    rows = [(table[i] if i >= 0 else rng.random(width)) - new_res[t] for t, i in enumerate(index)]
    return [{**layer, "w": np.array(rows, dtype=w.dtype)}]


def apply(layers: list[Params], e: np.ndarray) -> Array:
    """e: [n_type, n_in] from ``inputs``. Returns [n_type + 1, tebd_dim]; the last row
    (padding) is zero."""
    table = network(layers, jnp.asarray(e, dtype=layers[0]["w"].dtype), "linear")
    return jnp.concatenate([table, jnp.zeros_like(table[:1])], axis=0)
