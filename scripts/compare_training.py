#!/usr/bin/env python
"""Accuracy after training: dpa2_jax beside DeePMD-kit 3.2.0's PyTorch backend, same input.

For each seed it writes one DeePMD ``input.json`` from configs/water_small.py (DeePMD-kit's
examples/water/dpa2/input_torch_small.json: small DPA-2, float64, batch 1, water data_0..2 for
training, data_3 for validation) with ``numb_steps`` and ``seed`` set, trains it with
``dpa2-jax train`` and with ``dp --pt train``, and tests both final models on every frame of
data_3 with each program's own ``test`` command (``dpa2-jax test`` and ``dp --pt test``, which
both report the force RMSE over all components). Prints one JSON object: per-seed RMSEs, their
means and the ratio ours / DeePMD-kit.

    python scripts/compare_training.py --steps 2000 --seeds 1 2 --out runs/compare \\
        --reference-python /tmp/ptvenv/bin/python

``--precision float32`` trains both in float32 (descriptor and fitting net); ``--programs
dpa2_jax`` trains ours alone (e.g. float32 beside a float64 run).

The reference environment is the one of scripts/make_training_reference.py. ``--parallel``
runs dpa2_jax and DeePMD-kit side by side, each pinned to its own core (one thread each):
accuracy does not depend on it, wall time halves on 2 cores; time per step is measured by
scripts/benchmark.py, not here.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# DeePMD-kit 3.2.0's operator library refuses torch 2.13; DPA-2 needs none of its operators.
DP_MAIN = (
    "import pathlib, sys, deepmd.env; deepmd.env.SHARED_LIB_DIR = pathlib.Path('/nonexistent'); "
    "from deepmd.main import main; main(sys.argv[1:])"
)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "DP_INTRA_OP_PARALLELISM_THREADS": "1",
              "DP_INTER_OP_PARALLELISM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}  # fmt: skip


def write_input(folder: pathlib.Path, steps: int, seed: int, precision: str) -> pathlib.Path:
    """DeePMD input.json from configs/water_small.py with absolute system paths, descriptor and
    fitting net in ``precision``."""
    from configs import water_small

    d = water_small.get_config().to_dict()
    d["model"]["descriptor"]["precision"] = precision
    d["model"]["fitting_net"]["precision"] = precision
    base = REPO / "configs"
    for section in ("training_data", "validation_data"):
        data = d["training"][section]
        data["systems"] = [str((base / s).resolve()) for s in data["systems"]]
    d["training"].update(numb_steps=steps, seed=seed, save_freq=steps)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "input.json"
    path.write_text(json.dumps(d, indent=1))
    return path


def force_rmse(text: str) -> float:
    """The (last, i.e. weighted-average) force RMSE line of a dp-test-style report."""
    found = re.findall(r"Force\s+RMSE\s*:\s*([0-9.eE+-]+)", text)
    if not found:
        raise RuntimeError(f"no 'Force RMSE' in the test report:\n{text[-2000:]}")
    return float(found[-1])


def jobs(seed_dir: pathlib.Path, ref_python: str, parallel: bool) -> dict[str, list[list[str]]]:
    ours = seed_dir / "dpa2_jax"
    val = json.loads((seed_dir / "input.json").read_text())["training"]["validation_data"]
    dp = [ref_python, "-c", DP_MAIN]
    dpa2 = [sys.executable, "-m", "dpa2_jax.cli.main"]
    pin = (lambda core: ["taskset", "-c", str(core)]) if parallel else (lambda core: [])
    return {
        "dpa2_jax": [
            pin(0) + dpa2 + ["train", str(seed_dir / "input.json"), "--workdir", str(ours)],
            dpa2 + ["test", str(ours), *val["systems"]],
        ],
        "deepmd": [
            pin(1) + dp + ["--pt", "train", str(seed_dir / "input.json")],
            dp + ["--pt", "freeze", "-o", "frozen.pth"],
            dp + ["--pt", "test", "-m", "frozen.pth", "-s", val["systems"][0]],
        ],
    }


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default="runs/compare")
    parser.add_argument("--reference-python", default="/tmp/ptvenv/bin/python")
    parser.add_argument("--parallel", action="store_true",
                        help="run both programs at once, one core and one thread each")  # fmt: skip
    parser.add_argument("--precision", choices=["float64", "float32"], default="float64",
                        help="of the descriptor and fitting net, in both programs")  # fmt: skip
    parser.add_argument("--programs", nargs="+", choices=["dpa2_jax", "deepmd"],
                        default=["dpa2_jax", "deepmd"], help="which to train (default: both)")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="skip training: test the trained runs already in --out")  # fmt: skip
    args = parser.parse_args()
    out = pathlib.Path(args.out).resolve()
    env = {**os.environ, **(ONE_THREAD if args.parallel else {})}
    chains: dict[str, list[list[str]]] = {name: [] for name in args.programs}
    reports: dict[str, list[pathlib.Path]] = {name: [] for name in args.programs}
    for seed in args.seeds:
        seed_dir = out / f"seed{seed}"
        if not args.evaluate_only:
            write_input(seed_dir, args.steps, seed, args.precision)
        for name, commands in jobs(seed_dir, args.reference_python, args.parallel).items():
            if name not in chains:
                continue
            folder = seed_dir / name
            if args.evaluate_only:
                commands = commands[1:]  # the trained run stays; test (and freeze) again
            elif folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True, exist_ok=True)
            first = 1 if args.evaluate_only else 0
            logs = [folder / f"{name}.{k + first}.log" for k in range(len(commands))]
            chains[name] += [["cd", str(folder)]] + [
                c + [">", str(log), "2>&1"] for c, log in zip(commands, logs)
            ]
            reports[name].append(logs[-1])
    # one shell chain per program, seeds one after another
    procs = {}
    for name, commands in chains.items():
        script = " && ".join(" ".join(_quote(a) if a not in (">", "2>&1") else a for a in c)
                             for c in commands)  # fmt: skip
        procs[name] = subprocess.Popen(["bash", "-c", script], env=env)
        if not args.parallel:
            procs[name].wait()
    for name, proc in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"{name} failed: see the logs under {out}")
    results = {
        seed: {name: force_rmse(reports[name][k].read_text()) for name in chains}
        for k, seed in enumerate(args.seeds)
    }
    mean = {k: sum(r[k] for r in results.values()) / len(results) for k in chains}
    summary = {"steps": args.steps, "precision": args.precision,
               "force_rmse_per_seed": results, "mean": mean}  # fmt: skip
    if len(chains) == 2:
        summary["ratio_ours_over_deepmd"] = mean["dpa2_jax"] / mean["deepmd"]
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
