"""``dpa2-jax test``: errors of a model on labelled systems, like DeePMD-kit's ``dp test``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from tqdm import tqdm

from dpa2_jax.data import select_frames
from dpa2_jax.data.dataset import fitting_parameters, read_systems
from dpa2_jax.errors import ConfigError, DataError
from dpa2_jax.metrics import merge_metrics, test_system, unlabelled_reason, write_detail_files

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Evaluates MODEL (a dpa2_jax model directory or a DeePMD-kit .dp file) on labelled systems and
prints MAE and RMSE per system and their weighted average over systems (energies weighted by
frames, forces by components), as `dp test` does: energy (eV), energy/atom (eV), forces
(eV/Angstrom, component-wise), virial and virial/atom (eV, periodic systems with virial.npy).

SYSTEM: a DeePMD npy system folder (type.raw, type_map.raw, set.*/coord.npy in Angstrom,
box.npy, energy.npy in eV, force.npy in eV/Angstrom, virial.npy in eV), a folder searched
recursively for such systems, or a file ase.io.read understands (extxyz, ...). Element symbols
are mapped onto the model's type map.

--detail-file PREFIX writes dp test's tables: PREFIX.e.out (data_e pred_e, eV),
PREFIX.e_peratom.out (eV/atom), PREFIX.f.out (data_fx data_fy data_fz pred_fx pred_fy pred_fz,
eV/Angstrom, one row per atom), PREFIX.v.out (9 data then 9 predicted virial components, eV)
and PREFIX.v_peratom.out; a missing label is written as 0. A system with none of these labels
is skipped with a warning; if no system has any, the command fails (exit status 2).

A model with frame/atomic parameters (numb_fparam, numb_aparam) takes each system's
set.*/fparam.npy and aparam.npy; a system without them is an error (exit status 2), except
that a missing fparam.npy is filled with the model's default_fparam when it has one.
"""

_LINES = {  # metric -> dp test's labels and unit
    "energy": ("Energy MAE         ", "Energy RMSE        ", "eV"),
    "energy_per_atom": ("Energy MAE/Natoms  ", "Energy RMSE/Natoms ", "eV"),
    "forces": ("Force  MAE         ", "Force  RMSE        ", "eV/A"),
    "virial": ("Virial MAE         ", "Virial RMSE        ", "eV"),
    "virial_per_atom": ("Virial MAE/Natoms  ", "Virial RMSE/Natoms ", "eV"),
}


NAME = "test"
HELP = "MAE/RMSE of energies (eV), forces (eV/A), virials (eV) on labelled data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dpa2-jax test``."""
    parser.add_argument("model", metavar="MODEL",
                        help="model directory, .dp, or DeePMD-kit .pt/.pth file")  # fmt: skip
    parser.add_argument("systems", nargs="+", metavar="SYSTEM", help="system, folder or file")
    parser.add_argument("--head", default=None, help="head of a multi-head model")
    parser.add_argument(
        "--detail-file",
        metavar="PREFIX",
        default=None,
        help="write PREFIX.e.out, .e_peratom.out, .f.out, .v.out, .v_peratom.out",
    )
    parser.add_argument(
        "-n",
        "--numb-test",
        type=int,
        default=0,
        metavar="N",
        help="test the first N frames of each system (0: all, the default)",
    )
    parser.add_argument("--batch-atoms", type=int, default=2048, metavar="N",
                        help="atoms evaluated per jitted call (default 2048)")  # fmt: skip


def _report(metrics: dict) -> None:
    for name, (mae_text, rmse_text, unit) in _LINES.items():
        if name in metrics:
            tqdm.write(f"{mae_text}: {metrics[name]['mae']:e} {unit}", file=sys.stdout)
            tqdm.write(f"{rmse_text}: {metrics[name]['rmse']:e} {unit}", file=sys.stdout)


def run(args: argparse.Namespace) -> int:
    from dpa2_jax import load

    if args.numb_test < 0 or args.batch_atoms < 1:
        raise ConfigError("--numb-test must be >= 0 and --batch-atoms >= 1")
    potential = load(args.model, atoms_per_batch=args.batch_atoms)
    if args.head is None and len(potential.heads) > 1:
        raise ConfigError(f"{args.model}: the model has heads {list(potential.heads)}; "
                          "choose one with --head NAME")  # fmt: skip
    systems = read_systems(args.systems, potential.type_map)
    if args.numb_test:
        systems = [select_frames(s, slice(0, args.numb_test)) for s in systems]
    reasons = [unlabelled_reason(s) for s in systems]
    if all(reasons):
        raise DataError("nothing to compare: " + "; ".join(reasons))
    for reason in filter(None, reasons):
        logger.warning("%s; skipped", reason)
    systems = [s for s, reason in zip(systems, reasons) if reason is None]
    fitting = potential.config.fitting(args.head)
    params = [fitting_parameters(s, fitting) for s in systems]  # DataError if one lacks them
    all_metrics = []
    total = sum(s.nframes for s in systems)
    with tqdm(total=total, unit="frame", file=sys.stderr, disable=not sys.stderr.isatty()) as bar:
        for k, system in enumerate(systems):
            bar.set_description(os.path.basename(system.path))
            fparam, aparam = params[k]
            result = test_system(potential, system, head=args.head, progress=bar.update,
                                 fparam=fparam, aparam=aparam)  # fmt: skip
            tqdm.write(f"# testing system : {system.path}", file=sys.stdout)
            tqdm.write(f"# number of test data : {system.nframes}", file=sys.stdout)
            _report(result["metrics"])
            all_metrics.append(result["metrics"])
            if args.detail_file:
                write_detail_files(args.detail_file, system.path, result, append=k > 0)
    print("# ----------weighted average of errors-----------")
    print(f"# number of systems : {len(systems)}")
    _report(merge_metrics(all_metrics))
    return 0
