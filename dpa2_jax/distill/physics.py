"""The report's physics check: does the student simulate the teacher's liquid?

    report.rdf.structure -> NVT MD (same start, seed and thermostat) with the teacher, then
      the student: ``equilibration`` steps, then ``steps`` sampled every ``every``
      -> g_ab(r) of each pair (``md/rdf.py``) -> WORKDIR/rdf/<model>.json as each finishes
      -> per pair, max |g_student - g_teacher| over ``compare`` (A) -> report.json "rdf"
      -> WORKDIR/rdf.png: both curves per pair and their difference
    report.rdf.structure's own frames (a DeePMD npy system of at least REFERENCE_FRAMES
      frames, such as DFT data) -> g_ab(r) drawn beside them as the reference, and each
      model's largest difference from it; every curve's first peak (position, height)

A model's saved g(r) is reused by a later report when its settings and the model file are
unchanged (the teacher's 2.5 ps of MD is the report's longest part). A run that stops
(non-finite energy) is recorded with ``failure`` and no g(r).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable

import numpy as np

from dpa2_jax.distill.config import CheckConfig, RdfConfig
from dpa2_jax.errors import DataError
from dpa2_jax.md import rdf
from dpa2_jax.md.output import read_structure, read_trajectory
from dpa2_jax.md.sampling import observe_run
from dpa2_jax.options import options_dict

logger = logging.getLogger(__name__)

# fewest frames of the structure's own system for its g(r) to be drawn as the reference
REFERENCE_FRAMES = 10
REFERENCE = "data frames"


def pair_name(pair) -> str:
    """"O-H" for ("O", "H")."""
    return f"{pair[0]}-{pair[1]}"


def model_stamp(path: str) -> float:
    """Modification time of a model file, or the newest file of a model folder (a training
    workdir's model/), so that a retrained model is not mistaken for the old one."""
    folder = os.path.join(path, "model") if os.path.isdir(os.path.join(path, "model")) else path
    if not os.path.isdir(folder):
        return os.path.getmtime(folder)
    times = [os.path.getmtime(os.path.join(root, f))
             for root, _, files in os.walk(folder) for f in files]  # fmt: skip
    return max(times, default=os.path.getmtime(folder))


def largest(values: np.ndarray) -> float | None:
    """The largest finite entry of ``values``, or None when there is none."""
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) if finite.size else None


def check_structure(atoms, cfg: RdfConfig, structure: str) -> None:
    """Refuses, before any MD, a structure whose g(r) cannot be computed.

    Raises:
      DataError: naming ``structure``: not periodic, or without an atom pair of a pair.
    """
    if not atoms.pbc.all():
        raise DataError(f"report.rdf.structure {structure}: not periodic; g(r) needs a "
                        "periodic box")  # fmt: skip
    symbols = atoms.get_chemical_symbols()
    for a, b in cfg.pairs:
        if symbols.count(a) == 0 or symbols.count(b) - (a == b) < 1:
            raise DataError(f"report.rdf.pairs {[a, b]}: {structure} holds {symbols.count(a)} "
                            f"{a} and {symbols.count(b)} {b} atoms; need a pair of them")  # fmt: skip


def nvt_rdf(
    pot, structure: str, cfg: RdfConfig, head: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:  # fmt: skip
    """NVT MD of ``pot`` from ``structure`` and the g(r) of ``cfg.pairs`` over its production
    frames: {edges [n_bin + 1] A, g {pair: [n_bin]}, frames, mean and highest temperature (K),
    largest force (eV/A), failure (None, or why the run stopped: no g then), seconds}."""
    from dpa2_jax.md import simulate

    start = time.perf_counter()
    atoms = read_structure(structure)
    check_structure(atoms, cfg, structure)
    md = simulate.MDConfig(ensemble="nvt", temperature=cfg.temperature, timestep=cfg.timestep,
                           thermostat=cfg.thermostat, tau_t=cfg.tau_t)  # fmt: skip
    sim = simulate.build_simulation(pot, atoms, md, head=head)
    total = cfg.equilibration + cfg.steps
    series = observe_run(sim, cfg.seed, total, cfg.every, keep_positions=True,
                         stop_on_failure=True, progress=progress)  # fmt: skip
    prod = series.steps > cfg.equilibration
    out = {"frames": int(prod.sum()), "failure": series.failure,
           "mean_temperature_K": float(np.mean(series.temperature[prod])) if prod.any() else None,
           "max_temperature_K": largest(series.temperature),
           "max_force_eV_A": largest(series.max_force)}  # fmt: skip
    if series.failure is None and prod.any():
        cells = series.cells[prod]
        edges = rdf.bin_edges(min(cfg.r_max, rdf.largest_radius(cells)), cfg.bin_width)
        out["edges"] = edges.tolist()
        out["g"] = {pair_name(p): rdf.radial_distribution(series.positions[prod], cells,
                                                          sim.symbols, p, edges).tolist()
                    for p in cfg.pairs}  # fmt: skip
    elif series.failure is not None:
        logger.warning("rdf: the MD stopped: %s; no g(r) for this model", series.failure)
    out["seconds"] = time.perf_counter() - start
    return out


def outside_limits(run: dict, limits: CheckConfig, temperature: float) -> list[str]:
    """What of one RDF run lies outside the check's limits (its highest temperature above the
    limit for ``temperature`` K, its largest force above max_force): a model whose NVT MD
    leaves them heated or broke the structure, so its g(r) is not the liquid's."""
    out = []
    t_max, t_limit = run.get("max_temperature_K"), limits.temperature_limit(temperature)
    if t_max is not None and t_max > t_limit:
        out.append(f"highest temperature {t_max:.4g} K > {t_limit:.4g} K")
    f_max = run.get("max_force_eV_A")
    if f_max is not None and f_max > limits.max_force:
        out.append(f"largest force {f_max:.4g} eV/A > check.max_force {limits.max_force:g}")
    return out


def run_settings(cfg: RdfConfig) -> dict:
    """The settings one MD run's g(r) depends on (its cache key): all but noise_seeds."""
    return {k: v for k, v in options_dict(cfg).items() if k != "noise_seeds"}


def noise_runs(runs: dict) -> dict:
    """The teacher's runs with other seeds (``noise_seeds``), by name."""
    return {name: run for name, run in runs.items() if name.startswith("teacher_seed")}


def reference_rdf(structure: str, cfg: RdfConfig, edges: np.ndarray) -> dict | None:
    """g(r) of ``cfg.pairs`` over every frame of ``structure`` when it is a periodic DeePMD npy
    system of at least REFERENCE_FRAMES frames (the data the models were fitted to, e.g. DFT
    MD): {edges, g {pair: [n_bin]}, frames}; None for a structure file or fewer frames."""
    if not os.path.isfile(os.path.join(structure, "type.raw")):
        return None
    system = read_trajectory(structure)
    if system.cells is None or len(system.coords) < REFERENCE_FRAMES:
        return None
    symbols = [system.type_map[t] for t in system.atom_types]
    g = {pair_name(p): rdf.radial_distribution(system.coords, system.cells, symbols, p,
                                               edges).tolist() for p in cfg.pairs}  # fmt: skip
    return {"edges": np.asarray(edges).tolist(), "g": g, "frames": len(system.coords)}


def first_peak(edges, g, r_range: tuple[float, float]) -> dict:
    """The highest bin of ``g`` whose center lies in ``r_range`` (A): {r (A), g}."""
    height, r = rdf.largest_in_range(edges, g, r_range)
    return {"r": r, "g": height}


def cached_rdf(path: str, key: dict, compute: Callable[[], dict]) -> dict:
    """``compute()``'s result, saved at ``path`` with ``key``; read back instead when the file
    exists with the same key (the same settings and model)."""
    key = json.loads(json.dumps(key))  # tuples as lists, as read back
    if os.path.isfile(path):
        with open(path) as f:
            saved = json.load(f)
        if saved.get("key") == key:
            logger.info("rdf: %s holds this model's g(r); reused", path)
            return saved
        logger.info("rdf: %s was made with other settings or another model; redone", path)
    result = {**compute(), "key": key}
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".partial", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(path + ".partial", path)
    return result


def compare(teacher: dict, student: dict, cfg: RdfConfig) -> dict:
    """Per pair: the largest |g_student - g_teacher| over ``cfg.compare`` and where (A); None
    when either has no g(r)."""
    out = {}
    for pair in map(pair_name, cfg.pairs):
        if "g" not in teacher or "g" not in student:
            out[pair] = {"max_abs_diff": None, "at_r": None}
            continue
        diff, at = rdf.largest_difference(np.asarray(teacher["edges"]), student["g"][pair],
                                          teacher["g"][pair], cfg.compare)  # fmt: skip
        out[pair] = {"max_abs_diff": diff, "at_r": at}
    return out


def summary(cfg: RdfConfig, structure: str, runs: dict, paths: dict,
            reference: dict | None = None, limits: CheckConfig | None = None) -> dict:  # fmt: skip
    """The report's ``rdf`` entry: settings, per-pair largest differences (student against
    teacher; the teacher's other seeds against it, ``noise``: the largest over them; with a
    ``reference``, each model against it), each model's MD numbers and first peaks (no curves:
    those stay in WORKDIR/rdf/*.json), what of each run lies ``outside_limits`` (with
    ``limits``) and the files."""
    keep = ("frames", "failure", "mean_temperature_K", "max_temperature_K", "max_force_eV_A",
            "seconds")  # fmt: skip
    teacher = runs["teacher"]
    out = {
        "structure": structure, "settings": options_dict(cfg),
        "r_max_used": teacher["edges"][-1] if "edges" in teacher else None,
        "pairs": compare(teacher, runs["student"], cfg),
        **{name: {k: run.get(k) for k in keep} for name, run in runs.items()},
        "files": paths,
    }  # fmt: skip
    for name, run in runs.items() if limits is not None else ():
        out[name]["outside_check_limits"] = outside_limits(run, limits, cfg.temperature)
    others = [compare(teacher, run, cfg) for run in noise_runs(runs).values()]
    if others:
        diffs = {p: [o[p] for o in others if o[p]["max_abs_diff"] is not None] for p in others[0]}
        out["noise"] = {p: max(d, key=lambda x: x["max_abs_diff"]) if d else
                        {"max_abs_diff": None, "at_r": None} for p, d in diffs.items()}  # fmt: skip
    curves = {**runs, **({REFERENCE: reference} if reference else {})}
    for name, run in curves.items():
        if "g" in run:
            out.setdefault(name, {})["first_peak"] = {
                pair_name(p): first_peak(run["edges"], run["g"][pair_name(p)], cfg.compare)
                for p in cfg.pairs
            }  # fmt: skip
    if reference:
        out[REFERENCE]["frames"] = reference["frames"]
        for name, run in runs.items():
            out[name]["against_" + REFERENCE.replace(" ", "_")] = compare(reference, run, cfg)
    return out


def plot(runs: dict, cfg: RdfConfig, path: str, reference: dict | None = None) -> str | None:
    """WORKDIR/rdf.png: per pair (columns), g(r) of each model with g(r) and of the
    ``reference`` frames (gray, dashed) (top) and g_student - g_teacher (bottom, the compared
    range shaded; in gray, the teacher's other seeds minus the teacher: the noise). Returns the
    path, or None without matplotlib (a warning) or without any model's g(r)."""
    others = {name: run for name, run in noise_runs(runs).items() if "g" in run}
    curves = {name: run for name, run in runs.items() if "g" in run and name not in others}
    if not curves:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning('rdf: no plot: matplotlib is not installed (pip install "dpa2_jax[plot]")')
        return None
    pairs = [pair_name(p) for p in cfg.pairs]
    fig, axes = plt.subplots(2, len(pairs), figsize=(4.5 * len(pairs), 5.5), squeeze=False,
                             sharex=True, gridspec_kw={"height_ratios": [2, 1]})  # fmt: skip
    for k, pair in enumerate(pairs):
        top, bottom = axes[0, k], axes[1, k]
        for name, run in curves.items():
            edges = np.asarray(run["edges"])
            top.plot(0.5 * (edges[1:] + edges[:-1]), run["g"][pair], label=name, lw=1.2)
        if reference:
            edges = np.asarray(reference["edges"])
            top.plot(0.5 * (edges[1:] + edges[:-1]), reference["g"][pair], color="gray", ls="--",
                     lw=1.0, label=f"{REFERENCE} ({reference['frames']})")  # fmt: skip
        top.axhline(1.0, color="gray", lw=0.6)
        top.set(title=f"g(r) {pair}, NVT {cfg.temperature:g} K", ylabel="g(r)")
        top.legend(fontsize="small")
        if {"teacher", "student"} <= set(curves):
            edges = np.asarray(curves["teacher"]["edges"])
            diff = np.subtract(curves["student"]["g"][pair], curves["teacher"]["g"][pair])
            for j, run in enumerate(others.values()):
                noise = np.subtract(run["g"][pair], curves["teacher"]["g"][pair])
                bottom.plot(0.5 * (edges[1:] + edges[:-1]), noise, color="gray", lw=0.8,
                            label="teacher, other seed" if j == 0 else None)  # fmt: skip
            bottom.plot(0.5 * (edges[1:] + edges[:-1]), diff, color="tab:red", lw=1.0,
                        label="student")  # fmt: skip
            if others:
                bottom.legend(fontsize="x-small")
        bottom.axhline(0.0, color="gray", lw=0.6)
        bottom.axvspan(*cfg.compare, color="tab:blue", alpha=0.08)
        bottom.set(xlabel="r [A]", ylabel="g - g_teacher")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
