"""``dpa2-jax convert``: DeePMD-kit models (``.dp``, ``.pt``, ``.pth``) -> one dpa2_jax model
directory."""

from __future__ import annotations

import argparse
import logging

from dpa2_jax.errors import ConfigError
from dpa2_jax.io import convert as convert_io

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Converts DeePMD-kit DPA-2 and se_e2_a energy models into a dpa2_jax model directory (model.json
with the configuration + params/ Orbax checkpoint), loadable with dpa2_jax.load(DST_DIR):

  model.ckpt.pt  a DeePMD-kit 3.x PyTorch training checkpoint (`dp --pt train`), single- or
                 multi-task: every head is kept under its model_dict name. Read without torch;
                 the file's pickle may name only what a checkpoint needs (anything else is
                 refused, never run).
  frozen.pth     a model frozen by `dp --pt freeze` (TorchScript; read, never run).
  model.dp       the HDF5 file written by `dp convert-backend` or by `dpa2-jax export`.

Several files become one multi-task model with a head each (--head keeps one head of a
multi-task file instead); they must share the type map and the descriptor (same options, every variable equal to 1e-12 relative), as models fine-tuned
from one pre-trained model with a frozen descriptor do. Numbers are copied unchanged: lengths in
Angstrom, energies in eV.
"""


NAME = "convert"
HELP = "DeePMD-kit .pt/.pth/.dp model(s) -> dpa2_jax model directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dpa2-jax convert``."""
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="SRC [SRC2 ...] DST_DIR: the .pt/.pth/.dp files, then the "
                        "directory to write")  # fmt: skip
    parser.add_argument("--head-names", metavar="A,B", default=None,
                        help="comma-separated head names, one per head (default: a multi-task "
                        "checkpoint's own head names; else the file stems, 'default' for a "
                        "single file)")  # fmt: skip
    parser.add_argument("--head", metavar="NAME", default=None,
                        help="keep only this head (or DeePMD-kit model_branch_alias) of a "
                        "multi-task SRC, as `dp freeze --head` does")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing DST_DIR; only a dpa2_jax model directory (or "
                        "an empty folder) holding none of the sources is ever replaced")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if len(args.paths) < 2:
        raise ConfigError("convert: give at least one SRC (.pt, .pth or .dp) and the DST_DIR")
    *srcs, dst = args.paths
    names = None
    if args.head_names is not None:
        names = [n.strip() for n in args.head_names.split(",")]
    cfg = convert_io.convert(srcs, dst, head_names=names, overwrite=args.overwrite,
                             head=args.head)  # fmt: skip
    logger.info("wrote %s: type map %s, heads %s", dst, list(cfg.type_map), list(cfg.head_names))
    return 0
