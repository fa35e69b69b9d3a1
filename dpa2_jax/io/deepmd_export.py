"""(ModelConfig, params) -> DeePMD-kit's serialized model dict, the inverse of
``deepmd_model.from_deepmd``: every key DeePMD-kit 3.2.0's ``serialize()`` writes, so that its
``deserialize()`` (and a `.dp` file holding the result) loads our models. The descriptor is
written by its family (``descriptor/<family>/deepmd.py``).
"""

from __future__ import annotations

import numpy as np

from dpa2_jax.descriptor import family_of
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.nn.deepmd import collection_dict, fitting_net_dict
from dpa2_jax.typing import Params


def to_deepmd(cfg: ModelConfig, params: Params, head: str | None = None) -> dict:
    """The serialized DeePMD model dict of one head (a `.dp` file holds one head)."""
    head = cfg.resolve_head(head)
    fit = cfg.fitting(head)
    hp = params["heads"][head]
    ntypes = cfg.descriptor.ntypes
    prec = fit.precision
    nets = [
        fitting_net_dict(layers, fit.activation_function, fit.resnet_dt, prec)
        for layers in (
            [hp["fitting"]["layers"]] if fit.mixed_types else hp["fitting"]["type_layers"]
        )
    ]
    collection = collection_dict(nets[0], ntypes, "fitting_network")
    if not fit.mixed_types:  # one net per type
        collection.update(ndim=1, networks=nets)
    fitting = {
        "@class": "Fitting", "@version": 4, "type": "ener", "var_name": "energy",
        "ntypes": ntypes, "dim_descrpt": cfg.descriptor.dim_out, "neuron": list(fit.neuron),
        "resnet_dt": fit.resnet_dt, "numb_fparam": fit.numb_fparam,
        "numb_aparam": fit.numb_aparam, "dim_case_embd": 0,
        "default_fparam": None if fit.default_fparam is None else list(fit.default_fparam),
        "rcond": None,
        "activation_function": fit.activation_function, "precision": prec,
        "mixed_types": fit.mixed_types, "exclude_types": list(fit.exclude_types),
        "type_map": list(cfg.type_map), "tot_ener_zero": False,
        "trainable": [True] * (len(fit.neuron) + 1), "layer_name": None,
        "use_aparam_as_mask": False, "spin": None, "dim_out": 1, "atom_ener": None,
        "nets": collection,
        "@variables": {
            "bias_atom_e": np.asarray(hp["fitting"]["bias_atom_e"]), "case_embd": None,
            **{key: np.asarray(hp["fitting"][key]) if key in hp["fitting"] else None
               for key in ("fparam_avg", "fparam_inv_std", "aparam_avg", "aparam_inv_std")},
        },
    }  # fmt: skip
    out_bias = np.asarray(hp["out_bias"]).reshape(1, ntypes, 1)
    return {
        "@class": "Model",
        "type": "standard",
        "@version": 2,
        "type_map": list(cfg.type_map),
        "atom_exclude_types": list(cfg.atom_exclude_types),
        "pair_exclude_types": [list(p) for p in cfg.pair_exclude_types],
        "rcond": None,
        "preset_out_bias": None,
        "descriptor": family_of(cfg.descriptor).deepmd_codec("to_deepmd")(
            cfg.descriptor, params["descriptor"], cfg.type_map
        ),
        "fitting": fitting,
        "@variables": {"out_bias": out_bias, "out_std": np.ones_like(out_bias)},
    }
