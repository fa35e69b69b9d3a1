"""``dpa2-jax change-bias``: refit a model's energy bias on labelled data (as ``dp change-bias``)."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Refits one head's per-element energy bias (out_bias, eV) on labelled systems by least squares,
as DeePMD-kit's `dp change-bias` does; nothing else changes. With --mode change (default) the fit
of the residual E_label - E_model is added to the bias; with --mode set the bias is refitted from
scratch. This is what fine-tuning does before its first step, and often most of a pretrained
model's error on new data (zero-shot use).

MODEL is a training workdir, a dpa2_jax model directory or a DeePMD .dp file; SYSTEM... are
DeePMD npy systems (or folders holding them) or ASE files with energies. OUTPUT is a new model
directory, or a .dp file. Elements absent from the data keep their bias.
"""


NAME = "change-bias"
HELP = "refit a model's energy bias on labelled data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dpa2-jax change-bias``."""
    parser.add_argument("model", metavar="MODEL",
                        help="workdir, model directory, .dp, or DeePMD-kit .pt/.pth")  # fmt: skip
    parser.add_argument("systems", metavar="SYSTEM", nargs="+", help="labelled systems")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                        help="the model directory (or .dp file) to write")  # fmt: skip
    parser.add_argument("--head", default=None, help="head of a multi-head model")
    parser.add_argument(
        "--mode",
        choices=("change", "set"),
        default="change",
        help="add the fitted correction (change) or refit the bias (set)",
    )
    parser.add_argument("--frames", type=int, default=10, metavar="N",
                        help="frames per system used for the fit (default 10, DeePMD's "
                        "data_stat_nbatch)")  # fmt: skip
    parser.add_argument("--bias-prior", nargs="+", default=None, metavar="EL=EV",
                        help="per-element energies (eV, e.g. isolated atoms) that the bias "
                        "follows where the data cannot separate the elements")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")


def run(args: argparse.Namespace) -> int:
    from dpa2_jax.data.dataset import read_systems
    from dpa2_jax.errors import CheckpointError, ConfigError
    from dpa2_jax.io.checkpoints import save_model
    from dpa2_jax.io.convert import export, read_model
    from dpa2_jax.train.finetune import refit_energy_bias

    if os.path.lexists(args.output) and not args.overwrite:
        raise CheckpointError(f"{args.output}: already exists (use --overwrite to replace it)")
    if args.frames < 1:
        raise ConfigError(f"--frames {args.frames}: give at least 1")
    cfg, params, meta = read_model(args.model)
    if args.head is None and len(cfg.heads) > 1:
        raise ConfigError(f"{args.model}: the model has heads {list(cfg.head_names)}; choose one "
                          "with --head NAME")  # fmt: skip
    head = cfg.resolve_head(args.head)
    systems = read_systems(args.systems, cfg.type_map)
    params = refit_energy_bias(cfg, params, head, systems, args.frames, args.mode,
                               parse_bias_prior(args.bias_prior))  # fmt: skip
    bias = dict(zip(cfg.type_map, params["heads"][head]["out_bias"].tolist()))
    metadata = {**meta, "change_bias": {"systems": [os.path.abspath(s) for s in args.systems],
                                        "mode": args.mode, "head": head}}  # fmt: skip
    if args.output.endswith(".dp"):
        with tempfile.TemporaryDirectory() as tmp:
            save_model(os.path.join(tmp, "model"), cfg, params, metadata=metadata)
            export(os.path.join(tmp, "model"), args.output, head=head, overwrite=args.overwrite)
    else:
        save_model(args.output, cfg, params, metadata=metadata, overwrite=args.overwrite,
                   sources=[args.model])  # fmt: skip
    print(
        f"energy bias of head {head!r} ({args.mode}): "
        + ", ".join(f"{e} {b:.4f} eV" for e, b in bias.items())
        + f"; wrote {args.output}"
    )
    return 0


def parse_bias_prior(items: list[str] | None) -> dict[str, float] | None:
    """{element: eV} from ``--bias-prior Ge=-107.2 Te=-220.5``; ConfigError naming a bad item."""
    from dpa2_jax.errors import ConfigError

    if items is None:
        return None
    out = {}
    for item in items:
        element, _, value = item.partition("=")
        try:
            out[element] = float(value)
        except ValueError:
            raise ConfigError(f"--bias-prior {item!r}: give ELEMENT=ENERGY_EV") from None
    return out
