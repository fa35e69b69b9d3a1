"""Benchmarks of dpa2_jax; prints one JSON dict {case name: results} to stdout.

Usage: python scripts/benchmark.py [--cases neighbor_list_100k ...] [--repeats 3]

Reference figures: ../shared/BENCHMARKS.md. To add a case, write a function taking the parsed
arguments and returning a JSON-serialisable dict, and register it in CASES.
"""

import argparse
import json
import pathlib
import statistics
import sys
import time
from typing import Callable

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from dpa2_jax.graph import neighbor_list  # noqa: E402

WATER = REPO / "tests" / "systems" / "water" / "data_0"


def tiled_water(n_target: int) -> tuple[np.ndarray, np.ndarray]:
    """The bundled 192-atom water frame tiled k x k x k times, k chosen to reach ~n_target atoms.

    Returns:
        positions [n_atom, 3] and cell [3, 3], Angstrom.
    """
    cell = np.load(WATER / "set.000" / "box.npy")[0].reshape(3, 3).astype(np.float64)
    coords = np.load(WATER / "set.000" / "coord.npy")[0].reshape(-1, 3).astype(np.float64)
    k = max(1, round((n_target / len(coords)) ** (1 / 3)))
    images = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 3)
    positions = (coords[None] + (images @ cell)[:, None]).reshape(-1, 3)  # [k^3 * 192, 3]
    return positions, cell * k


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float], object]:
    """Median wall time of `repeats` calls of fn (seconds), all times, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def neighbor_list_100k(args: argparse.Namespace) -> dict:
    """neighbor_list(rcut 6, sel 120) on ~100,000 atoms of periodic water (8x8x8 tiles)."""
    positions, cell = tiled_water(100_000)
    median, times, nlist = timed(lambda: neighbor_list(positions, cell, 6.0, 120), args.repeats)
    return {
        "atoms": int(len(positions)),
        "rcut": 6.0,
        "sel": 120,
        "edges": nlist.n_edge,
        "max_neighbors": nlist.max_neighbors,
        "seconds_median": round(median, 4),
        "seconds_all": [round(t, 4) for t in times],
    }


CASES: dict[str, Callable[[argparse.Namespace], dict]] = {
    "neighbor_list_100k": neighbor_list_100k,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES),
        help="cases to run (default: all)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (median)")
    args = parser.parse_args()
    print(json.dumps({name: CASES[name](args) for name in args.cases}, indent=2))


if __name__ == "__main__":
    main()
