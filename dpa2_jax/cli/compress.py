"""``dpa2-jax compress``: tabulate a se_e2_a model's embedding nets (as ``dp compress``)."""

from __future__ import annotations

import argparse
import logging
import os

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Replaces the embedding nets of a se_e2_a model by piecewise quintic tables of them, as
DeePMD-kit's `dp compress` does (dpa2_jax/descriptor/se_e2_a/tabulate.py): a fine stride on the
range of the normalised s(r) that the training data reaches, a coarse stride (10x) up to
--extrapolate times its upper end, and linear continuation beyond. The range needs the data's
closest pair distance: give the training systems (DeePMD npy folders, folders holding them, or
ASE files) or --min-dist in Angstrom.

MODEL is a training workdir, a dpa2_jax model directory or a DeePMD .dp file; OUTPUT is a new
dpa2_jax model directory (dpa2_jax.load reads it). The nets stay in it, so `dpa2-jax export`
writes the uncompressed model.
"""


NAME = "compress"
HELP = "tabulate a se_e2_a model's embedding nets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dpa2-jax compress``."""
    parser.add_argument("model", metavar="MODEL",
                        help="workdir, model directory, .dp, or DeePMD-kit .pt/.pth")  # fmt: skip
    parser.add_argument("output", metavar="OUTPUT", help="the model directory to write")
    parser.add_argument("-t", "--data", nargs="+", metavar="SYSTEM", default=None,
                        help="training systems: their closest pair sets the table range")  # fmt: skip
    parser.add_argument("--min-dist", type=float, default=None, metavar="A",
                        help="the training data's closest pair distance, Angstrom")  # fmt: skip
    parser.add_argument(
        "-s",
        "--stride",
        type=float,
        default=0.01,
        help="fine table stride in normalised s (default 0.01; coarse: 10x)",
    )
    parser.add_argument("-e", "--extrapolate", type=float, default=5.0,
                        help="the table ends at this multiple of the data's upper bound "
                        "(default 5)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")


def run(args: argparse.Namespace) -> int:
    from dpa2_jax.data.dataset import read_systems
    from dpa2_jax.descriptor import family_of
    from dpa2_jax.errors import ConfigError
    from dpa2_jax.graph.neighbors import min_neighbor_distance
    from dpa2_jax.io.checkpoints import save_model
    from dpa2_jax.io.convert import read_model

    if (args.data is None) == (args.min_dist is None):
        raise ConfigError("compress: give either --data SYSTEM... or --min-dist A")
    cfg, params, meta = read_model(args.model)
    desc = cfg.descriptor
    compress = family_of(desc).compress
    if compress is None:
        raise ConfigError(f"{args.model}: descriptor {desc.family!r}; only se_e2_a compresses")
    min_dist = args.min_dist
    if min_dist is None:
        frames = [f for s in read_systems(args.data, cfg.type_map) for f in s.frames()]
        min_dist = min_neighbor_distance(frames, desc.rcut)
    if min_dist <= 0:
        raise ConfigError(f"compress: --min-dist {min_dist}: expected a positive distance")
    descriptor = compress(params["descriptor"], desc, min_dist, args.stride, args.extrapolate)
    settings = {"min_dist": min_dist, "stride": args.stride, "extrapolate": args.extrapolate}
    save_model(args.output, cfg, {**params, "descriptor": descriptor},
               metadata={**meta, "compress": settings}, overwrite=args.overwrite,
               sources=[args.model])  # fmt: skip
    grids = [t["grid"] for t in descriptor["block"]["tables"]]
    print(
        f"compressed {len(grids)} embedding nets (closest pair {min_dist:.4f} A; s~ in "
        + ", ".join(f"[{g[0]:g}, {g[1]:g}] then to {g[2]:g}" for g in grids)
        + f"); wrote {os.fspath(args.output)}"
    )
    return 0
