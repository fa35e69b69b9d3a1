"""Report: how well and how fast the student stands in for the teacher.

- errors against the teacher on the held-out sampled frames (WORKDIR/data/valid/*), and of
  both models against the labels of ``report.dft_systems`` (DFT), as ``dpa2-jax test`` computes
  them (``metrics.test_system``: energy per atom eV, forces eV/A, virial per atom eV; RMSE and
  MAE);
- speed: the median wall time of ``evaluate`` (energy, forces, virial) on one frame of
  ``speed_structure`` after a first, compiling call; speedup = teacher time / student time;
- the physics check (``physics.py``): radial distribution functions of both models' NVT MD
  and their largest difference.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

from dpa2_jax.data import read_npy_system
from dpa2_jax.metrics import merge_metrics, test_system

ROWS = ("energy_per_atom", "forces", "virial_per_atom")


def errors(pot, systems: Sequence[str], head: str | None = None) -> dict:
    """Merged ``dp test`` metrics of ``pot`` over the labelled npy systems ``systems``
    ({quantity: {rmse, mae, count}}), with ``frames``. One frame per call, as labelling and
    timing do, so that one compiled shape serves all three."""
    results = []
    for path in systems:
        system = read_npy_system(path)
        results.append(test_system(pot, system, head=head, batch_atoms=system.natoms))
    merged = merge_metrics([r["metrics"] for r in results])
    return {"frames": sum(r["nframes"] for r in results), **merged}


def evaluate_seconds(pot, atoms, repeats: int, head: str | None = None) -> float:
    """Median seconds of ``pot.evaluate`` on ``atoms`` over ``repeats`` calls, after one
    untimed call (compilation)."""
    coord, symbols = atoms.positions[None], atoms.get_chemical_symbols()
    cell = atoms.cell.array[None] if atoms.pbc.all() else None
    pot.evaluate(coord, cell, symbols, head=head)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        pot.evaluate(coord, cell, symbols, head=head)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def table(report: dict) -> str:
    """A short plain-text table of the report's RMSEs and timings."""
    lines = [f"{'RMSE':40s} {'energy eV/atom':>15s} {'force eV/A':>11s} {'virial eV/atom':>15s}"]
    for name, metrics in report["errors"].items():
        cells = [metrics.get(q, {}).get("rmse") for q in ROWS]
        shown = [f"{c:.4g}" if c is not None else "-" for c in cells]
        label = f"{name} ({metrics['frames']} frames)"
        lines.append(f"{label:40s} {shown[0]:>15s} {shown[1]:>11s} {shown[2]:>15s}")
    speed = report["speed"]
    lines.append(
        f"evaluate, {speed['atoms']} atoms: teacher {speed['teacher_s']:.4g} s, student "
        f"{speed['student_s']:.4g} s, speedup {speed['speedup']:.2f}x"
    )
    return "\n".join(lines + rdf_lines(report.get("rdf")))


def rdf_lines(rdf: dict | None) -> list[str]:
    """The physics check's lines: per pair, the largest |g_student - g_teacher| and where (and
    the teacher's own from other seeds); a model whose MD stopped; every curve's highest peak;
    the plot."""
    if not rdf:
        return []
    settings = rdf["settings"]
    r0, r1 = settings["compare"]
    lines = []
    for pair, diff in rdf["pairs"].items():
        shown = "-" if diff["max_abs_diff"] is None else (
            f"{diff['max_abs_diff']:.3g} at {diff['at_r']:.3g} A")  # fmt: skip
        noise = rdf.get("noise", {}).get(pair, {}).get("max_abs_diff")
        if noise is not None:  # the teacher against itself from other seeds
            shown += f" (teacher, other seeds: {noise:.3g})"
        lines.append(f"g(r) {pair}, NVT {settings['temperature']:g} K, "
                     f"{rdf['teacher']['frames']} frames: largest |student - teacher| over "
                     f"{r0:g}-{r1:g} A {shown}")  # fmt: skip
    for name in ("teacher", "student"):
        if rdf[name].get("failure"):
            lines.append(f"g(r): the {name}'s MD stopped: {rdf[name]['failure']}")
        elif rdf[name].get("outside_check_limits"):
            lines.append(f"g(r): the {name}'s NVT MD left the check's limits "
                         f"({'; '.join(rdf[name]['outside_check_limits'])}): its g(r) is not "
                         f"the liquid's at {settings['temperature']:g} K")  # fmt: skip
    peaks = {name: run["first_peak"] for name, run in rdf.items()
             if isinstance(run, dict) and "first_peak" in run}  # fmt: skip
    for pair in rdf["pairs"]:
        shown = ", ".join(f"{name} {p[pair]['r']:.2f} A ({p[pair]['g']:.2f})"
                          for name, p in peaks.items())  # fmt: skip
        if shown:
            lines.append(f"g(r) {pair} highest peak over {r0:g}-{r1:g} A: {shown}")
    if rdf["files"].get("plot"):
        lines.append(f"g(r) plot: {rdf['files']['plot']}")
    return lines
