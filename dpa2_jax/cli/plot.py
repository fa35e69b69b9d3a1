"""``dpa2-jax plot lcurve``: a PNG of a learning curve (``lcurve.out``), DeePMD-kit style."""

from __future__ import annotations

import argparse
import math
import os
import re

from dpa2_jax.errors import ConfigError, DataError
from dpa2_jax.train.lcurve import read_lcurve

DESCRIPTION = """\
lcurve: draws the learning curve of a training run as a PNG: one panel per quantity present in
lcurve.out, training (trn) and validation (val) errors on a log scale against the training step:
total rmse (the square root of the weighted loss, no unit), energy per atom (eV), forces
(eV/Angstrom), virial per atom (eV) and any other error column, then the learning rate.

PATH: a training WORKDIR (reads WORKDIR/lcurve.out) or an lcurve.out file, written by
`dpa2-jax train` or by DeePMD-kit's `dp train` (same columns: "# step rmse_val rmse_trn ...
lr"; multi-task columns such as rmse_e_val_water are drawn per head). Needs matplotlib:
pip install "dpa2_jax[plot]".
"""

_TERMS = {"": ("total", ""), "e": ("energy", "eV/atom"), "ae": ("atomic energy", "eV"),
          "f": ("forces", "eV/Angstrom"), "pf": ("pref. forces", "eV/Angstrom"),
          "v": ("virial", "eV/atom")}  # term -> panel name, unit  # fmt: skip
_COLUMN = re.compile(r"^(rmse|mae)(?:_(\w+?))?_(val|trn)(?:_(\w+))?$")  # rmse_e_val[_head]


NAME = "plot"
HELP = "draw lcurve.out (errors in eV, eV/Angstrom; learning rate) as a PNG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dpa2-jax plot``."""
    parser.add_argument("kind", choices=["lcurve"], help="what to draw: lcurve (lcurve.out)")
    parser.add_argument("path", metavar="PATH", help="training WORKDIR or lcurve.out file")
    parser.add_argument("-o", "--output", metavar="PNG", default=None,
                        help="image to write (default: lcurve.png beside lcurve.out)")  # fmt: skip


def _panels(columns: dict[str, list[float]]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(metric, term) -> [(column, line label)], in DeePMD's order: total, e, f, v, others."""
    panels: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for name, values in columns.items():
        match = _COLUMN.match(name)
        if match is None or all(math.isnan(v) for v in values):
            continue  # step, lr, or no reference data for this term
        metric, term, split, head = match.groups()
        label = ("validation" if split == "val" else "training") + (f" ({head})" if head else "")
        panels.setdefault((metric, term or ""), []).append((name, label))
    order = {"": 0, "e": 1, "f": 2, "v": 3}
    return dict(sorted(panels.items(), key=lambda kv: (order.get(kv[0][1], 4), kv[0])))


def _read(path: str) -> tuple[str, dict[str, list[float]]]:
    lcurve = os.path.join(path, "lcurve.out") if os.path.isdir(path) else path
    if not os.path.isfile(lcurve):
        raise ConfigError(f"{lcurve}: no such lcurve.out file")
    try:
        columns = read_lcurve(lcurve)
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{lcurve}: not an lcurve.out table ({err})") from err
    if not columns.get("step"):
        raise DataError(f"{lcurve}: no data rows under a '# step ...' header")
    return lcurve, columns


def run(args: argparse.Namespace) -> int:
    lcurve, columns = _read(args.path)
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ConfigError('plotting needs matplotlib: pip install "dpa2_jax[plot]"') from err
    panels = _panels(columns)
    rows = len(panels) + ("lr" in columns)
    if rows == 0:
        raise DataError(f"{lcurve}: no error or learning-rate column with values")
    fig, axes = plt.subplots(rows, 1, sharex=True, figsize=(7, 2.2 * rows + 0.6), squeeze=False)
    axes = axes[:, 0]
    step = columns["step"]
    for ax, ((metric, term), lines) in zip(axes, panels.items()):
        for name, label in lines:
            dashed = label.startswith("training")
            ax.plot(step, columns[name], label=label, lw=1.2, ls="--" if dashed else "-")
        title, unit = _TERMS.get(term, (term, ""))
        ax.set_ylabel(f"{metric} {title}" + (f" [{unit}]" if unit else ""))
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    if "lr" in columns:
        axes[-1].plot(step, columns["lr"], color="tab:gray", lw=1.2)
        axes[-1].set(ylabel="learning rate", yscale="log")
        axes[-1].grid(True, which="both", alpha=0.3)
    axes[-1].set_xlabel("step")
    axes[0].set_title(lcurve, fontsize="small")
    fig.tight_layout()
    output = args.output or os.path.join(os.path.dirname(lcurve), "lcurve.png")
    fig.savefig(output, dpi=120)
    plt.close(fig)
    print(f"wrote {output}")
    return 0
