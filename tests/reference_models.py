"""Reference side of the DeePMD-kit parity tests.

This module builds randomly initialised DeePMD-kit 3.2.0 DPA-2 energy models,
stores them as native ``.dp`` files and evaluates them with DeePMD-kit's own
JAX backend (energy, forces, virial, atomic energies) and its numpy
``dpmodel`` backend (energies only, used as a cross-check).

DeePMD-kit is used here only as an oracle; nothing under ``dpa2_jax/`` may
import it.

DeePMD-kit API facts (checked against deepmd-kit 3.2.0, see ``reference_eval``)
------------------------------------------------------------------------------

Model construction / files
  * ``deepmd.dpmodel.model.model.get_model(model_section)`` builds a numpy
    ``EnergyModel`` from the ``"model"`` section of an input script
    (``type_map``, ``descriptor``, ``fitting_net``).  ``get_model`` fills in
    defaults, mutating its argument, so pass a deep copy.
  * ``model.serialize()`` gives a nested dict.  Variables live in
    ``"@variables"`` sub-dicts as numpy arrays (or ``None`` for absent ones,
    e.g. ``b``/``idt`` of bias-free layers, ``case_embd``, ``fparam_avg``);
    the ``res_residual`` update style stores *lists* of arrays
    (``g1_residual``/``g2_residual``/``h2_residual``).
  * A ``.dp`` file is HDF5 written by
    ``deepmd.dpmodel.utils.serialization.save_dp_model(filename, dict)``:
    arrays become datasets ``variable_NNNN`` and the JSON skeleton goes to the
    ``json`` attribute, merged with ``software``/``version``/``time`` that the
    saver adds itself.  The dict we save is
    ``{"backend": "DPModel", "model": serialized, "model_def_script": config,
    "@variables": {}}`` (the layout DeePMD's own converters use);
    ``load_dp_model(filename)`` returns it with the three meta keys added.
  * JAX model: ``deepmd.jax.model.base_model.BaseModel.deserialize(d["model"])``
    (after ``import deepmd.jax.model`` so that the ``"ener"`` model type is
    registered) -> ``deepmd.jax.model.ener_model.EnergyModel`` (a flax nnx
    module).  numpy model: ``deepmd.dpmodel.model.base_model.BaseModel
    .deserialize(d["model"])``.

Calling the model: ``model(coord, atype, box=box)`` (JAX, via ``__call__``)
or ``model.call(coord, atype, box=box)`` (numpy)
  * ``coord``: ``(nframes, natoms, 3)`` or flattened ``(nframes, natoms*3)``;
    both are accepted (it is reshaped internally).  Angstrom.
  * ``atype``: ``(nframes, natoms)`` integer, indices into ``type_map``.
  * ``box``: ``(nframes, 9)`` or ``(nframes, 3, 3)``, rows are the cell
    vectors (``box[f].reshape(3, 3)[i]`` is lattice vector ``i``).
  * non-periodic systems: ``box=None`` (no other flag).
  * no ``fparam``/``aparam`` are needed for these models.
  * the call builds its own extended (ghost) atoms and neighbour list
    (``neighbor_graph_method=None`` -> the dense nlist path for the
    dpmodel/jax backends; neighbours sorted by distance and truncated to
    ``sel``).

Output keys of ``EnergyModel.call`` (JAX backend; numpy gives the first two
and ``mask`` only -- no derivatives)
  * ``"energy"``      ``(nframes, 1)``            total energy = sum of atom_energy
  * ``"atom_energy"`` ``(nframes, natoms, 1)``    per-atom energy
  * ``"force"``       ``(nframes, natoms, 3)``    F = -dE/dr
  * ``"virial"``      ``(nframes, 9)``            row-major 3x3
  * ``"mask"``        ``(nframes, natoms)``       1 for real atoms
  * (``"atom_virial"`` only with ``do_atomic_virial=True``; internal names are
    ``energy_redu``/``energy_derv_r``/``energy_derv_c_redu``)

Virial sign convention: DeePMD computes, over all extended atoms a (local +
periodic images, with ``ff_a = -dE/dx_a``),
``virial[i, j] = sum_a ff_a[i] * x_a[j]``, i.e.
``W = -sum_a (dE/dr_a) (x) r_a``.  For a rotation-invariant energy W is
symmetric and equals ``-dE/d(eps)`` for the homogeneous strain
``x -> x (1 + eps)`` applied to coordinates *and* cell (checked numerically by
finite differences in ``check_virial_strain``).  Positive W = the system wants
to expand.  For ``box=None`` the virial is still returned (same formula,
no images).

Traps
  * Importing ``deepmd.jax`` sets GLOBAL jax config:
    ``jax_enable_x64=True`` and ``jax_default_matmul_precision="tensorfloat32"``
    (the latter only matters for float32 matmuls on GPU).  This module
    restores the previous matmul precision right after importing it, so that
    tests of dpa2_jax in the same process are not affected, and evaluates the
    reference inside ``jax.default_matmul_precision("tensorfloat32")`` to stay
    faithful to DeePMD.
  * The JAX force/virial are obtained with ``jax.vmap(jax.jacrev(...))`` over
    frames, so atom types are batch tracers inside the model.  For the
    configurations here this works; ``reference_eval`` nevertheless evaluates
    one frame at a time (nframes=1 per call) and concatenates.
  * Descriptor normalisation ``(R - davg) / dstd`` is applied to *every*
    neighbour slot, including padding slots (nlist == -1), whose
    environment row is 0 before normalisation: with a nonzero ``davg`` the
    ``sel - n_real`` padding slots contribute ``-davg/dstd`` rows (times the
    embedding of that row) to the repinit/three-body/repformer sums, and the
    repinit ``gr`` sums are divided by ``sel`` (not by the neighbour count).
    So ``sel`` is part of the model function.  ``build_random_dp_model``
    randomises ``davg`` (nonzero) unless ``zero_davg=True``.
  * ``activation_function="gelu"`` in DeePMD is the tanh approximation
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.
  * DeePMD 3.2.0 bug (g1_shape_tranform): the constructor makes it an
    Identity iff ``repinit.dim_out + three_body.dim_out == g1_dim`` but
    ``DescrptDPA2.deserialize`` tests ``repinit.dim_out != g1_dim`` (without the
    three-body part).  With ``use_three_body=True``:
    ``g1_dim == repinit.dim_out + three_body.dim_out`` -> deserialisation fails
    (KeyError '@variables');  ``g1_dim == repinit.dim_out`` -> deserialisation
    SILENTLY keeps a freshly initialised Linear instead of the saved weights.
    ``build_random_dp_model`` re-serialises the loaded model and raises in
    such cases.
  * Flags that only matter for training leave the evaluated function
    unchanged: ``trainable_ln=False`` still applies the stored LayerNorm
    ``w``/``b``; ``set_davg_zero`` only affects statistics;
    ``update_residual_init`` (norm/const) only the initial residual values.
  * ``use_econf_tebd=True``: the type-embedding input is a fixed 118-long
    electronic-configuration vector per element that DeePMD derives from
    ``type_map`` (``deepmd.utils.econf_embd``); it is NOT stored in the
    ``.dp`` file (only the ``(118, tebd_dim)`` weight is).
  * ``precision="float32"``: the model casts inputs to float32 internally and
    casts outputs back to the input precision (float64); agreement with a
    float64 computation is then only ~1e-6 relative.

Randomisation (``randomize_variables``)
  every array under every ``"@variables"`` key is replaced, keeping shape and
  dtype; ``None`` entries are left alone.  Rules (by variable name and the
  ``@class`` of the owning dict):
  * 2-D ``w``:  N(0, 1) / sqrt(fan_in), fan_in = w.shape[0]
  * 1-D ``w`` (LayerNorm scale):  U(0.5, 1.5)
  * ``b``:  N(0, 0.1^2)    (LayerNorm shift included)
  * ``idt`` (resnet timestep):  U(0.1, 1.0)
  * ``davg`` ``(ntypes, nnei, 4)``:  per type, radial component N(0, 0.1^2),
    vector components 0 (as DeePMD's statistics produce; a nonzero vector mean
    would break rotational invariance), constant over neighbour slots.
  * ``dstd``:  per type, radial U(0.5, 1.5), the three vector components one
    shared U(0.5, 1.5); constant over slots.
  * ``out_bias``, ``bias_atom_e``: N(0, 0.5^2);  ``out_std``: U(0.5, 1.5)
  * ``g1_residual``/``g2_residual``/``h2_residual`` (lists): U(0.05, 0.5)
  An unknown variable name raises, so nothing is silently left at its
  (often degenerate: zeros / ones / 1e-3) initial value.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
SYSTEMS_DIR = REPO_ROOT / "tests" / "systems"
REFERENCE_DIR = REPO_ROOT / "tests" / "reference"

# one type map for every model and geometry: water (O, H), the CHO molecule
# and the mixed small cell all map into it by element symbol.
TYPE_MAP = ["C", "H", "N", "O"]

TINY_DPA2: dict[str, Any] = {
    "type_map": TYPE_MAP,
    "descriptor": {
        "type": "dpa2",
        "repinit": {
            "rcut": 4.0,
            "rcut_smth": 0.5,
            "nsel": 30,
            "neuron": [6, 12],
            "axis_neuron": 3,
            "tebd_dim": 4,
            "tebd_input_mode": "concat",
            "set_davg_zero": True,
            "activation_function": "tanh",
            "resnet_dt": False,
            "type_one_side": False,
            "use_three_body": True,
            "three_body_neuron": [2, 4],
            "three_body_sel": 12,
            "three_body_rcut": 3.0,
            "three_body_rcut_smth": 2.5,
        },
        "repformer": {
            "rcut": 3.0,
            "rcut_smth": 2.5,
            "nsel": 16,
            "nlayers": 2,
            "g1_dim": 8,
            "g2_dim": 6,
            "axis_neuron": 2,
            "direct_dist": False,
            "update_g1_has_conv": True,
            "update_g1_has_drrd": True,
            "update_g1_has_grrg": True,
            "update_g1_has_attn": True,
            "update_g2_has_g1g1": True,
            "update_g2_has_attn": True,
            "update_h2": True,
            "attn1_hidden": 6,
            "attn1_nhead": 2,
            "attn2_hidden": 6,
            "attn2_nhead": 2,
            "attn2_has_gate": True,
            "activation_function": "tanh",
            "update_style": "res_avg",
            "update_residual": 0.001,
            "update_residual_init": "norm",
            "set_davg_zero": True,
            "trainable_ln": True,
            "use_sqrt_nnei": True,
            "g1_out_conv": True,
            "g1_out_mlp": True,
            "ln_eps": 1e-5,
        },
        "concat_output_tebd": True,
        "precision": "float64",
        "smooth": True,
        "exclude_types": [],
        "env_protection": 0.0,
        "add_tebd_to_repinit_out": False,
        "use_econf_tebd": False,
        "use_tebd_bias": False,
    },
    "fitting_net": {
        "type": "ener",
        "neuron": [8, 8],
        "resnet_dt": True,
        "activation_function": "tanh",
        "precision": "float64",
    },
}

# repinit output width of TINY_DPA2 = neuron[-1] * axis_neuron + three_body_neuron[-1]
TINY_REPINIT_OUT = 12 * 3 + 4


def _with(base: dict, changes: dict[str, Any]) -> dict:
    """Deep copy of ``base`` with ``{"a.b.c": value}`` changes applied."""
    cfg = copy.deepcopy(base)
    for dotted, value in changes.items():
        node = cfg
        keys = dotted.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = copy.deepcopy(value)
    return cfg


_D = "descriptor"
_RI = "descriptor.repinit"
_RF = "descriptor.repformer"
_FIT = "fitting_net"

# name -> one-option change (dotted paths) relative to TINY_DPA2
VARIANT_CHANGES: dict[str, dict[str, Any]] = {
    "base": {},
    "strip": {f"{_RI}.tebd_input_mode": "strip"},
    "no_three_body": {f"{_RI}.use_three_body": False},
    "res_incr": {f"{_RF}.update_style": "res_incr"},
    "res_residual_norm": {
        f"{_RF}.update_style": "res_residual",
        f"{_RF}.update_residual_init": "norm",
    },
    "res_residual_const": {
        f"{_RF}.update_style": "res_residual",
        f"{_RF}.update_residual_init": "const",
    },
    "no_sqrt_nnei": {f"{_RF}.use_sqrt_nnei": False},
    "no_g1_out_conv": {f"{_RF}.g1_out_conv": False},
    "no_g1_out_mlp": {f"{_RF}.g1_out_mlp": False},
    "no_g1_conv": {f"{_RF}.update_g1_has_conv": False},
    "no_g1_drrd": {f"{_RF}.update_g1_has_drrd": False},
    "no_g1_grrg": {f"{_RF}.update_g1_has_grrg": False},
    "no_g1_attn": {f"{_RF}.update_g1_has_attn": False},
    "no_g2_g1g1": {f"{_RF}.update_g2_has_g1g1": False},
    "no_g2_attn": {f"{_RF}.update_g2_has_attn": False},
    "no_h2": {f"{_RF}.update_h2": False},
    "no_attn2_gate": {f"{_RF}.attn2_has_gate": False},
    "direct_dist": {f"{_RF}.direct_dist": True},
    "nonsmooth": {f"{_D}.smooth": False},
    "set_davg_zero_false": {
        f"{_RI}.set_davg_zero": False,
        f"{_RF}.set_davg_zero": False,
    },
    "untrainable_ln": {f"{_RF}.trainable_ln": False},
    "ln_eps_1e-3": {f"{_RF}.ln_eps": 1e-3},
    "env_protection": {f"{_D}.env_protection": 1e-2},
    "add_tebd_to_repinit_out": {f"{_D}.add_tebd_to_repinit_out": True},
    "no_concat_output_tebd": {f"{_D}.concat_output_tebd": False},
    "exclude_types": {f"{_D}.exclude_types": [[0, 1]]},
    "gelu": {
        f"{_RI}.activation_function": "gelu",
        f"{_RF}.activation_function": "gelu",
        f"{_FIT}.activation_function": "gelu",
    },
    "silu": {
        f"{_RI}.activation_function": "silu",
        f"{_RF}.activation_function": "silu",
        f"{_FIT}.activation_function": "silu",
    },
    "repinit_resnet_dt": {f"{_RI}.resnet_dt": True},
    "type_one_side": {f"{_RI}.type_one_side": True},
    "float32": {f"{_D}.precision": "float32", f"{_FIT}.precision": "float32"},
    # g1_shape_tranform is a bias-free Linear when the repinit output width
    # (incl. the three-body part) differs from g1_dim (baseline: 40 -> 8) and
    # an Identity when they are equal.  With use_three_body=True DeePMD 3.2.0
    # cannot round-trip either edge case (see module docstring), so the
    # Identity case is tested without the three-body block (36 == 36):
    "g1_dim_eq_repinit_out": {
        f"{_RI}.use_three_body": False,
        f"{_RF}.g1_dim": TINY_REPINIT_OUT - 4,
    },
    "use_econf_tebd": {f"{_D}.use_econf_tebd": True},
    "use_tebd_bias": {f"{_D}.use_tebd_bias": True},
    # the electron-configuration type embedding with the options that change how type
    # embeddings enter (three-body is on in all of them, as in TINY_DPA2)
    "econf_res_incr": {f"{_D}.use_econf_tebd": True, f"{_RF}.update_style": "res_incr"},
    "econf_exclude_types": {f"{_D}.use_econf_tebd": True, f"{_D}.exclude_types": [[0, 1]]},
    "econf_nonsmooth": {f"{_D}.use_econf_tebd": True, f"{_D}.smooth": False},
    "econf_combined": {
        f"{_D}.use_econf_tebd": True,
        f"{_RF}.update_style": "res_incr",
        f"{_D}.exclude_types": [[0, 1], [2, 2]],
        f"{_D}.smooth": False,
        f"{_RI}.tebd_input_mode": "strip",
    },
    # another type map: permuted, with an absent transition metal (5 types); the
    # econf rows follow the type map, so a row mix-up shows
    "econf_type_map": {
        "type_map": ["O", "Fe", "H", "C", "N"],
        f"{_D}.use_econf_tebd": True,
        f"{_D}.exclude_types": [[0, 2]],
    },
}

# extra keyword arguments of build_random_dp_model for some variants
VARIANT_BUILD_KWARGS: dict[str, dict[str, Any]] = {
    # the baseline with davg == 0, as DeePMD's statistics give for
    # set_davg_zero=True: padding neighbour slots then contribute nothing.
    "base_zero_davg": {"zero_davg": True},
}


def variant_config(name: str) -> dict:
    """Model config of a named variant (``base_zero_davg`` uses the base config)."""
    if name in VARIANT_BUILD_KWARGS:
        return copy.deepcopy(TINY_DPA2)
    return _with(TINY_DPA2, VARIANT_CHANGES[name])


def variants() -> list[tuple[str, dict]]:
    """``[(name, model_config)]``: the baseline and one-option changes of it."""
    names = list(VARIANT_CHANGES) + list(VARIANT_BUILD_KWARGS)
    return [(n, variant_config(n)) for n in names]


# --------------------------------------------------------------------------
# randomisation and saving
# --------------------------------------------------------------------------

_RESIDUAL_NAMES = ("g1_residual", "g2_residual", "h2_residual")


def _random_like(
    name: str, arr: np.ndarray, owner_class: str | None, rng: np.random.Generator, zero_davg: bool
) -> np.ndarray:
    shape, dtype = arr.shape, arr.dtype
    if name == "w":
        if arr.ndim == 2:
            out = rng.standard_normal(shape) / np.sqrt(shape[0])
        elif arr.ndim == 1:
            out = rng.uniform(0.5, 1.5, shape)
        else:
            raise ValueError(f"unexpected w of shape {shape} in {owner_class}")
    elif name == "b":
        out = 0.1 * rng.standard_normal(shape)
    elif name == "idt":
        out = rng.uniform(0.1, 1.0, shape)
    elif name == "davg":
        ntypes, nnei, four = shape
        assert four == 4, shape
        per_type = np.zeros((ntypes, 1, 4))
        per_type[:, 0, 0] = 0.1 * rng.standard_normal(ntypes)
        if zero_davg:
            per_type[:] = 0.0
        out = np.broadcast_to(per_type, shape)
    elif name == "dstd":
        ntypes, nnei, four = shape
        assert four == 4, shape
        per_type = np.empty((ntypes, 1, 4))
        per_type[:, 0, 0] = rng.uniform(0.5, 1.5, ntypes)
        per_type[:, 0, 1:] = rng.uniform(0.5, 1.5, (ntypes, 1))
        out = np.broadcast_to(per_type, shape)
    elif name in ("out_bias", "bias_atom_e"):
        out = 0.5 * rng.standard_normal(shape)
    elif name == "out_std":
        out = rng.uniform(0.5, 1.5, shape)
    elif name in _RESIDUAL_NAMES:
        out = rng.uniform(0.05, 0.5, shape)
    else:
        raise KeyError(f"do not know how to randomise variable {name!r} of {owner_class}")
    return np.ascontiguousarray(out, dtype=dtype)


def randomize_variables(
    serialized: dict, rng: np.random.Generator, zero_davg: bool = False
) -> dict:
    """Replace, in place, every array under every ``"@variables"`` key.

    Returns ``serialized``.  Also returns nothing new for ``None`` entries.
    """

    def visit(node: Any, owner_class: str | None) -> None:
        if isinstance(node, dict):
            cls = node.get("@class", owner_class)
            for key, val in node.items():
                if key == "@variables":
                    for vname, v in val.items():
                        if v is None:
                            continue
                        if isinstance(v, list):
                            val[vname] = [
                                _random_like(vname, np.asarray(a), cls, rng, zero_davg) for a in v
                            ]
                        elif isinstance(v, np.ndarray):
                            val[vname] = _random_like(vname, v, cls, rng, zero_davg)
                        else:
                            raise TypeError(f"variable {vname!r} is a {type(v)}")
                else:
                    visit(val, cls)
        elif isinstance(node, list):
            for item in node:
                visit(item, owner_class)

    visit(serialized, None)
    return serialized


def build_random_dp_model(
    model_config: dict, path: str | os.PathLike, seed: int = 0, zero_davg: bool = False
) -> dict:
    """Build a DeePMD-kit model from ``model_config``, randomise it, save as ``.dp``.

    ``model_config`` is a DeePMD ``"model"`` section.  Returns the dict that was
    saved (``{"backend", "model", "model_def_script", "@variables"}``; the
    saver adds ``software``/``version``/``time`` in the file).  The file is
    loaded back and deserialised with both the numpy and the JAX backend as a
    check.
    """
    from deepmd.dpmodel.model.model import get_model
    from deepmd.dpmodel.utils.serialization import load_dp_model, save_dp_model

    path = Path(path)
    assert path.suffix == ".dp", path
    model = get_model(copy.deepcopy(model_config))
    serialized = model.serialize()
    randomize_variables(serialized, np.random.default_rng(seed), zero_davg=zero_davg)
    data = {
        "backend": "DPModel",
        "model": serialized,
        "model_def_script": copy.deepcopy(model_config),
        "@variables": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_dp_model(str(path), data)
    # round trip check: same arrays back, both backends deserialise it
    loaded = load_dp_model(str(path))
    _assert_same_variables(serialized, loaded["model"])
    # the deserialised model must hold exactly the saved variables (DeePMD
    # can silently keep freshly initialised ones, see module docstring)
    _assert_same_variables(serialized, _deserialize_numpy(loaded["model"]).serialize())
    _assert_same_variables(serialized, _deserialize_jax(loaded["model"]).serialize())
    return data


def _assert_same_variables(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (a.keys(), getattr(b, "keys", None))
        for k in a:
            _assert_same_variables(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same_variables(x, y)
    elif isinstance(a, np.ndarray):
        b = np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


# --------------------------------------------------------------------------
# DeePMD backends
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _jax_modules():
    """Import jax + DeePMD's JAX backend, undoing its global matmul setting."""
    import jax

    prev = jax.config.jax_default_matmul_precision
    import deepmd.jax.env  # noqa: F401  (sets x64 and matmul precision globally)
    import deepmd.jax.model  # noqa: F401  (registers model types)
    from deepmd.jax.model.base_model import BaseModel

    jax.config.update("jax_default_matmul_precision", prev)
    jax.config.update("jax_enable_x64", True)
    return jax, BaseModel


def _deserialize_jax(model_dict: dict):
    _, BaseModel = _jax_modules()
    return BaseModel.deserialize(copy.deepcopy(model_dict))


def _deserialize_numpy(model_dict: dict):
    from deepmd.dpmodel.model.base_model import BaseModel

    return BaseModel.deserialize(copy.deepcopy(model_dict))


def _file_key(dp_path) -> tuple[str, float]:
    p = Path(dp_path).resolve()
    return str(p), p.stat().st_mtime


@functools.lru_cache(maxsize=8)
def _load_dict(key: tuple[str, float]) -> dict:
    from deepmd.dpmodel.utils.serialization import load_dp_model

    return load_dp_model(key[0])


@functools.lru_cache(maxsize=8)
def _jax_model(key: tuple[str, float]):
    return _deserialize_jax(_load_dict(key)["model"])


@functools.lru_cache(maxsize=8)
def _numpy_model(key: tuple[str, float]):
    return _deserialize_numpy(_load_dict(key)["model"])


def load_model_dict(dp_path) -> dict:
    """``load_dp_model`` of a ``.dp`` file (cached; do not mutate)."""
    return _load_dict(_file_key(dp_path))


def _check_inputs(coords, cells, atom_types):
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim == 2:
        coords = coords[None]
    nframes, natoms, three = coords.shape
    assert three == 3
    atom_types = np.asarray(atom_types, dtype=np.int64)
    assert atom_types.shape == (natoms,), atom_types.shape
    if cells is not None:
        cells = np.asarray(cells, dtype=np.float64).reshape(nframes, 3, 3)
    return coords, cells, atom_types


def reference_eval(dp_path, coords, cells, atom_types) -> dict[str, np.ndarray]:
    """Evaluate a ``.dp`` model with DeePMD-kit's JAX backend.

    coords ``[nframes, natoms, 3]``, cells ``[nframes, 3, 3]`` (rows = lattice
    vectors) or ``None`` for no PBC, atom_types ``[natoms]``.  Frames are
    evaluated one at a time.  Returns float64 numpy arrays
    ``energy [nf]``, ``forces [nf, natoms, 3]``, ``virial [nf, 3, 3]``
    (``virial[f].reshape(9)`` is DeePMD's row-major ``(9,)`` virial),
    ``atom_energy [nf, natoms]``.
    """
    jax, _ = _jax_modules()
    jnp = jax.numpy
    coords, cells, atom_types = _check_inputs(coords, cells, atom_types)
    model = _jax_model(_file_key(dp_path))
    out = {"energy": [], "forces": [], "virial": [], "atom_energy": []}
    with jax.default_matmul_precision("tensorfloat32"):
        for f in range(coords.shape[0]):
            box = None if cells is None else jnp.asarray(cells[f].reshape(1, 9))
            ret = model(jnp.asarray(coords[f][None]), jnp.asarray(atom_types[None]), box=box)
            out["energy"].append(np.asarray(ret["energy"], dtype=np.float64).reshape(()))
            out["forces"].append(np.asarray(ret["force"], dtype=np.float64).reshape(-1, 3))
            out["virial"].append(np.asarray(ret["virial"], dtype=np.float64).reshape(3, 3))
            out["atom_energy"].append(np.asarray(ret["atom_energy"], dtype=np.float64).reshape(-1))
    return {k: np.stack(v) for k, v in out.items()}


def reference_energy_numpy(dp_path, coords, cells, atom_types) -> dict[str, np.ndarray]:
    """Energies from DeePMD-kit's numpy ``dpmodel`` backend (no derivatives).

    Same inputs as ``reference_eval``; returns ``energy [nf]`` and
    ``atom_energy [nf, natoms]``.
    """
    coords, cells, atom_types = _check_inputs(coords, cells, atom_types)
    model = _numpy_model(_file_key(dp_path))
    nf = coords.shape[0]
    ret = model.call(
        coords.reshape(nf, -1),
        np.tile(atom_types, (nf, 1)),
        box=None if cells is None else cells.reshape(nf, 9),
    )
    return {
        "energy": np.asarray(ret["energy"], dtype=np.float64).reshape(nf),
        "atom_energy": np.asarray(ret["atom_energy"], dtype=np.float64).reshape(nf, -1),
    }


def check_virial_strain(dp_path, coords, cells, atom_types, h: float = 1e-5) -> float:
    """Max |virial - (-dE/d eps)| by central differences (one frame, PBC).

    Strain: ``x -> x (1 + eps)``, ``cell -> cell (1 + eps)`` (row vectors).
    """
    coords, cells, atom_types = _check_inputs(coords, cells, atom_types)
    x, c = coords[:1], cells[:1]
    vir = reference_eval(dp_path, x, c, atom_types)["virial"][0]
    num = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            es = []
            for s in (+1, -1):
                eps = np.eye(3)
                eps[i, j] += s * h
                es.append(
                    reference_energy_numpy(dp_path, x @ eps, c @ eps, atom_types)["energy"][0]
                )
            num[i, j] = -(es[0] - es[1]) / (2 * h)
    return float(np.max(np.abs(vir - num)))


# --------------------------------------------------------------------------
# geometries
# --------------------------------------------------------------------------


def _read_type_map(system: Path) -> list[str]:
    return (system / "type_map.raw").read_text().split()


def symbols_to_types(symbols, type_map=TYPE_MAP) -> np.ndarray:
    index = {s: i for i, s in enumerate(type_map)}
    return np.array([index[s] for s in symbols], dtype=np.int64)


def _load_system(system: Path, n: int, type_map):
    tm = _read_type_map(system)
    types = np.loadtxt(system / "type.raw", dtype=np.int64, ndmin=1)
    symbols = [tm[t] for t in types]
    coords = np.load(system / "set.000" / "coord.npy")[:n].astype(np.float64)
    coords = coords.reshape(coords.shape[0], -1, 3)
    if (system / "nopbc").exists():
        cells = None
    else:
        cells = np.load(system / "set.000" / "box.npy")[:n].astype(np.float64).reshape(-1, 3, 3)
    return coords, cells, symbols_to_types(symbols, type_map)


def water_frames(n: int = 1, type_map=TYPE_MAP):
    """First ``n`` frames of tests/systems/water/data_0 (192 atoms, 12.44 A cubic box).

    Returns ``(coords [n,192,3], cells [n,3,3], atom_types [192])`` in float64,
    types mapped into ``type_map`` by element symbol.  Dense liquid: with
    TINY_DPA2 neighbour lists ARE truncated to sel (see make_reference output).
    """
    return _load_system(SYSTEMS_DIR / "water" / "data_0", n, type_map)


# 12 atoms, all four elements, in a triclinic cell with rows a, b, c.
# Generated once with a fixed random seed: minimum image distance 1.30 A, every
# atom has 2..7 neighbours within 3.0 A and 3..10 within 4.0 A (so no neighbour
# list of TINY_DPA2 is truncated: sel 30 / 12 / 16), no two neighbour distances
# of one atom within 1e-3 A of each other, shortest lattice vector > 4.0 A.
_SMALL_CELL = np.array([[7.3, 0.0, 0.0], [1.1, 7.1, 0.0], [-0.8, 0.9, 7.4]])
_SMALL_COORD = np.array(
    [
        [2.738371, 5.280632, 1.613860],
        [3.671454, 2.685942, 3.249932],
        [5.342669, 3.911061, 7.271963],
        [1.652614, 2.584026, 0.749627],
        [0.285791, 4.344217, 3.905873],
        [3.518761, 2.139700, 0.179496],
        [1.343485, 4.192239, 1.669873],
        [2.166079, 6.342993, 4.772856],
        [3.312832, 5.454734, 4.165379],
        [1.340901, 6.626688, 3.814552],
        [2.730937, 3.840901, 2.920917],
        [3.903232, 1.104279, 2.965939],
    ]
)
_SMALL_SYMBOLS = ["O", "H", "H", "C", "H", "N", "O", "H", "C", "H", "N", "O"]


def small_triclinic_cell(type_map=TYPE_MAP):
    """``(coords [1,12,3], cells [1,3,3], atom_types [12])``: C, H, N, O in a triclinic cell."""
    return (
        _SMALL_COORD[None].copy(),
        _SMALL_CELL[None].copy(),
        symbols_to_types(_SMALL_SYMBOLS, type_map),
    )


def molecule(type_map=TYPE_MAP):
    """``(coords [1,10,3], None, atom_types [10])``: frame 0 of cho_molecules/C3H3O4, no PBC."""
    return _load_system(SYSTEMS_DIR / "cho_molecules" / "C3H3O4", 1, type_map)


GEOMETRIES = {
    "water": lambda: water_frames(1),
    "small_cell": small_triclinic_cell,
    "molecule": molecule,
}


def neighbor_counts(coords, cells, rcut: float) -> np.ndarray:
    """Number of neighbours (incl. periodic images) within ``rcut`` of each atom of frame 0."""
    x = np.asarray(coords, dtype=np.float64)[0]
    if cells is None:
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        return (d < rcut).sum(1)
    cell = np.asarray(cells, dtype=np.float64)[0]
    heights = np.abs(np.linalg.det(cell)) / np.linalg.norm(
        np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=-1
    )
    nrep = np.ceil(rcut / heights).astype(int)
    rng_ = [np.arange(-k, k + 1) for k in nrep]
    shifts = np.stack(np.meshgrid(*rng_, indexing="ij"), -1).reshape(-1, 3) @ cell
    counts = []
    for i in range(len(x)):
        d = np.linalg.norm(x[None, :, :] + shifts[:, None, :] - x[i], axis=-1).ravel()
        counts.append(int(((d > 1e-10) & (d < rcut)).sum()))
    return np.array(counts)
