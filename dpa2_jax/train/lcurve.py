"""``lcurve.out``: DeePMD-kit's learning-curve table, so existing plotting scripts work.

    # step      rmse_val    rmse_trn    rmse_e_val  rmse_e_trn ...   lr
          1    1.23e+01    1.30e+01    ...                          1.0e-03

Columns are the sorted metric names, each as ``NAME_val NAME_trn`` (``NAME_trn`` alone without
validation data), then the learning rate; formats as DeePMD-kit 3.2.0's PyTorch trainer. A
multi-task run writes every task's columns in task order, ``NAME_val_TASK NAME_trn_TASK``.
"""

from __future__ import annotations

import io
import math
import os


class LCurve:
    """Appends rows to ``path``; writes the header before the first row of a new file.

    ``append=True`` continues an existing file (a restart): rows after ``resume_step``, written
    by the interrupted run past its last checkpoint, are dropped first, since the restart
    writes them again.
    """

    def __init__(self, path: str, append: bool = False, resume_step: int | None = None, tasks=None):
        self.path, self.tasks = path, tasks
        if append and resume_step is not None and os.path.exists(path):
            _drop_rows_after(path, resume_step)
        self.file: io.TextIOBase = open(path, "a" if append else "w")
        self.keys: list[str] | None = None
        self.has_valid = False
        if append:
            self.keys = []  # the header is already there

    def write(self, step: int, train: dict, valid: dict | None, lr: float) -> None:
        keys = sorted(train)
        if self.keys is None:
            self.has_valid = bool(valid)
            header = "# {:5s}".format("step")
            for k in keys:
                header += (
                    "   %11s %11s" % (k + "_val", k + "_trn") if valid else "   %11s" % (k + "_trn")
                )
            header += "   {:8s}\n".format("lr")
            header += "# If there is no available reference data, rmse_*_{val,trn} will print nan\n"
            self.file.write(header)
            self.keys = keys
        row = f"{step:7d}"
        for k in keys:
            t = _value(train.get(k))
            row += (
                "   %11.2e %11.2e" % (_value((valid or {}).get(k)), t) if valid else "   %11.2e" % t
            )
        row += f"   {lr:8.1e}\n"
        self.file.write(row)
        self.file.flush()

    def write_tasks(self, step: int, rows: dict[str, tuple[dict, dict | None]], lr: float) -> None:
        """One row of a multi-task run: ``rows`` maps each task to (train, valid) metrics."""
        if self.keys is None:
            header = "# {:5s}".format("step")
            for task, (train, valid) in rows.items():
                for k in sorted(train):
                    header += ("   %11s %11s" % (f"{k}_val_{task}", f"{k}_trn_{task}") if valid
                               else "   %11s" % f"{k}_trn_{task}")  # fmt: skip
            header += "   {:8s}\n".format("lr")
            header += "# If there is no available reference data, rmse_*_{val,trn} will print nan\n"
            self.file.write(header)
            self.keys = []
        row = f"{step:7d}"
        for train, valid in rows.values():
            for k in sorted(train):
                t = _value(train.get(k))
                row += "   %11.2e %11.2e" % (_value(valid.get(k)), t) if valid else "   %11.2e" % t
        self.file.write(row + f"   {lr:8.1e}\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _drop_rows_after(path: str, step: int) -> None:
    with open(path) as f:
        lines = f.readlines()
    kept = [
        ln for ln in lines if ln.startswith("#") or not ln.strip() or int(ln.split()[0]) <= step
    ]
    if len(kept) < len(lines):
        with open(path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(path + ".tmp", path)


def _value(x) -> float:
    return math.nan if x is None else float(x)


def read_lcurve(path: str) -> dict[str, list[float]]:
    """Columns of an ``lcurve.out`` by name (``step``, ``rmse_e_val``, ...)."""
    names, columns = None, {}
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                words = line[1:].split()
                if words and words[0] == "step":
                    names = words
                    columns = {n: [] for n in names}
                continue
            if names and line.strip():
                for n, v in zip(names, line.split()):
                    columns[n].append(float(v))
    return columns
