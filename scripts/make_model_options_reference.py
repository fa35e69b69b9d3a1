"""Reference values for the model options of issues 13 and 27: frame/atomic parameters, exclusions.

Builds random tiny DPA-2 models from ``tests/reference_models.TINY_DPA2`` with DeePMD-kit
3.2.0, saves them as ``.dp`` and stores DeePMD-kit's JAX-backend energy, forces, virial,
atom_energy and atom_virial:

  fparam         numb_fparam=2, numb_aparam=3, random fparam/aparam averages and inverse stds;
                 on the CHO molecule and the small periodic cell
  exclusions     pair_exclude_types [[0, 1], [3, 3]], atom_exclude_types [2]; same geometries
  exclusions_ho  pair_exclude_types [[1, 3]] (H-O), atom_exclude_types [2] (N), smaller sel so
                 that the three-body and repformer lists are truncated in water, davg/dstd
                 random per slot (so the slot order counts); on water frame 0 and the 18-atom
                 C/H/N/O molecule

Run from the repository root; name models to regenerate only those (all: about 6 minutes):

    nice -n 10 .venv/bin/python scripts/make_model_options_reference.py [MODEL ...]
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
    "exclusions_ho": {
        "pair_exclude_types": [[1, 3]],
        "atom_exclude_types": [2],
        "descriptor.repinit.nsel": 24,
        "descriptor.repinit.three_body_sel": 8,
        "descriptor.repformer.rcut": 3.5,
        "descriptor.repformer.rcut_smth": 3.0,
        "descriptor.repformer.nsel": 12,
    },
}
SEEDS = {"fparam": 0, "exclusions": 1, "exclusions_ho": 2}
GEOMETRIES = {
    "fparam": ("molecule", "small_cell"),
    "exclusions": ("molecule", "small_cell"),
    "exclusions_ho": ("water", "chno_molecule"),
}
PER_SLOT_STATISTICS = {"exclusions_ho"}
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
    if name in PER_SLOT_STATISTICS:
        randomize_statistics_per_slot(serialized["descriptor"], rng)
    for k, v in stats.items():
        value = rng.uniform(0.5, 1.5, v.shape) if "inv_std" in k else rng.standard_normal(v.shape)
        variables[k] = value.astype(v.dtype)
    path = OUT / f"{name}.dp"
    data = {"backend": "DPModel", "model": serialized, "model_def_script": cfg, "@variables": {}}
    save_dp_model(str(path), data)
    return path


def randomize_statistics_per_slot(node, rng: np.random.Generator) -> None:
    """Every davg [ntypes, nsel, 4] / dstd of the descriptor random per slot, in place
    (DeePMD's statistics are equal over slots; random ones make the slot order count)."""
    if isinstance(node, list):
        for item in node:
            randomize_statistics_per_slot(item, rng)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "davg" and isinstance(value, np.ndarray):
                node[key] = 0.1 * rng.standard_normal(value.shape).astype(value.dtype)
            elif key == "dstd" and isinstance(value, np.ndarray):
                node[key] = rng.uniform(0.5, 1.5, value.shape).astype(value.dtype)
            else:
                randomize_statistics_per_slot(value, rng)


def chno_molecule():
    """``(coords [1,18,3], None, atom_types [18])``: chno_molecules/H10C5N2O frame 0, no PBC."""
    coords, _, types = rm._load_system(
        rm.SYSTEMS_DIR / "chno_molecules" / "H10C5N2O", 1, rm.TYPE_MAP
    )
    return coords, None, types


def smallest_slot_gap(cfg: dict, coords, cells, types) -> float:
    """The smallest distance gap (A) between neighbors in adjacent slots, the first dropped one
    included: the repinit list among all neighbors, the three-body and repformer lists among
    the repinit list less the excluded pairs. Near ties would make the slot order (which
    per-slot statistics see) or the truncation ambiguous."""
    from dpa2_jax.graph import fields, frame_to_graph

    ri, rf = cfg["descriptor"]["repinit"], cfg["descriptor"]["repformer"]
    excluded = {tuple(p) for p in cfg.get("pair_exclude_types", [])}
    excluded |= {(b, a) for a, b in excluded}
    cell = None if cells is None else cells[0]
    graph = frame_to_graph(coords[0], types, cell, ri["rcut"], 10 * ri["nsel"])
    dist = np.linalg.norm(fields.edge_vectors(graph), axis=-1)
    gaps = [np.inf]

    def gap(d, n):
        gaps.extend(np.diff(d[: n + 1]))

    for i in range(len(types)):
        rows = np.flatnonzero(graph.receivers == i)
        rows = rows[np.argsort(dist[rows])]
        gap(dist[rows], ri["nsel"])
        listed = rows[: ri["nsel"]]
        kept = [r for r in listed if (types[i], types[graph.senders[r]]) not in excluded]
        for rc, ns in ((ri["three_body_rcut"], ri["three_body_sel"]), (rf["rcut"], rf["nsel"])):
            gap(np.array([dist[r] for r in kept if dist[r] <= rc]), ns)
    return float(min(gaps))


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


def main(names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    geometries = {
        "molecule": rm.molecule,
        "small_cell": rm.small_triclinic_cell,
        "water": lambda: rm.water_frames(1),
        "chno_molecule": chno_molecule,
    }
    for name in names or list(MODELS):
        path = build(name, SEEDS[name])
        for gname in GEOMETRIES[name]:
            coords, cells, types = geometries[gname]()
            gap = smallest_slot_gap(model_config(name), coords, cells, types)
            assert gap > 1e-6, f"{name} on {gname}: near ties in a neighbor list"
            inputs = {"coords": coords, "atom_types": types}
            if cells is not None:
                inputs["cells"] = cells
            if name == "fparam":
                inputs["fparam"], inputs["aparam"] = parameters(types.shape[0], SEEDS[name] + 10)
            ref = evaluate(path, coords, cells, types, inputs.get("fparam"), inputs.get("aparam"))
            np.savez(OUT / f"{name}__{gname}.npz", **inputs, **ref)
            print(name, gname, ref["energy"], f"smallest slot gap {gap:.2e} A", flush=True)


if __name__ == "__main__":
    unknown = set(sys.argv[1:]) - set(MODELS)
    if unknown:
        sys.exit(f"unknown models {sorted(unknown)}; known: {list(MODELS)}")
    main(sys.argv[1:])
