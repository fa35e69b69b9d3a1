"""``dpa2-jax``: one console script, one module per subcommand (``dpa2_jax/cli/<name>.py``).

Each subcommand module exposes ``NAME``, ``HELP``, ``DESCRIPTION``, ``add_arguments(parser)``
and ``run(args)``. Errors that dpa2_jax raises on purpose (`Dpa2JaxError`) are printed as
``dpa2-jax: error: <message>`` with exit status 2 and no traceback; anything else is a bug and
keeps its traceback.

The subcommands import their modules inside ``run``, a measured start-up cost: ``dpa2-jax --help``
takes 1.9 s here, importing every subcommand's modules 5.9 s (JAX-MD alone 4.6 s).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence

from tqdm.auto import tqdm

from dpa2_jax import __version__
from dpa2_jax.cli import (
    change_bias,
    compress,
    convert,
    distill,
    export,
    graphs,
    md,
    model_devi,
    plot,
    test,
    train,
)
from dpa2_jax.errors import Dpa2JaxError, Interrupted

SUBCOMMANDS = (
    train, convert, export, test, graphs, plot, md, change_bias, model_devi, distill, compress,
)  # fmt: skip


class _StderrHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` (which tests may swap) around any progress bar
    (``tqdm.write`` clears the bar, prints the line and draws the bar again)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dpa2-jax",
        description="DPA-2 in JAX: train models, convert DeePMD-kit models, test them on "
        "labelled data. "
        "Units: Angstrom, eV, eV/Angstrom, eV/Angstrom^3.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        sub = subparsers.add_parser(
            module.NAME, help=module.HELP, description=module.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


@contextlib.contextmanager
def _logging_to_stderr(verbose: bool):
    """Sends dpa2_jax's log records to stderr while a command runs, then restores the logger."""
    logger = logging.getLogger("dpa2_jax")
    saved = logger.level, logger.propagate
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False  # no second copy through a root handler another library set up
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``dpa2-jax`` with `argv` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "distill"):  # --config.* overrides
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    with _logging_to_stderr(args.verbose):
        try:
            return args.run(args) or 0
        except Interrupted as err:  # SIGINT / SIGTERM, handled: what was done is saved
            print(f"dpa2-jax: {err}", file=sys.stderr)
            return err.status
        except KeyboardInterrupt:
            print("dpa2-jax: interrupted", file=sys.stderr)
            return 130
        except Dpa2JaxError as err:
            print(f"dpa2-jax: error: {err}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
