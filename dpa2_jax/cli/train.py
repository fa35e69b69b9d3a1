"""``dpa2-jax train``: train a model from DeePMD npy systems or ASE files."""

from __future__ import annotations

import argparse
import logging
import shlex

from dpa2_jax.errors import ConfigError, Interrupted
from dpa2_jax.train import distributed

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Trains a model as DeePMD-kit's `dp train` does, on the same input.

INPUT is a DeePMD-kit training input.json (sections model, learning_rate, loss, training; e.g.
DeePMD-kit's examples/water/dpa2/input_torch_small.json) or a configs/*.py file whose
get_config() returns the same sections. System paths are relative to INPUT. Any field can be
overridden: --config.training.numb_steps=2000 --config.learning_rate.start_lr=1e-3
(values are read as JSON, else as text).

WORKDIR receives: lcurve.out (DeePMD-kit's learning-curve columns: rmse_e per atom in eV,
rmse_f in eV/Angstrom, rmse_v per atom in eV, learning rate), checkpoints/ (Orbax, every
save_freq steps, the last max_ckpt_keep kept) and model/ (the trained model; dpa2_jax.load(WORKDIR),
`dpa2-jax test WORKDIR ...` and `dpa2-jax export WORKDIR model.dp` read it).
--restart continues from the latest checkpoint with the same data order and numbers as an
uninterrupted run.

Multi-task training (DeePMD-kit's model_dict / shared_dict / loss_dict / data_dict /
model_prob): one shared descriptor, a head per task; each step trains one sampled task's head and
the descriptor. lcurve.out gets every task's columns (rmse_f_val_TASK ...). Use a head with
`dpa2-jax test WORKDIR SYSTEM --head TASK`, dpa2_jax.load(WORKDIR).evaluate(..., head=TASK).

Several devices: every visible device trains data parallel, each on its own batch of
batch_size frames (global batch = devices x batch_size); --distributed starts one process per
host (docs/distributed.md).

Fine-tuning: --finetune PRETRAINED (a training workdir, model directory, DeePMD-kit .dp, or a
DeePMD-kit PyTorch checkpoint model.ckpt.pt / frozen .pth, read without torch) with
--model-branch HEAD (start from that head's fitting net) or RANDOM (a fresh one). The input's
type map wins: new elements get new type-embedding rows and statistics (with a warning); the
energy bias is refitted on the training data first (as `dpa2-jax change-bias`). Options:
--config.training.freeze_descriptor=true (train the head only),
--config.training.descriptor_lr_scale=0.1 (a smaller learning rate for the descriptor).
"""


NAME = "train"
HELP = "train a model (DeePMD input.json or configs/*.py)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dpa2-jax train``."""
    parser.add_argument("input", metavar="INPUT", help="input.json or configs/NAME.py")
    parser.add_argument("--workdir", required=True, metavar="DIR",
                        help="folder for lcurve.out, checkpoints/ and model/")  # fmt: skip
    parser.add_argument("--restart", action="store_true",
                        help="continue from the latest checkpoint in WORKDIR")  # fmt: skip
    parser.add_argument(
        "--finetune",
        metavar="PRETRAINED",
        default=None,
        help="start from a pretrained model (workdir, model directory, DeePMD-kit .dp, "
        ".pt checkpoint or frozen .pth)",
    )
    parser.add_argument(
        "--model-branch",
        metavar="HEAD",
        default=None,
        help="with --finetune: the pretrained head to start from, or RANDOM for "
        "a fresh fitting net (needed when the pretrained model has several)",
    )
    distributed.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    distributed.initialize(args)  # before any other JAX call
    from dpa2_jax.train.config import config_overrides, read_input
    from dpa2_jax.train.finetune import Finetune
    from dpa2_jax.train.loop import train_and_evaluate

    run_cfg = read_input(args.input, config_overrides("train", getattr(args, "extra", [])))
    if args.model_branch is not None and args.finetune is None:
        raise ConfigError("--model-branch needs --finetune PRETRAINED")
    finetune = Finetune(args.finetune, args.model_branch) if args.finetune else None
    try:
        result = train_and_evaluate(run_cfg, args.workdir, restart=args.restart, finetune=finetune)
    except Interrupted as err:
        again = ["dpa2-jax", "train", args.input, "--workdir", args.workdir,
                 *getattr(args, "extra", [])]
        again.append("--restart")
        raise Interrupted(f"{err}; continue with: {shlex.join(again)}", err.signum) from None
    shown = ", ".join(f"{k} {v:.4g}" for k, v in result.items() if k.startswith("rmse"))
    validated = all(t.validation_data is not None for t in run_cfg.tasks)
    if not distributed.is_chief():
        return 0
    print(f"{_what_was_done(result)}; {'validation' if validated else 'training'}: {shown}")
    print(f"next: dpa2-jax test {args.workdir} SYSTEM   |   dpa2-jax export {args.workdir} "
          f"model.dp   |   dpa2_jax.load({args.workdir!r})")  # fmt: skip
    return 0


def _what_was_done(result: dict) -> str:
    """"trained N steps in T s on D device(s) (C compilations)", or that nothing was left."""
    steps, first = result["steps"], result["first_step"]
    if steps == first:
        return f"nothing to train: the run is at its last step ({steps})"
    since = f" (from step {first})" if first else ""
    return (f"trained {steps - first} steps{since} in {result['seconds']:.1f} s on "
            f"{result['devices']} device(s) ({result['compilations']} compilations)")  # fmt: skip
