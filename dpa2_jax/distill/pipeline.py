"""The distillation pipeline, stage by stage, each writing under WORKDIR and skipped when its
outputs exist (so a killed run resumes where it stopped):

    check    the teacher's NVE from each structure -> WORKDIR/check/<run>.log,
             check/summary.json; stops the pipeline when its MD runs away
    explore  teacher MD -> WORKDIR/explore/<run>/ (unlabelled npy; frames outside the check's
             force and temperature limits dropped), explore/summary.json
    label    teacher labels -> WORKDIR/data/{train,valid}/<run>/, data/summary.json
    train    the student (train/loop.py) -> WORKDIR/student/ (a training workdir; an
             interrupted training continues from its last checkpoint), student/summary.json
    report   errors, speedup and the radial distribution functions of both models' NVT MD
             -> WORKDIR/report.json, rdf.png, rdf/{teacher,student}.json

A stage's ``summary.json`` is written last: it marks the stage as done.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time

from tqdm.auto import tqdm

from dpa2_jax.data import read_npy_system
from dpa2_jax.distill import physics, report
from dpa2_jax.distill.check import check_teacher
from dpa2_jax.distill.config import DistillConfig, student_input
from dpa2_jax.distill.explore import explore
from dpa2_jax.distill.label import teacher_labels, write_split
from dpa2_jax.errors import ConfigError, DataError
from dpa2_jax.io.convert import load
from dpa2_jax.md.output import read_structure
from dpa2_jax.options import options_dict
from dpa2_jax.train.config import run_config
from dpa2_jax.train.loop import train_and_evaluate

logger = logging.getLogger(__name__)
STAGES = ("check", "explore", "label", "train", "report")


def _done(path: str, teacher: str | None = None) -> dict | None:
    """A finished stage's summary, or None; warns when it was made by another teacher."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    if teacher is not None and summary.get("teacher", teacher) != teacher:
        logger.warning("%s: made with teacher %s, not %s; kept (delete the folder to redo it)",
                       path, summary["teacher"], teacher)  # fmt: skip
    return summary


def _write_json(path: str, value) -> None:
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, default=float)
    os.replace(tmp, path)


def _load(path: str):
    if not os.path.exists(path):
        raise ConfigError(f"{path}: no such model file or directory")
    return load(path)


def _bar(total: int, desc: str, unit: str):
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=None)  # fmt: skip


def run_check(cfg: DistillConfig, workdir: str) -> dict:
    """Stage (0): the teacher's NVE from each exploration structure, at the highest
    exploration temperature (``check.py``); raises UnstableDynamicsError when it runs away."""
    summary_path = os.path.join(workdir, "check", "summary.json")
    if (done := _done(summary_path, cfg.teacher)) is not None:
        return done
    start, ck = time.perf_counter(), cfg.check
    temperature = max(cfg.explore.temperatures)
    records = []
    os.makedirs(os.path.dirname(summary_path), exist_ok=True)
    if ck.steps > 0:
        teacher = _load(cfg.teacher)
        with _bar(ck.steps * len(cfg.explore.structures), "check", "step") as bar:
            records = check_teacher(teacher, cfg.explore.structures, temperature, ck,
                                    os.path.join(workdir, "check"), cfg.head, bar.update)  # fmt: skip
    summary = {"structures": records, "temperature_K": temperature, "skipped": ck.steps == 0,
               "limits": options_dict(ck), "teacher": cfg.teacher,
               "seconds": time.perf_counter() - start}  # fmt: skip
    _write_json(summary_path, summary)
    return summary


def run_explore(cfg: DistillConfig, workdir: str) -> dict:
    """Stage (a): teacher MD at each temperature from each structure (``explore.py``)."""
    summary_path = os.path.join(workdir, "explore", "summary.json")
    if (done := _done(summary_path, cfg.teacher)) is not None:
        return done
    start = time.perf_counter()
    teacher = _load(cfg.teacher)
    committee = [_load(m) for m in cfg.explore.committee.models]
    ex = cfg.explore
    total = ex.steps * len(ex.structures) * len(ex.temperatures)
    with _bar(total, "explore", "step") as bar:
        runs = explore(teacher, ex, os.path.join(workdir, "explore"), cfg.head, committee,
                       bar.update, limits=cfg.check)  # fmt: skip
    summary = {"runs": runs, "dropped": sum(r.get("dropped", 0) for r in runs),
               "limits": {"max_force": cfg.check.max_force,
                          "max_temperature": cfg.check.max_temperature,
                          "max_temperature_factor": cfg.check.max_temperature_factor},
               "teacher": cfg.teacher, "seconds": time.perf_counter() - start}  # fmt: skip
    _write_json(summary_path, summary)
    return summary


def _explored_systems(workdir: str) -> list[str]:
    summary = _done(os.path.join(workdir, "explore", "summary.json"))
    if summary is None:
        raise DataError(f"{workdir}/explore/summary.json: missing; run --stage explore first")
    paths = [os.path.join(workdir, "explore", r["name"]) for r in summary["runs"]]
    paths = [p for p in paths if os.path.isfile(os.path.join(p, "type.raw"))]
    if not paths:
        raise DataError(f"{workdir}/explore: no frame was kept (committee selection too "
                        "strict, or no MD frames); nothing to label")  # fmt: skip
    return paths


def run_label(cfg: DistillConfig, workdir: str) -> dict:
    """Stage (b): teacher energies, forces, virials; train / validation split (``label.py``)."""
    summary_path = os.path.join(workdir, "data", "summary.json")
    if (done := _done(summary_path, cfg.teacher)) is not None:
        return done
    explored = _explored_systems(workdir)
    start = time.perf_counter()
    teacher = _load(cfg.teacher)
    systems = [read_npy_system(p) for p in explored]
    out = {"train": [], "valid": [], "frames": 0, "teacher": cfg.teacher}
    with _bar(sum(s.nframes for s in systems), "label", "frame") as bar:
        for k, (path, system) in enumerate(zip(explored, systems)):
            labelled = teacher_labels(teacher, system, cfg.head, progress=bar.update)
            name = os.path.basename(path)
            train, valid = write_split(
                labelled, cfg.label.validation_fraction, cfg.label.seed + k,
                os.path.join(workdir, "data", "train", name),
                os.path.join(workdir, "data", "valid", name),
            )  # fmt: skip
            out["train"] += [os.path.relpath(train, workdir)] if train else []
            out["valid"] += [os.path.relpath(valid, workdir)] if valid else []
            out["frames"] += system.nframes
    out["seconds"] = time.perf_counter() - start
    _write_json(summary_path, out)
    return out


def run_train(cfg: DistillConfig, workdir: str) -> dict:
    """Stage (c): the student trained on the labelled data (``train/loop.py``); continues from
    the last checkpoint of an interrupted training."""
    student_dir = os.path.join(workdir, "student")
    summary_path = os.path.join(student_dir, "summary.json")
    if (done := _done(summary_path)) is not None:
        return done
    data = _done(os.path.join(workdir, "data", "summary.json"))
    if data is None:
        raise DataError(f"{workdir}/data/summary.json: missing; run --stage label first")
    if not data["train"]:
        raise DataError(f"{workdir}/data/train: no training system was written")
    root = os.path.abspath(workdir)
    d = student_input(cfg, [os.path.join(root, p) for p in data["train"]],
                      [os.path.join(root, p) for p in data["valid"]])  # fmt: skip
    run = run_config(d, os.path.abspath(workdir))
    restart = os.path.isdir(os.path.join(student_dir, "checkpoints")) and any(
        name.isdigit() for name in os.listdir(os.path.join(student_dir, "checkpoints"))
    )
    if restart:
        logger.info("train: continuing the student's training in %s", student_dir)
    result = train_and_evaluate(run, student_dir, restart=restart)
    _write_json(summary_path, result)
    return result


def run_report(cfg: DistillConfig, workdir: str) -> dict:
    """Stage (d): errors against the teacher and DFT, and the speedup (``report.py``)."""
    path = os.path.join(workdir, "report.json")
    if (done := _done(path)) is not None:
        return done
    data = _done(os.path.join(workdir, "data", "summary.json"))
    if data is None or _done(os.path.join(workdir, "student", "summary.json")) is None:
        raise DataError(f"{workdir}: the label and train stages have not finished; run them "
                        "first (--stage all)")  # fmt: skip
    start = time.perf_counter()
    teacher = _load(cfg.teacher)
    student = _load(os.path.join(workdir, "student"))
    valid = [os.path.join(workdir, p) for p in data["valid"]]
    errors = {}
    with _bar(2 + 2 * len(cfg.report.dft_systems) + bool(valid), "report", "test") as bar:
        if valid:
            errors["student vs teacher, held out"] = report.errors(student, valid)
            bar.update()
        for system in cfg.report.dft_systems:
            name = os.path.basename(os.path.normpath(system))
            errors[f"student vs DFT, {name}"] = report.errors(student, [system])
            errors[f"teacher vs DFT, {name}"] = report.errors(teacher, [system], cfg.head)
            bar.update(2)
        atoms = read_structure(cfg.report.speed_structure or cfg.explore.structures[0])
        t_teacher = report.evaluate_seconds(teacher, atoms, cfg.report.repeats, cfg.head)
        bar.update()
        t_student = report.evaluate_seconds(student, atoms, cfg.report.repeats)
        bar.update()
    result = {
        "errors": errors,
        "speed": {"atoms": len(atoms), "repeats": cfg.report.repeats, "teacher_s": t_teacher,
                  "student_s": t_student, "speedup": t_teacher / t_student},
        "teacher": cfg.teacher, "student": os.path.join(workdir, "student"),
    }  # fmt: skip
    if cfg.report.rdf.steps > 0:
        result["rdf"] = _rdf_report(cfg, workdir, {"teacher": teacher, "student": student})
    result["seconds"] = time.perf_counter() - start
    _write_json(path, result)
    return result


def _rdf_report(cfg: DistillConfig, workdir: str, pots: dict) -> dict:
    """The report's physics check (``physics.py``): each model's NVT g(r), read back from
    WORKDIR/rdf/<model>.json when made before with the same settings and model file; then
    ``noise_seeds`` more teacher runs with other seeds (rdf/teacher_seed<s>.json)."""
    rc = cfg.report.rdf
    structure = rc.structure or cfg.report.speed_structure or cfg.explore.structures[0]
    models = {"teacher": cfg.teacher, "student": os.path.join(workdir, "student")}
    heads = {"teacher": cfg.head, "student": None}
    jobs = [(name, name, pot, rc) for name, pot in pots.items()]
    jobs += [(f"teacher_seed{rc.seed + k}", "teacher", pots["teacher"],
              dataclasses.replace(rc, seed=rc.seed + k)) for k in range(1, rc.noise_seeds + 1)]  # fmt: skip
    runs, files, per_model = {}, {}, rc.equilibration + rc.steps
    with _bar(len(jobs) * per_model, "rdf MD", "step") as bar:
        for k, (name, model, pot, settings) in enumerate(jobs):
            key = {"model": models[model], "stamp": physics.model_stamp(models[model]),
                   "head": heads[model], "structure": structure,
                   "settings": physics.run_settings(settings)}  # fmt: skip
            files[name] = os.path.join(workdir, "rdf", f"{name}.json")
            runs[name] = physics.cached_rdf(
                files[name], key,
                lambda pot=pot, head=heads[model], s=settings: physics.nvt_rdf(
                    pot, structure, s, head, bar.update),
            )  # fmt: skip
            bar.update((k + 1) * per_model - bar.n)  # a reused or stopped run: to its end
    with_g = [run for run in runs.values() if "edges" in run]
    reference = physics.reference_rdf(structure, rc, with_g[0]["edges"]) if with_g else None
    files["plot"] = physics.plot(runs, rc, os.path.join(workdir, "rdf.png"), reference)
    return physics.summary(rc, structure, runs, files, reference, cfg.check)


def check_line(summary: dict) -> str:
    """The check stage's line: its worst numbers over the structures."""
    records = summary["structures"]
    if summary.get("skipped") or not records:
        return "check: skipped (check.steps = 0)"
    worst = {k: max(r[k] for r in records)
             for k in ("drift_eV_per_atom", "max_force_eV_A", "max_temperature_K")}  # fmt: skip
    return (f"check: the teacher's NVE from {len(records)} structure(s) at "
            f"{summary['temperature_K']:g} K stays within the limits: drift "
            f"{worst['drift_eV_per_atom']:.3g} eV/atom, largest force "
            f"{worst['max_force_eV_A']:.3g} eV/A, highest temperature "
            f"{worst['max_temperature_K']:.4g} K")  # fmt: skip


def summary_line(stage: str, summary: dict) -> str:
    """One line on what a stage made."""
    if stage == "check":
        return check_line(summary)
    if stage == "explore":
        kept = sum(r.get("kept", 0) for r in summary["runs"])
        return (f"explore: {len(summary['runs'])} MD run(s), {kept} frames kept, "
                f"{summary.get('dropped', 0)} dropped outside the check's limits")  # fmt: skip
    if stage == "label":
        return (f"label: {summary['frames']} frames labelled; {len(summary['train'])} training "
                f"and {len(summary['valid'])} validation systems under data/")  # fmt: skip
    if stage == "train":
        shown = ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if k.startswith("rmse"))
        return f"train: {summary['steps']} steps; {shown}"
    return report.table(summary)


RUNNERS = {"check": run_check, "explore": run_explore, "label": run_label, "train": run_train,
           "report": run_report}  # fmt: skip


def run(cfg: DistillConfig, workdir: str, stage: str = "all") -> dict:
    """Runs one stage or all of them in order; returns {stage: its summary}."""
    if stage != "all" and stage not in RUNNERS:
        raise ConfigError(f"stage {stage!r}: expected one of {[*STAGES, 'all']}")
    os.makedirs(workdir, exist_ok=True)
    out = {}
    for name in STAGES if stage == "all" else (stage,):
        out[name] = RUNNERS[name](cfg, workdir)
        logger.info("distill: stage %s done (%.1f s when it ran)", name,
                    out[name].get("seconds", float("nan")))  # fmt: skip
    return out
