"""Writes a large DeePMD npy system of 192-atom water, for timing and memory, NOT for accuracy.

Each frame is one of the bundled water frames (tests/systems/water/data_*, DeePMD-kit's
examples/water/data, 400 frames of 192 atoms) with every atom displaced by Gaussian noise
(``--sigma`` Angstrom, default 0.02) and its cell kept; its energy, forces (and the absence of a
virial) are COPIED from the source frame unchanged. The labels therefore do not belong to the
perturbed coordinates: a model trained on this data learns nothing true. The data set exists
only to time and size the input pipeline (``scripts/benchmark.py --cases data_pipeline``) on
pretraining-sized data: its files, frame count and neighbor graphs look like real water.

Layout: OUT/type.raw, OUT/type_map.raw ("O", "H") and OUT/set.000, set.001, ... each holding
``--set-size`` frames (the last one the rest) of coord.npy, box.npy, energy.npy, force.npy in
float32 (as the source; ``--float64`` for float64). 100,000 frames are about 465 MB (float32).

Usage:
    python scripts/make_large_dataset.py /tmp/large_water --frames 100000 [--seed 0]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
SOURCE = REPO / "tests" / "systems" / "water"


def source_frames(root: pathlib.Path = SOURCE) -> dict[str, np.ndarray]:
    """Every frame of the bundled water systems: coord [n, 576], box [n, 9], energy [n],
    force [n, 576] (float64), and type.raw / type_map.raw's text (all systems share them)."""
    parts: dict[str, list[np.ndarray]] = {"coord": [], "box": [], "energy": [], "force": []}
    folders = sorted(p for p in root.glob("data_*") if p.is_dir())
    for set_dir in sorted(s for f in folders for s in f.glob("set.*")):
        for name, rows in parts.items():
            rows.append(np.load(set_dir / f"{name}.npy").astype(np.float64))
    out = {name: np.concatenate(rows) for name, rows in parts.items()}
    out["type_raw"] = (folders[0] / "type.raw").read_text()
    out["type_map_raw"] = (folders[0] / "type_map.raw").read_text()
    return out


def perturbed_set(src: dict, picks: np.ndarray, sigma: float, rng: np.random.Generator,
                  dtype) -> dict[str, np.ndarray]:  # fmt: skip
    """One set's arrays: the frames ``picks`` of ``src`` with coordinates displaced by
    N(0, sigma^2) Angstrom per component, cells and labels copied unchanged."""
    coord = src["coord"][picks] + rng.normal(0.0, sigma, (len(picks), src["coord"].shape[1]))
    return {
        "coord": coord.astype(dtype),
        "box": src["box"][picks].astype(dtype),
        "energy": src["energy"][picks].astype(dtype),
        "force": src["force"][picks].astype(dtype),
    }


def write_dataset(out: str | pathlib.Path, frames: int, set_size: int = 5000, seed: int = 0,
                  sigma: float = 0.02, dtype=np.float32) -> list[pathlib.Path]:  # fmt: skip
    """Writes ``frames`` perturbed water frames to ``out`` (module docstring); returns the set
    folders written."""
    if frames < 1 or set_size < 1:
        raise ValueError(f"frames={frames}, set_size={set_size}: expected positive integers")
    src, rng = source_frames(), np.random.default_rng(seed)
    root = pathlib.Path(out)
    root.mkdir(parents=True, exist_ok=True)
    (root / "type.raw").write_text(src["type_raw"])
    (root / "type_map.raw").write_text(src["type_map_raw"])
    written = []
    for k, start in enumerate(range(0, frames, set_size)):
        picks = rng.integers(0, len(src["energy"]), min(set_size, frames - start))
        set_dir = root / f"set.{k:03d}"
        set_dir.mkdir(exist_ok=True)
        for name, array in perturbed_set(src, picks, sigma, rng, dtype).items():
            np.save(set_dir / f"{name}.npy", array)
        written.append(set_dir)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="folder to write the system into")
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--set-size", type=int, default=5000, help="frames per set.* folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigma", type=float, default=0.02, help="displacement std, Angstrom")
    parser.add_argument("--float64", action="store_true", help="write float64 (default float32)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    sets = write_dataset(args.out, args.frames, args.set_size, args.seed, args.sigma,
                         np.float64 if args.float64 else np.float32)  # fmt: skip
    size = sum(f.stat().st_size for s in sets for f in s.iterdir())
    print(f"{args.out}: {args.frames} frames in {len(sets)} sets, {size / 1e6:.0f} MB, "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
