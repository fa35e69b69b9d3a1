"""Labelling: the teacher's energy (eV), forces (eV/A) and, for periodic frames, virial (eV,
DeePMD's sign) on every explored frame, written as DeePMD npy systems that DeePMD-kit's own
tools read, split into training and held-out validation frames:

    WORKDIR/explore/<run>/ -> teacher.evaluate -> WORKDIR/data/train/<run>/, data/valid/<run>/

Each run's frames are shuffled with ``seed`` and the first round(fraction * n) (at least one
when the fraction is positive and there are two frames or more) are held out.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable

import numpy as np

from dpa2_jax.data.npy_system import write_npy_system
from dpa2_jax.data.system import System, select_frames


def teacher_labels(
    pot, system: System, head: str | None = None, frames_per_call: int = 1,
    progress: Callable[[int], None] | None = None,
) -> System:  # fmt: skip
    """``system`` with energies, forces and (periodic) virials predicted by ``pot``. One frame
    per call by default: the one compiled shape that the report's tests and timing reuse."""
    symbols = [system.type_map[t] for t in system.atom_types]
    parts = []
    for start in range(0, system.nframes, frames_per_call):
        k = slice(start, start + frames_per_call)
        cells = None if system.cells is None else system.cells[k]
        parts.append(pot.evaluate(system.coords[k], cells, symbols, head=head))
        if progress is not None:
            progress(len(parts[-1]["energy"]))
    pred = {key: np.concatenate([p[key] for p in parts]) for key in ("energy", "forces", "virial")}
    return dataclasses.replace(
        system, energies=pred["energy"], forces=pred["forces"],
        virials=pred["virial"] if system.pbc else None,
    )  # fmt: skip


def split_frames(n_frame: int, fraction: float, rng: np.random.Generator):
    """(train, valid) frame indices, each sorted: a shuffled ``fraction`` held out."""
    n_valid = round(fraction * n_frame)
    if fraction > 0 and n_frame >= 2:
        n_valid = min(max(n_valid, 1), n_frame - 1)
    order = rng.permutation(n_frame)
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def write_split(system: System, fraction: float, seed: int, train_dir: str, valid_dir: str):
    """Writes the training and validation parts of a labelled system (each only if it has
    frames, through a temporary folder); returns their paths (None for an empty part)."""
    train, valid = split_frames(system.nframes, fraction, np.random.default_rng(seed))
    out = []
    for idx, path in ((train, train_dir), (valid, valid_dir)):
        if len(idx) == 0:
            out.append(None)
            continue
        tmp = path + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        write_npy_system(select_frames(system, idx), tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        out.append(path)
    return tuple(out)
