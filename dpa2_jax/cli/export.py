"""``dpa2-jax export``: a dpa2_jax model directory (or .dp) -> a DeePMD-kit ``.dp`` file."""

from __future__ import annotations

import argparse
import logging

from dpa2_jax.io.convert import export

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Writes one head of a dpa2_jax model directory (or of a .dp file) as a DeePMD-kit .dp file
(HDF5: serialized model + the `model` input section as model_def_script). DeePMD-kit 3.2 loads
it directly (`dp test -m DST.dp`, deepmd.infer.DeepPot("DST.dp")) or converts it to another
backend with `dp convert-backend DST.dp model.pth`. Units are unchanged: Angstrom, eV.
An existing DST.dp is never replaced without --overwrite.
"""


NAME = "export"
HELP = "dpa2_jax model -> DeePMD .dp file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dpa2-jax export``."""
    parser.add_argument("src", metavar="SRC",
                        help="dpa2_jax model directory, .dp, or DeePMD-kit .pt/.pth")  # fmt: skip
    parser.add_argument("dst", metavar="DST.dp", help="the .dp file to write")
    parser.add_argument("--head", default=None,
                        help="head to export (required for multi-head models)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DST.dp")


def run(args: argparse.Namespace) -> int:
    head = export(args.src, args.dst, head=args.head, overwrite=args.overwrite)
    logger.info("wrote head %r of %s to %s", head, args.src, args.dst)
    return 0
