#!/usr/bin/env python
"""Regenerate the DeePMD-kit reference data for the se_e2_a parity tests (tests/reference/se_e2_a/).

For each variant below: build a DeePMD-kit 3.2.0 se_e2_a energy model, randomise every
variable (davg/dstd vary per slot, so the per-type slot order is checked), save it as
``<variant>.dp`` and evaluate it with DeePMD-kit's JAX backend (energy, forces, virial, atomic
energies; frames one at a time) and its numpy backend (energies, cross-check) on a 12-atom
triclinic cell and a 10-atom molecule; store ``<variant>__<geometry>.npz`` and a README.

    python scripts/make_se_e2_a_reference.py [--only NAME ...]    (an env with DeePMD-kit + JAX)

DeePMD-kit is used here only to produce reference numbers.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "reference" / "se_e2_a"
TYPE_MAP = ["C", "H", "N", "O"]

BASE = {
    "type_map": TYPE_MAP,
    "descriptor": {
        "type": "se_e2_a", "sel": [6, 6, 6, 6], "rcut": 4.0, "rcut_smth": 0.5,
        "neuron": [4, 8, 16], "axis_neuron": 4, "resnet_dt": False, "type_one_side": True,
        "precision": "float64", "seed": 1,
    },
    "fitting_net": {"neuron": [16, 16], "resnet_dt": True, "precision": "float64", "seed": 1},
}  # fmt: skip

VARIANTS = {
    "base": {},
    "two_side": {"type_one_side": False},
    "exclude_types": {"type_one_side": False, "exclude_types": [[0, 1], [3, 3]]},
    "exclude_types_one_side": {"exclude_types": [[1, 3]]},
    "resnet_dt": {"resnet_dt": True, "neuron": [4, 8, 8]},
    "truncated_sel": {"sel": [2, 2, 1, 2], "env_protection": 0.1},  # per-type lists cut
    "float32": {"precision": "float32"},
}

# 12 atoms, C/H/N/O, triclinic cell (rows a, b, c): no two neighbour distances of an atom
# within 1e-3 A (the geometry of tests/reference_models.py, copied so that this script and
# its data do not depend on that file).
SMALL_CELL = np.array([[7.3, 0.0, 0.0], [1.1, 7.1, 0.0], [-0.8, 0.9, 7.4]])
SMALL_COORD = np.array([
    [2.738371, 5.280632, 1.613860], [3.671454, 2.685942, 3.249932],
    [5.342669, 3.911061, 7.271963], [1.652614, 2.584026, 0.749627],
    [0.285791, 4.344217, 3.905873], [3.518761, 2.139700, 0.179496],
    [1.343485, 4.192239, 1.669873], [2.166079, 6.342993, 4.772856],
    [3.312832, 5.454734, 4.165379], [1.340901, 6.626688, 3.814552],
    [2.730937, 3.840901, 2.920917], [3.903232, 1.104279, 2.965939],
])  # fmt: skip
SMALL_SYMBOLS = ["O", "H", "H", "C", "H", "N", "O", "H", "C", "H", "N", "O"]


def model_config(name: str) -> dict:
    cfg = copy.deepcopy(BASE)
    cfg["descriptor"].update(VARIANTS[name])
    cfg["fitting_net"]["precision"] = cfg["descriptor"]["precision"]
    return cfg


def geometries() -> dict:
    """{name: (coords [1, nat, 3], cells [1, 3, 3] or None, atom_types [nat])}."""
    types = np.array([TYPE_MAP.index(s) for s in SMALL_SYMBOLS])
    mol = REPO / "tests" / "systems" / "cho_molecules" / "C3H3O4"
    tm = (mol / "type_map.raw").read_text().split()
    mol_types = np.array([TYPE_MAP.index(tm[t]) for t in np.loadtxt(mol / "type.raw", dtype=int)])
    mol_coord = np.load(mol / "set.000" / "coord.npy")[:1].reshape(1, -1, 3).astype(np.float64)
    return {
        "small_cell": (SMALL_COORD[None].copy(), SMALL_CELL[None].copy(), types),
        "molecule": (mol_coord, None, mol_types),
    }


def per_type_counts(coords, cells, types, rcut: float) -> np.ndarray:
    """[nat, ntypes] neighbours of each type within rcut (images included), frame 0."""
    x = coords[0]
    shifts = np.zeros((1, 3))
    if cells is not None:
        r = np.arange(-1, 2)
        shifts = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3) @ cells[0]
    out = np.zeros((len(x), len(TYPE_MAP)), int)
    for i in range(len(x)):
        d = np.linalg.norm(x[None] + shifts[:, None] - x[i], axis=-1)  # [nshift, nat]
        within = (d > 1e-10) & (d <= rcut)
        out[i] = np.bincount(np.broadcast_to(types, d.shape)[within], minlength=len(TYPE_MAP))
    return out


def randomize(node, rng: np.random.Generator) -> None:
    """Replace every array under every ``@variables`` in place."""
    if isinstance(node, list):
        for item in node:
            randomize(item, rng)
        return
    if not isinstance(node, dict):
        return
    for key, val in node.items():
        if key != "@variables":
            randomize(val, rng)
            continue
        for name, v in val.items():
            if v is None:
                continue
            a = np.asarray(v)
            if name == "w":
                new = rng.standard_normal(a.shape) / np.sqrt(a.shape[0])
            elif name == "b":
                new = 0.1 * rng.standard_normal(a.shape)
            elif name == "idt":
                new = rng.uniform(0.1, 1.0, a.shape)
            elif name == "davg":
                new = 0.1 * rng.standard_normal(a.shape)
            elif name == "dstd":
                new = rng.uniform(0.5, 1.5, a.shape)
            elif name in ("out_bias", "bias_atom_e"):
                new = 0.5 * rng.standard_normal(a.shape)
            elif name == "out_std":
                new = np.ones(a.shape)
            else:
                raise KeyError(name)
            val[name] = np.ascontiguousarray(new, dtype=a.dtype)


def build(name: str, path: Path, seed: int) -> None:
    from deepmd.dpmodel.model.base_model import BaseModel
    from deepmd.dpmodel.model.model import get_model
    from deepmd.dpmodel.utils.serialization import save_dp_model

    cfg = model_config(name)
    serialized = get_model(copy.deepcopy(cfg)).serialize()
    randomize(serialized, np.random.default_rng(seed))
    # DeePMD's own serialize() of the randomised model (zeroes the unused excluded-pair nets)
    serialized = BaseModel.deserialize(copy.deepcopy(serialized)).serialize()
    save_dp_model(str(path), {"backend": "DPModel", "model": serialized,
                              "model_def_script": cfg, "@variables": {}})  # fmt: skip


class _LoopVmap:
    """``jax`` with ``vmap`` as a Python loop over frames. DeePMD's JAX model vmaps its force
    Jacobian over frames, which se_e2_a without type_one_side cannot trace (it counts atoms
    per type in Python); the loop gives the same numbers frame by frame."""

    def __init__(self, jax):
        self._jax = jax

    def __getattr__(self, name):
        return getattr(self._jax, name)

    def vmap(self, fn):
        jax = self._jax

        def looped(*args):
            nf = args[0].shape[0]
            outs = [fn(*[None if a is None else a[i] for a in args]) for i in range(nf)]
            return jax.tree.map(lambda *xs: jax.numpy.stack(xs), *outs)

        return looped


def evaluate(path: Path, coords, cells, types) -> dict:
    """DeePMD-kit JAX (frame by frame) and numpy outputs, float64."""
    import jax

    prev = jax.config.jax_default_matmul_precision
    import deepmd.jax.model  # noqa: F401  (registers models; sets x64 and tf32 globally)
    import deepmd.jax.model.base_model as jax_base

    if not isinstance(jax_base.jax, _LoopVmap):
        jax_base.jax = _LoopVmap(jax)
    from deepmd.dpmodel.model.base_model import BaseModel as NpModel
    from deepmd.dpmodel.utils.serialization import load_dp_model
    from deepmd.jax.model.base_model import BaseModel as JaxModel

    jax.config.update("jax_default_matmul_precision", prev)
    jnp = jax.numpy
    data = load_dp_model(str(path))["model"]
    jmodel = JaxModel.deserialize(copy.deepcopy(data))
    out = {"energy": [], "forces": [], "virial": [], "atom_energy": []}
    with jax.default_matmul_precision("highest"):
        box = None if cells is None else jnp.asarray(cells[0].reshape(1, 9))
        ret = jmodel(jnp.asarray(coords), jnp.asarray(types[None]), box=box)
    out = {
        "energy": np.asarray(ret["energy"], np.float64).reshape(1),
        "forces": np.asarray(ret["force"], np.float64).reshape(1, -1, 3),
        "virial": np.asarray(ret["virial"], np.float64).reshape(1, 3, 3),
        "atom_energy": np.asarray(ret["atom_energy"], np.float64).reshape(1, -1),
    }
    nmodel = NpModel.deserialize(copy.deepcopy(data))
    ret = nmodel.call(coords.reshape(1, -1), types[None],
                      box=None if cells is None else cells.reshape(1, 9))  # fmt: skip
    out["energy_numpy"] = np.asarray(ret["energy"], np.float64).reshape(1)
    out["atom_energy_numpy"] = np.asarray(ret["atom_energy"], np.float64).reshape(1, -1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, choices=sorted(VARIANTS))
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    import deepmd
    import jax

    rows = []
    for name in VARIANTS:
        if args.only and name not in args.only:
            continue
        seed = zlib.crc32(("se_e2_a/" + name).encode()) % 2**31
        cfg = model_config(name)
        path = OUT / f"{name}.dp"
        build(name, path, seed)
        for gname, (coords, cells, types) in geometries().items():
            t0 = time.perf_counter()
            ref = evaluate(path, coords, cells, types)
            dt = time.perf_counter() - t0
            counts = per_type_counts(coords, cells, types, cfg["descriptor"]["rcut"])
            cut = int((counts > np.array(cfg["descriptor"]["sel"])).any(1).sum())
            d_e = float(np.max(np.abs(ref["energy"] - ref["energy_numpy"])))
            arrays = dict(
                coords=coords, atom_types=types.astype(np.int64), pbc=np.array(cells is not None),
                type_map=np.array(TYPE_MAP), variant=np.array(name), geometry=np.array(gname),
                model_file=np.array(path.name), seed=np.array(seed),
                precision=np.array(cfg["descriptor"]["precision"]),
                model_config_json=np.array(json.dumps(cfg, sort_keys=True)), **ref,
            )  # fmt: skip
            if cells is not None:
                arrays["cells"] = cells
            np.savez_compressed(OUT / f"{name}__{gname}.npz", **arrays)
            rows.append(f"| {name} | {gname} | {len(types)} | {cut} | {d_e:.1e} | {dt:.1f} |")
            print(rows[-1], f"E={ref['energy'][0]:.6f}", flush=True)
    if args.only:
        return
    now = datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    readme = [
        "# DeePMD-kit reference data for the se_e2_a parity tests",
        "",
        "Generated by `scripts/make_se_e2_a_reference.py` (do not edit by hand):",
        "",
        "```",
        "python scripts/make_se_e2_a_reference.py   # repository root, env with DeePMD-kit + JAX",
        "```",
        "",
        f"* date: {now}",
        (
            f"* DeePMD-kit {deepmd.__version__} (JAX backend for energy/forces/virial, frames "
            "looped instead of vmapped, see `_LoopVmap`; numpy backend for the energy "
            f"cross-check), jax {jax.__version__}, numpy {np.__version__}, "
            f"Python {platform.python_version()}, CPU"
        ),
        (
            "* models: `BASE` and `VARIANTS` in the script (type map C, H, N, O; rcut 4 A); "
            "every variable random (`numpy.random.default_rng(seed)`, seed = "
            "crc32('se_e2_a/' + variant) mod 2**31, stored in each npz); davg/dstd vary per slot."
        ),
        (
            "* `<variant>.dp`: the model; `<variant>__<geometry>.npz`: inputs and outputs as in "
            "`tests/reference/README.md` (`coords`, `cells`, `atom_types`, `energy`, `forces`, "
            "`virial`, `atom_energy`, `energy_numpy`, `atom_energy_numpy`, ...)."
        ),
        (
            "* geometries: `small_cell` = 12 atoms C/H/N/O in a triclinic cell (no distance "
            "ties); `molecule` = tests/systems/cho_molecules/C3H3O4 frame 0 (10 atoms, no PBC)."
        ),
        "* tolerance: 1e-10 (float64), ~1e-5 relative (float32).",
        "",
        "| variant | geometry | atoms | atoms with a per-type list cut by sel | max abs dE jax-numpy | jax s |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]
    (OUT / "README.md").write_text("\n".join(readme))


if __name__ == "__main__":
    main()
