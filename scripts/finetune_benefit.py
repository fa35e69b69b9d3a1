"""Does pretraining pay? Fine-tuning a multi-task pretrained DPA-2 against training from scratch,
on data the pretraining never saw, for several training-set sizes (the DPA-2 paper's
learning-curve figure, in miniature).

    python scripts/finetune_benefit.py --workdir runs/benefit                 # ours, ~1 h
    python scripts/finetune_benefit.py --workdir runs/benefit --pretrained W  # reuse a pretraining
    python scripts/finetune_benefit.py --workdir runs/tiny --tiny             # minutes (the test)

1. Pretrain ``configs/pretrain_mini.py`` (water, water with virials, C/H/O molecules; one head
   each) for ``--pretrain-steps`` steps, or take ``--pretrained``.
2. Targets left out of pretraining: the C/H/N/O molecules (N is in no pretraining set; the
   first half of each molecule's frames is the training pool, the rest validation) and GeTe
   (two elements the pretrained model never saw; frames 0-19 the pool, 20-35 validation).
3. For each target and size n (frames taken from the start of the pool), with the same input
   (the tiny DPA-2 of configs/tiny.py, the target's own type map), steps and seed:
   * from scratch: ``dpa2-jax train``;
   * fine-tuned: ``dpa2-jax train --finetune PRETRAINED --model-branch BRANCH``;
   * zero-shot: the fine-tuning start, no step taken (the pretrained descriptor and head with
     the energy bias refitted on the n frames: ``change-bias`` alone).
4. Validation energy (per atom) and force RMSE of each model, as ``results.json``, a markdown
   table (``results.md``) and ``benefit.png`` (force RMSE against n, one line per method).

DeePMD-kit beside it, with the same pretraining budget and the same fine-tuning inputs:

    python scripts/finetune_benefit.py --workdir W --deepmd-pretrain-input W/dp_pre.json
    (cd W/dp_pre && dp --pt train ../dp_pre.json)         # stop it after our pretraining's time
    python scripts/finetune_benefit.py --workdir W --pretrained P \
        --deepmd-python DP_VENV/bin/python --deepmd-pretrained W/dp_pre/model.ckpt-N.pt

The first writes configs/pretrain_mini.py as DeePMD-kit's multi-task input.json (absolute data
paths); the last fine-tunes DeePMD-kit from that checkpoint on every input ours uses (`dp --pt
train --finetune --model-branch`, then `freeze` and `test` on the validation systems) and adds
its errors to the table and plot. ``--deepmd-results FILE`` adds figures made elsewhere (a JSON
{target: {n: {"rmse_f", "rmse_e"}}}).
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
import time


ROOT = pathlib.Path(__file__).resolve().parents[1]
SYSTEMS = ROOT / "tests" / "systems"
sys.path.insert(0, str(ROOT))


def _pool_and_validation(target: str):
    """(training pool systems, validation systems) of a target, as Systems."""
    from dpa2_jax.data.npy_system import read_npy_system

    if target == "chno":
        pools, valids = [], []
        for name in ("H8C4N2O", "H10C5N2O"):
            s = read_npy_system(SYSTEMS / "chno_molecules" / name)
            half = s.nframes // 2
            pools.append(s.select_frames(slice(0, half)))
            valids.append(s.select_frames(slice(half, None)))
        return pools, valids
    if target == "gete":
        s = read_npy_system(SYSTEMS / "gete")
        return [s.select_frames(slice(0, 20))], [s.select_frames(slice(20, None))]
    raise ValueError(f"unknown target {target!r}: use chno or gete")


TYPE_MAPS = {"chno": ["C", "H", "N", "O"], "gete": ["Ge", "Te"]}


def _subset(pools, n: int):
    """n frames from the start of the pools, shared out in turn (largest pools first)."""
    take = [0] * len(pools)
    for k in range(n):
        options = [i for i, p in enumerate(pools) if take[i] < p.nframes]
        if not options:
            break
        take[options[k % len(options)]] += 1
    return [p.select_frames(slice(0, t)) for p, t in zip(pools, take) if t > 0]


def _write(systems, folder: pathlib.Path) -> list[str]:
    from dpa2_jax.data.npy_system import write_npy_system

    return [write_npy_system(s, folder / f"sys{k}") for k, s in enumerate(systems)]


def _input(target: str, train: list[str], valid: list[str], steps: int, seed: int) -> dict:
    model = _tiny_model()
    model["type_map"] = TYPE_MAPS[target]
    return {
        "model": model,
        "learning_rate": {"type": "exp", "decay_steps": max(1, steps // 20), "start_lr": 1e-3,
                          "stop_lr": 1e-5},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
                 "limit_pref_f": 1},
        "training": {
            "training_data": {"systems": train, "batch_size": 1},
            "validation_data": {"systems": valid, "batch_size": 1, "numb_btch": 1},
            "numb_steps": steps, "seed": seed, "disp_freq": max(1, steps // 5),
            "save_freq": max(1, steps), "max_ckpt_keep": 1,
        },
    }  # fmt: skip


def _tiny_model() -> dict:
    import importlib.util

    spec = importlib.util.spec_from_file_location("configs.tiny", ROOT / "configs" / "tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config().model.to_dict()


def _train(input_dict: dict, workdir: pathlib.Path, *extra: str) -> None:
    from dpa2_jax.cli.main import main

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "input.json"
    path.write_text(json.dumps(input_dict, indent=1))
    code = main(["train", str(path), "--workdir", str(workdir / "run"), *extra])
    if code != 0:
        raise SystemExit(f"training in {workdir} failed (exit status {code})")


def _validate(model_dir: pathlib.Path, valid) -> dict[str, float]:
    """Energy per atom and force RMSE over the validation frames."""
    import dpa2_jax
    from dpa2_jax.metrics import merge_metrics, test_system

    pot = dpa2_jax.load(model_dir)
    metrics = merge_metrics([test_system(pot, s)["metrics"] for s in valid])
    return {"rmse_e": metrics["energy_per_atom"]["rmse"], "rmse_f": metrics["forces"]["rmse"]}


def run(args: argparse.Namespace) -> dict:
    work = pathlib.Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pretrained = args.pretrained
    if pretrained is None:
        pretrained = str(work / "pretrain")
        if not (pathlib.Path(pretrained) / "model" / "model.json").exists():
            from dpa2_jax.cli.main import main

            overrides = [*pretrain_schedule(args.pretrain_steps),
                         f"training.save_freq={max(1, args.pretrain_steps // 4)}"]  # fmt: skip
            code = main(["train", str(ROOT / "configs" / "pretrain_mini.py"), "--workdir",
                         pretrained, *(f"--config.{item}" for item in overrides)])  # fmt: skip
            if code != 0:
                raise SystemExit("pretraining failed")
    pretrain_s = time.perf_counter() - t0
    results: dict = {"pretrained": pretrained, "pretrain_seconds": pretrain_s, "steps": args.steps,
                     "targets": {}}  # fmt: skip
    for target in args.targets:
        pools, valids = _pool_and_validation(target)
        valid_dirs = _write(valids, work / "data" / target / "valid")
        pool = sum(p.nframes for p in pools)
        for n in sorted({min(n, pool) for n in args.sizes}):
            train_dirs = _write(_subset(pools, n), work / "data" / target / f"train_{n}")
            base = work / target / str(n)
            row = {}
            for method, steps, extra in (
                ("zero_shot", 0, ["--finetune", pretrained, "--model-branch", args.branch]),
                ("finetuned", args.steps, ["--finetune", pretrained, "--model-branch",
                                           args.branch]),
                ("scratch", args.steps, []),
            ):  # fmt: skip
                folder = base / method
                if not (folder / "run" / "model" / "model.json").exists():
                    _train(_input(target, train_dirs, valid_dirs, steps, args.seed), folder,
                           *extra)  # fmt: skip
                row[method] = _validate(folder / "run", valids)
                print(
                    f"{target} n={n} {method}: force RMSE {row[method]['rmse_f']:.4f} eV/A, "
                    f"energy RMSE {row[method]['rmse_e']:.4f} eV/atom",
                    flush=True,
                )
            results["targets"].setdefault(target, {})[str(n)] = row
            if args.deepmd_python:
                dp = deepmd_finetune(args, base / "finetuned" / "input.json", base / "deepmd",
                                     work / "data" / target / "valid")  # fmt: skip
                results.setdefault("deepmd", {}).setdefault(target, {})[str(n)] = dp
                print(f"{target} n={n} DeePMD-kit fine-tuned: force RMSE {dp['rmse_f']:.4f} eV/A, "
                      f"energy RMSE {dp['rmse_e']:.4f} eV/atom", flush=True)  # fmt: skip
    if args.deepmd_results:
        results["deepmd"] = json.loads(pathlib.Path(args.deepmd_results).read_text())
    results["seconds"] = time.perf_counter() - t0
    (work / "results.json").write_text(json.dumps(results, indent=1))
    (work / "results.md").write_text(table(results))
    plot(results, work / "benefit.png")
    return results


DP_MAIN = "import sys; from deepmd.main import main; main(sys.argv[1:])"


def pretrain_schedule(steps: int) -> list[str]:
    """Overrides of configs/pretrain_mini.py for ``steps`` pretraining steps (ours and
    DeePMD-kit's alike): the step count, the learning-rate decay interval and the display."""
    return [f"training.numb_steps={steps}", f"learning_rate.decay_steps={max(1, steps // 30)}",
            f"training.disp_freq={max(1, steps // 20)}"]  # fmt: skip


def deepmd_pretrain_input(steps: int) -> dict:
    """configs/pretrain_mini.py as DeePMD-kit's multi-task input.json: the same model, tasks,
    losses, probabilities and schedule as our pretraining of ``steps`` steps."""
    from dpa2_jax.train.config import config_dict

    d = config_dict(ROOT / "configs" / "pretrain_mini.py", [
        *pretrain_schedule(steps), f"training.save_freq={max(1, steps // 15)}",
        "training.max_ckpt_keep=20"])  # fmt: skip
    for task in d["training"]["data_dict"].values():
        for part in task.values():
            part["systems"] = [str((ROOT / "configs" / p).resolve()) for p in part["systems"]]
    return d


def deepmd_finetune(args, input_path: pathlib.Path, folder: pathlib.Path, valid: pathlib.Path):
    """DeePMD-kit 3.2.0 fine-tuned on our input file: validation force and energy RMSE."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(input_path, folder / "input.json")
    dp = [args.deepmd_python, "-c", DP_MAIN, "--pt"]
    report = folder / "test.out"
    if not report.exists():
        for cmd in (["train", "input.json", "--finetune", str(pathlib.Path(args.deepmd_pretrained)
                     .resolve()), "--model-branch", args.branch, "--skip-neighbor-stat"],
                    ["freeze", "-o", "frozen.pth"],
                    ["test", "-m", "frozen.pth", "-s", str(valid.resolve())]):  # fmt: skip
            proc = subprocess.run(dp + cmd, cwd=folder, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"DeePMD-kit {cmd[0]} in {folder} failed:\n{proc.stderr[-3000:]}")
        report.write_text(proc.stdout + proc.stderr)
    text = report.read_text()

    def last(name: str) -> float:  # the weighted average over systems comes last
        return float(re.findall(name + r"\s*:\s*([0-9.eE+-]+)", text)[-1])

    return {"rmse_f": last(r"Force\s+RMSE"), "rmse_e": last(r"Energy RMSE/Natoms")}


METHODS = (("finetuned", "fine-tuned"), ("scratch", "from scratch"), ("zero_shot", "zero-shot"))


def table(results: dict) -> str:
    """Markdown: validation force RMSE (eV/A) and energy RMSE (eV/atom) per target and size."""
    deepmd = results.get("deepmd", {})
    head = ["target", "frames", *(name for _, name in METHODS)]
    if deepmd:
        head.append("DeePMD-kit fine-tuned")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for target, rows in results["targets"].items():
        for n, row in rows.items():
            cells = [f"{row[m]['rmse_f']:.3f}, {row[m]['rmse_e']:.4f}" for m, _ in METHODS]
            if deepmd:
                d = deepmd.get(target, {}).get(n)
                cells.append(f"{d['rmse_f']:.3f}, {d['rmse_e']:.4f}" if d else "-")
            lines.append(f"| {target} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nEach cell: force RMSE (eV/A), energy RMSE (eV/atom).\n"


def plot(results: dict, path: pathlib.Path) -> None:
    """Force RMSE against training-set size, a panel per target."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'dpa2_jax[plot]')")
        return
    targets = list(results["targets"])
    fig, axes = plt.subplots(1, len(targets), figsize=(4.5 * len(targets), 3.6), squeeze=False)
    for ax, target in zip(axes[0], targets):
        rows = results["targets"][target]
        sizes = [int(n) for n in rows]
        for key, name in METHODS:
            ax.plot(sizes, [rows[str(n)][key]["rmse_f"] for n in sizes], "o-", label=name)
        d = results.get("deepmd", {}).get(target)
        if d:
            ds = sorted(int(n) for n in d)
            ax.plot(ds, [d[str(n)]["rmse_f"] for n in ds], "s--", label="DeePMD-kit fine-tuned")
        ax.set(title=target, xlabel="training frames", ylabel="validation force RMSE (eV/A)",
               xscale="log")  # fmt: skip
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--pretrained", default=None, help="reuse a pretrained model")
    parser.add_argument(
        "--pretrain-steps",
        type=int,
        default=15000,
        help="pretraining steps (15,000: 27 minutes on one core here)",
    )
    parser.add_argument("--steps", type=int, default=500, help="fine-tuning/scratch steps")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--targets", nargs="+", default=["chno", "gete"])
    parser.add_argument(
        "--branch", default="RANDOM", help="pretrained head to start from, or RANDOM (a fresh head)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--deepmd-results", default=None)
    parser.add_argument(
        "--deepmd-python",
        default=None,
        help="a Python with deepmd-kit 3.2.0 and torch: fine-tune it too",
    )
    parser.add_argument(
        "--deepmd-pretrained",
        default=None,
        help="with --deepmd-python: DeePMD-kit's multi-task checkpoint (.pt)",
    )
    parser.add_argument(
        "--deepmd-pretrain-input",
        default=None,
        help="write DeePMD-kit's pretraining input.json here and stop",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a few steps and sizes 2 and 4 (a smoke test of the pipeline)",
    )
    args = parser.parse_args()
    if args.tiny:
        args.pretrain_steps, args.steps, args.sizes = 10, 4, [2, 4]
    if args.deepmd_pretrain_input:
        path = pathlib.Path(args.deepmd_pretrain_input)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(deepmd_pretrain_input(args.pretrain_steps), indent=1))
        print(f"wrote {path}: run `dp --pt train {path.name}` in a folder beside it")
        return
    if args.deepmd_python and not args.deepmd_pretrained:
        parser.error("--deepmd-python needs --deepmd-pretrained CHECKPOINT")
    os.environ.setdefault("TQDM_DISABLE", "1")
    results = run(args)
    print(table(results))
    print(json.dumps({k: v for k, v in results.items() if k != "targets"}))


if __name__ == "__main__":
    main()
