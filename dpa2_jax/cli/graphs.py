"""``dpa2-jax graphs``: neighbor graphs of data sets, summarised (sizes, sel overflow, buckets)."""

from __future__ import annotations

import argparse

import numpy as np

from dpa2_jax.data.dataset import read_systems
from dpa2_jax.graph import neighbor_list
from dpa2_jax.graph.batching import plan_batches

DESCRIPTION = """\
Builds the neighbor graph of every frame of the given systems, as the model sees them, and
prints per system and in total: frames, atoms, periodicity, mean and max number of neighbors
within RCUT (Angstrom), atoms losing neighbors to SEL (DeePMD keeps the SEL nearest), and the
padded batch shapes (n_node, n_edge, n_graph) that dpa2_jax.Potential.evaluate uses for each
system evaluated in batches of --batch-atoms atoms (the same plan: graph/batching.py): each
distinct shape is one jit compilation.

SYSTEM: a DeePMD npy system folder, a folder searched recursively for them, or a file
ase.io.read understands (extxyz, ...). Positions and cells in Angstrom.
"""


NAME = "graphs"
HELP = "summarise neighbor graphs (cutoff in Angstrom) and padded batch shapes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dpa2-jax graphs``."""
    parser.add_argument("systems", nargs="+", metavar="SYSTEM", help="system, folder or file")
    parser.add_argument("--rcut", type=float, default=6.0, help="cutoff in Angstrom (default 6)")
    parser.add_argument("--sel", type=int, default=120, help="neighbors kept per atom (120)")
    parser.add_argument(
        "--batch-atoms",
        type=int,
        default=2048,
        metavar="N",
        help="atoms per evaluation batch, as in dpa2_jax.Potential (2048)",
    )


def _counts(system, rcut: float) -> np.ndarray:
    """Neighbors within rcut of every atom of every frame: [nframes, natoms]."""
    counts = np.zeros((system.nframes, system.natoms), np.int64)
    for f in range(system.nframes):
        cell = None if system.cells is None else system.cells[f]
        nl = neighbor_list(system.coords[f], cell, rcut, sel=np.iinfo(np.int32).max)
        counts[f] = np.bincount(nl.centers, minlength=system.natoms)
    return counts


def run(args: argparse.Namespace) -> int:
    systems = read_systems(args.systems)
    shapes: dict[tuple[int, int, int], int] = {}
    print(f"{'system':<40} {'frames':>7} {'atoms':>6} {'pbc':>4} {'nbr_mean':>9} "
          f"{'nbr_max':>8} {'over_sel':>9}")  # fmt: skip
    totals = {"frames": 0, "atoms": 0, "periodic": 0, "edges": 0, "max": 0, "over": 0}
    for system in systems:
        counts = _counts(system, args.rcut)  # [nframes, natoms]
        over = int(np.sum(counts > args.sel))
        print(f"{system.path[-40:]:<40} {system.nframes:>7} {system.natoms:>6} "
              f"{'yes' if system.pbc else 'no':>4} {counts.mean():>9.2f} {counts.max():>8} "
              f"{over:>9}")  # fmt: skip
        kept = np.minimum(counts, args.sel).sum(axis=1)  # [nframes] edges per graph
        groups, shape = plan_batches([system.natoms] * system.nframes, kept, args.batch_atoms)
        shapes[shape] = shapes.get(shape, 0) + len(groups)
        totals["frames"] += system.nframes
        totals["atoms"] += counts.size
        totals["periodic"] += int(system.pbc)
        totals["edges"] += int(counts.sum())
        totals["max"] = max(totals["max"], int(counts.max()))
        totals["over"] += over
    print(
        f"systems: {len(systems)} ({totals['periodic']} periodic), frames: {totals['frames']}, "
        f"atoms (all frames): {totals['atoms']}"
    )
    print(
        f"neighbors within rcut={args.rcut:g} A: mean {totals['edges'] / totals['atoms']:.2f}, "
        f"max {totals['max']}; atoms over sel={args.sel}: {totals['over']}"
    )
    print(
        f"padded batch shapes (n_node, n_edge, n_graph): {len(shapes)} -> {len(shapes)} "
        f"compilations, {sum(shapes.values())} batches"
    )
    for shape, n in sorted(shapes.items()):
        print(f"  {shape}: {n} batches")
    return 0
