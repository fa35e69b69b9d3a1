"""``dpa2-jax model-devi``: force and virial deviation of several models along a trajectory."""

from __future__ import annotations

import argparse
import os
import sys

from dpa2_jax.errors import ConfigError

DESCRIPTION = """\
Evaluates every MODEL on every frame of TRAJ and writes, per frame, how much the models
disagree: DeePMD-kit's `dp model-devi` definitions and model_devi.out format (columns: step
max_devi_v min_devi_v avg_devi_v max_devi_f min_devi_f avg_devi_f devi_e). Force deviations
are in eV/A (per atom, the root mean square over models of |F_m - mean F|; max, min and mean
over atoms); virial deviations in eV per atom (per component; max, min and norm/3 over the 9);
devi_e in eV per atom.

MODEL: two or more .dp files, dpa2_jax model directories or training workdirs; their type maps
may differ but must each hold every element of TRAJ.
TRAJ: an ASE-readable trajectory (every frame; e.g. the traj.extxyz of `dpa2-jax md`) or a
DeePMD npy system folder (every frame of every set).
The step column is the frame index times --frequency (use the MD's --traj-every).
"""


NAME = "model-devi"
HELP = "model deviation of an ensemble along a trajectory (model_devi.out)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dpa2-jax model-devi``."""
    add = parser.add_argument
    add("models", nargs="+", metavar="MODEL", help="two or more models")
    add("traj", metavar="TRAJ", help="the trajectory: ASE-readable file or npy system folder")
    add("-o", "--output", default="model_devi.out", metavar="FILE",
        help="output file (default model_devi.out)")  # fmt: skip
    add("--head", default=None, help="head of multi-head models")
    add("--frequency", type=int, default=1, metavar="K",
        help="MD steps between frames of TRAJ (default 1)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    models, traj = args.models, args.traj
    if len(models) < 2:
        raise ConfigError(f"model-devi needs at least two models before TRAJ, got {len(models)}: "
                          f"{models}")  # fmt: skip
    if args.frequency < 1:
        raise ConfigError(f"--frequency {args.frequency}: must be >= 1")
    for path in (*models, traj):
        if not os.path.exists(path):
            raise ConfigError(f"{path}: no such file or directory")
    from dpa2_jax import load
    from dpa2_jax.md.output import read_trajectory
    from dpa2_jax.model import deviation
    from dpa2_jax.model.jax_setup import enable_compilation_cache

    enable_compilation_cache()
    pots = [load(path) for path in models]
    system = read_trajectory(traj, pots[0].type_map)
    symbols = [system.type_map[t] for t in system.atom_types]
    for path, pot in zip(models, pots):
        missing = sorted(set(symbols) - set(pot.type_map))
        if missing:
            raise ConfigError(f"{path}: type map {list(pot.type_map)} lacks element(s) {missing} "
                              f"of {traj}")  # fmt: skip
    pred = deviation.ensemble_predictions(pots, system.coords, system.cells, symbols, args.head)
    table = deviation.model_deviation(pred["energy"], pred["forces"], pred["virial"],
                                      args.frequency)  # fmt: skip
    deviation.write_model_devi(args.output, table, title=str(traj))
    f = table[:, 4]
    print(f"model-devi: {len(models)} models, {system.nframes} frames of {system.natoms} atoms; "
          f"max_devi_f from {f.min():.4g} to {f.max():.4g} eV/A; wrote {args.output}",
          file=sys.stdout)  # fmt: skip
    return 0
