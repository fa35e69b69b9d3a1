"""Reference values for the model options of issue 13: frame/atomic parameters and exclusions.

Builds two random tiny DPA-2 models from ``tests/reference_models.TINY_DPA2`` with DeePMD-kit
3.2.0, saves them as ``.dp`` and stores DeePMD-kit's JAX-backend energy, forces, virial,
atom_energy and atom_virial on the molecule and the small periodic cell:

  fparam      numb_fparam=2, numb_aparam=3, random fparam/aparam averages and inverse stds
  exclusions  pair_exclude_types [[0, 1], [3, 3]], atom_exclude_types [2]

Run from the repository root (about 3 minutes):

    nice -n 10 .venv/bin/python scripts/make_model_options_reference.py
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import reference_models as rm

OUT = ROOT / "tests" / "reference" / "model_options"
NFP, NAP = 2, 3
MODELS = {
    "fparam": {"fitting_net.numb_fparam": NFP, "fitting_net.numb_aparam": NAP},
    "exclusions": {"pair_exclude_types": [[0, 1], [3, 3]], "atom_exclude_types": [2]},
}
_PARAM_STATS = ("fparam_avg", "fparam_inv_std", "aparam_avg", "aparam_inv_std")


def model_config(name: str) -> dict:
    cfg = copy.deepcopy(rm.TINY_DPA2)
    for path, value in MODELS[name].items():
        node = cfg
        *head, last = path.split(".")
        for key in head:
            node = node[key]
        node[last] = value
    return cfg


def build(name: str, seed: int) -> Path:
    """Random model saved as OUT/name.dp (fparam/aparam statistics random too)."""
    from deepmd.dpmodel.model.model import get_model
    from deepmd.dpmodel.utils.serialization import save_dp_model

    cfg = model_config(name)
    serialized = get_model(copy.deepcopy(cfg)).serialize()
    variables = serialized["fitting"]["@variables"]
    stats = {k: variables[k] for k in _PARAM_STATS if variables[k] is not None}
    for k in stats:
        variables[k] = None  # randomize_variables does not know them
    rng = np.random.default_rng(seed)
    rm.randomize_variables(serialized, rng)
    for k, v in stats.items():
        value = rng.uniform(0.5, 1.5, v.shape) if "inv_std" in k else rng.standard_normal(v.shape)
        variables[k] = value.astype(v.dtype)
    path = OUT / f"{name}.dp"
    data = {"backend": "DPModel", "model": serialized, "model_def_script": cfg, "@variables": {}}
    save_dp_model(str(path), data)
    return path


def parameters(natoms: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """fparam [1, NFP], aparam [1, natoms, NAP]."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, NFP)), rng.standard_normal((1, natoms, NAP))


def evaluate(path: Path, coords, cells, types, fparam=None, aparam=None) -> dict:
    """DeePMD-kit's JAX backend, one frame, with the atomic virial."""
    from deepmd.dpmodel.utils.serialization import load_dp_model

    jax, base_model = rm._jax_modules()
    jnp = jax.numpy
    model = base_model.deserialize(load_dp_model(str(path))["model"])
    box = None if cells is None else jnp.asarray(cells.reshape(1, 9))
    kw = {}
    if fparam is not None:
        kw = {"fparam": jnp.asarray(fparam), "aparam": jnp.asarray(aparam)}
    with jax.default_matmul_precision("highest"):
        ret = model(
            jnp.asarray(coords), jnp.asarray(types[None]), box=box, do_atomic_virial=True, **kw
        )
    n = types.shape[0]
    return {
        "energy": np.asarray(ret["energy"], np.float64).reshape(1),
        "forces": np.asarray(ret["force"], np.float64).reshape(1, n, 3),
        "virial": np.asarray(ret["virial"], np.float64).reshape(1, 3, 3),
        "atom_energy": np.asarray(ret["atom_energy"], np.float64).reshape(1, n),
        "atom_virial": np.asarray(ret["atom_virial"], np.float64).reshape(1, n, 3, 3),
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    geometries = {"molecule": rm.molecule(), "small_cell": rm.small_triclinic_cell()}
    for seed, name in enumerate(MODELS):
        path = build(name, seed)
        for gname, (coords, cells, types) in geometries.items():
            inputs = {"coords": coords, "atom_types": types}
            if cells is not None:
                inputs["cells"] = cells
            if name == "fparam":
                inputs["fparam"], inputs["aparam"] = parameters(types.shape[0], seed + 10)
            ref = evaluate(path, coords, cells, types, inputs.get("fparam"), inputs.get("aparam"))
            np.savez(OUT / f"{name}__{gname}.npz", **inputs, **ref)
            print(name, gname, ref["energy"], flush=True)


if __name__ == "__main__":
    main()
