"""``dpa2-jax distill``: teacher MD -> teacher labels -> student training -> report."""

from __future__ import annotations

import argparse
import dataclasses
import os

from dpa2_jax.distill.pipeline import STAGES

DESCRIPTION = """\
Distills a teacher (a fine-tuned DPA-2: .dp file, model directory or training workdir) into a
cheaper student, driven by one CONFIG (a configs/*.py file; see configs/distill_water.py):

  check    the teacher's NVE from each starting structure at the highest exploration
           temperature: energy drift (eV/atom), largest force (eV/A), highest temperature
           (K); stops with a message naming the structure when its MD runs away (limits in
           the config's check section). -> WORKDIR/check/
  explore  teacher MD (JAX-MD; NVT by default) from each starting structure (DeePMD npy
           folders or ASE files) at each temperature (K), a frame every `every` steps, kept
           within the check's force and temperature limits; optionally random strain /
           displacement copies and committee selection by model deviation (max_devi_f in
           [lo, hi) eV/A). -> WORKDIR/explore/
  label    teacher energy (eV), forces (eV/A) and virial (eV) on every frame, as DeePMD npy
           systems split into train/ and valid/ (held out). -> WORKDIR/data/
  train    the student on data/train (validated on data/valid), as `dpa2-jax train`.
           -> WORKDIR/student/ (dpa2_jax.load(WORKDIR/student) reads the student)
  report   student RMSE against the teacher on the held-out frames and, for report.dft_systems,
           of both against DFT; median evaluate time of both on a frame and the speedup;
           radial distribution functions from NVT MD of both (report.rdf), their largest
           difference per pair. -> WORKDIR/report.json, rdf.png, rdf/, and a table on stdout

A stage whose outputs exist is skipped, so rerunning after an interruption resumes (training
continues from its last checkpoint). --stage runs one stage (its inputs must exist).
Any CONFIG field can be overridden: --config.explore.steps=2000
--config.explore.temperatures='[300, 600]' --config.student.training.numb_steps=20000.
"""


NAME = "distill"
HELP = "teacher MD -> labels -> student training -> report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dpa2-jax distill``."""
    parser.add_argument("config", metavar="CONFIG", help="configs/NAME.py (get_config())")
    parser.add_argument("--workdir", required=True, metavar="DIR", help="where every stage writes")
    parser.add_argument("--stage", choices=[*STAGES, "all"], default="all",
                        help="run one stage, or all in order (default)")  # fmt: skip
    parser.add_argument("--teacher", metavar="MODEL", default=None,
                        help="the teacher (.dp, model directory or workdir) instead of "
                        "CONFIG's teacher.model")  # fmt: skip
    parser.add_argument("--head", default=None, help="the teacher's head (multi-head teachers)")


def run(args: argparse.Namespace) -> int:
    from dpa2_jax.distill import pipeline, read_distill_config
    from dpa2_jax.model.jax_setup import enable_compilation_cache
    from dpa2_jax.train.config import config_overrides

    cfg = read_distill_config(args.config, config_overrides("distill", getattr(args, "extra", [])))
    if args.teacher is not None:
        cfg = dataclasses.replace(cfg, teacher=os.path.abspath(args.teacher))
    if args.head is not None:
        cfg = dataclasses.replace(cfg, head=args.head)
    enable_compilation_cache()
    out = pipeline.run(cfg, args.workdir, args.stage)
    for stage, summary in out.items():
        print(pipeline.summary_line(stage, summary))
    print(f"distill: stage(s) {', '.join(out)} done in {args.workdir}")
    return 0
