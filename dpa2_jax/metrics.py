"""Prediction errors of a model on labelled systems, as DeePMD-kit's ``dp test`` reports them.

    MAE = mean |pred - label|        RMSE = sqrt(mean (pred - label)^2)

over every component: energies [nframes] (eV), energies per atom (eV), forces component-wise
[nframes * natoms * 3] (eV/Angstrom), virials [nframes * 9] (eV) and virials per atom (eV);
virials count only for periodic systems, as in ``dp test``. Each statistic carries its
``count`` (number of components), and `merge_stats` combines systems weighted by it: energies
by frames, forces by force components, which is ``dp test``'s weighted average.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from dpa2_jax.data.system import System, select_frames
from dpa2_jax.data.type_map import map_types

# Metric name -> (label / prediction key, divided by natoms)
QUANTITIES = {
    "energy": ("energy", False),
    "energy_per_atom": ("energy", True),
    "forces": ("forces", False),
    "virial": ("virial", False),
    "virial_per_atom": ("virial", True),
}
UNITS = {
    "energy": "eV", "energy_per_atom": "eV", "forces": "eV/A", "virial": "eV",
    "virial_per_atom": "eV",
}  # fmt: skip


def error_stats(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """MAE and RMSE of `pred` against `label` (same shape), over all components.

    Returns:
      {"mae": float, "rmse": float, "count": number of components}.
    """
    diff = np.asarray(pred, np.float64) - np.asarray(label, np.float64)
    return {
        "mae": float(np.mean(np.abs(diff))),
        "rmse": float(np.sqrt(np.mean(diff * diff))),
        "count": int(diff.size),
    }


def merge_stats(stats: Sequence[dict[str, float]]) -> dict[str, float]:
    """Combines `error_stats` of several parts as if computed over their union."""
    count = sum(s["count"] for s in stats)
    return {
        "mae": sum(s["mae"] * s["count"] for s in stats) / count,
        "rmse": float(np.sqrt(sum(s["rmse"] ** 2 * s["count"] for s in stats) / count)),
        "count": count,
    }


def merge_metrics(per_system: Sequence[dict[str, dict]]) -> dict[str, dict[str, float]]:
    """``dp test``'s weighted average: each quantity merged over the systems that have it."""
    names = [n for n in QUANTITIES if any(n in m for m in per_system)]
    return {n: merge_stats([m[n] for m in per_system if n in m]) for n in names}


def system_labels(system: System) -> dict[str, np.ndarray | None]:
    """The labels `test_system` compares: energy, forces, and virial of periodic systems.

    Returns:
      {"energy": [nframes] eV, "forces": [nframes, natoms, 3] eV/A, "virial": [nframes, 3, 3]
      eV}; None where the system has no such label (virial always None without PBC, as
      ``dp test`` reports virials of periodic systems only).
    """
    return {
        "energy": system.energies,
        "forces": system.forces,
        "virial": system.virials if system.pbc else None,
    }


_NPY_FILES = {"energy": "energy.npy", "forces": "force.npy", "virial": "virial.npy"}


def unlabelled_reason(system: System) -> str | None:
    """None if `system` has a label to compare with; else why not, naming the missing labels."""
    labels = system_labels(system)
    if any(value is not None for value in labels.values()):
        return None
    missing = [name for name in labels if name != "virial" or system.pbc]
    if os.path.isdir(system.path):  # an npy system folder
        files = ", ".join(_NPY_FILES[name] for name in missing)
        return f"{system.path}: no labels to compare with (no {files} in its set.* folders)"
    return f"{system.path}: no labels to compare with (no {', '.join(missing)} in the file)"


def test_system(
    potential,
    system: System,
    head: str | None = None,
    batch_atoms: int | None = None,
    progress: Callable[[int], None] | None = None,
    fparam: np.ndarray | None = None,
    aparam: np.ndarray | None = None,
) -> dict:
    """Evaluates `potential` on every frame of `system` and compares with its labels.

    Args:
      potential: a `dpa2_jax.Potential`.
      system: labelled frames; its types are mapped onto the model's type map by symbol.
      head: the model head (may be omitted for single-head models).
      batch_atoms: atoms per evaluation call (default: the potential's ``atoms_per_batch``).
      progress: called with the number of frames done after each evaluation call.
      fparam, aparam: [nframes, nfp], [nframes, natoms, nap] for models with frame/atomic
        parameters (``data.dataset.fitting_parameters``), else None.

    Returns:
      {"nframes", "natoms", "pbc", "labels": {energy [nframes] eV, forces [nframes, natoms, 3]
      eV/A, virial [nframes, 3, 3] eV; None where the system has no label},
      "predictions": same keys (never None), "metrics": {name: error_stats} for each
      quantity of QUANTITIES whose label exists}.
    """
    system = map_types(system, potential.type_map)
    per_call = max(1, (batch_atoms or potential.atoms_per_batch) // system.natoms)
    parts = []
    for start in range(0, system.nframes, per_call):
        frames = slice(start, start + per_call)
        chunk = select_frames(system, frames)
        extra = {name: value[frames] for name, value in (("fparam", fparam), ("aparam", aparam))
                 if value is not None}  # fmt: skip
        parts.append(
            potential.evaluate(chunk.coords, chunk.cells, chunk.atom_types, head=head, **extra)
        )
        if progress is not None:
            progress(chunk.nframes)
    pred = {k: np.concatenate([p[k] for p in parts]) for k in ("energy", "forces", "virial")}
    labels = system_labels(system)
    metrics = {}
    for name, (key, per_atom) in QUANTITIES.items():
        if labels[key] is not None:
            scale = 1.0 / system.natoms if per_atom else 1.0
            metrics[name] = error_stats(pred[key] * scale, labels[key] * scale)
    return {
        "nframes": system.nframes,
        "natoms": system.natoms,
        "pbc": system.pbc,
        "labels": labels,
        "predictions": pred,
        "metrics": metrics,
    }


test_system.__test__ = False  # not a pytest test, despite the name


_VIRIAL_COLUMNS = [f"{who}_v{a}{b}" for who in ("data", "pred") for a in "xyz" for b in "xyz"]
DETAIL_FILES = {  # suffix -> columns, as dp test writes them
    ".e.out": "data_e pred_e",
    ".e_peratom.out": "data_e pred_e",
    ".f.out": "data_fx data_fy data_fz pred_fx pred_fy pred_fz",
    ".v.out": " ".join(_VIRIAL_COLUMNS),
    ".v_peratom.out": " ".join(_VIRIAL_COLUMNS),
}


def write_detail_files(prefix: str, name: str, result: dict, append: bool) -> None:
    """Writes ``dp test --detail-file`` tables of one `test_system` result.

    Files PREFIX.e.out [nframes, 2] eV, PREFIX.e_peratom.out [nframes, 2] eV/atom, PREFIX.f.out
    [nframes * natoms, 6] eV/A, PREFIX.v.out [nframes, 18] eV and PREFIX.v_peratom.out; data
    columns first, then predictions. A label the system lacks is written as 0 (as dp test
    does). The header line ``# NAME: columns`` is written only at the top of a new file;
    `append` adds the rows of a further system.
    """
    pred = result["predictions"]
    label = {k: np.zeros_like(v) if result["labels"][k] is None else result["labels"][k]
             for k, v in pred.items()}  # fmt: skip
    natoms = result["natoms"]
    e = np.stack([label["energy"], pred["energy"]], axis=1)  # [nframes, 2]
    f = np.concatenate([label["forces"].reshape(-1, 3), pred["forces"].reshape(-1, 3)], axis=1)
    v = np.concatenate([label["virial"].reshape(-1, 9), pred["virial"].reshape(-1, 9)], axis=1)
    tables = {".e.out": e, ".e_peratom.out": e / natoms, ".f.out": f, ".v.out": v,
              ".v_peratom.out": v / natoms}  # fmt: skip
    for suffix, table in tables.items():
        path = prefix + suffix
        fresh = not append or not os.path.exists(path) or os.path.getsize(path) == 0
        with open(path, "a" if append else "w") as fh:
            np.savetxt(fh, table, header=f"{name}: {DETAIL_FILES[suffix]}" if fresh else "")
