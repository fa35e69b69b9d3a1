"""Training systems: read from paths, with DeePMD-kit's batch-size and sampling rules
(``graph/dataset.py`` turns them into padded batches).

    batch size per system    an int, "auto" (at least 32 atoms per batch) or "auto:N" (at least
                             N atoms), DeePMD-kit's ``training_data.batch_size`` rule
    system probabilities     DeePMD-kit's default ``prob_sys_size`` (proportional to the number of
                             batches in a system, nframes // batch_size) or explicit ``sys_probs``
    order within a system    frames visited in a shuffled order, reshuffled after each pass
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from dpa2_jax.data.ase_io import read_ase
from dpa2_jax.data.h5_path import is_h5_path
from dpa2_jax.data.npy_stream import NpyFrames, count_frames, is_mixed_type, open_npy_system
from dpa2_jax.data.npy_system import find_systems, read_npy_systems
from dpa2_jax.data.system import System
from dpa2_jax.errors import ConfigError, DataError


def read_systems(paths: Sequence[str | os.PathLike], type_map=None) -> list[System]:
    """Systems from npy folders, folders searched for them, DeePMD-kit HDF5 systems (``FILE.h5``
    or ``FILE.h5#/GROUP``: every group at or below it holding type.raw) or ASE-readable files.

    A mixed-type npy folder (set.*/real_atom_types.npy) gives one System per composition.
    """
    systems = []
    for path in map(os.fspath, paths):
        if _holds_systems(path):
            found = find_systems(path)
            if not found:
                raise DataError(f"{path}: no DeePMD npy system (a folder with type.raw) in it")
            for folder in found:
                systems += read_npy_systems(folder, type_map)
        elif os.path.exists(path):
            systems.append(read_ase(path, type_map=type_map))
        else:
            raise DataError(f"{path}: no such system folder or file")
    return systems


def _holds_systems(path: str) -> bool:
    """Whether ``path`` is searched for npy systems: a folder or an HDF5 file (or group)."""
    return os.path.isdir(path) or is_h5_path(path)


logger = logging.getLogger(__name__)

STREAM_FRAMES = 20_000  # a task's training frames above which npy systems are streamed


def open_systems(
    paths: Sequence[str | os.PathLike], type_map=None, stream_frames: int | None = None
) -> list[System | NpyFrames]:
    """Training systems: ``read_systems`` while the paths hold at most ``stream_frames`` frames
    together (counted from the .npy headers; default ``STREAM_FRAMES``); above, every standard
    npy folder is opened frame by frame (``NpyFrames``, nothing read until a batch needs it)
    and the rest read whole."""
    stream_frames = STREAM_FRAMES if stream_frames is None else stream_frames
    folders = [f for p in map(os.fspath, paths) if _holds_systems(p) for f in find_systems(p)]
    if sum(count_frames(f) for f in folders) <= stream_frames:
        return read_systems(paths, type_map)
    systems = []
    for path in map(os.fspath, paths):
        if not _holds_systems(path):
            systems += read_systems([path], type_map)
            continue
        for folder in find_systems(path):
            if is_mixed_type(folder):
                systems += read_npy_systems(folder, type_map)
            else:
                systems.append(open_npy_system(folder, type_map))
                logger.info("%s: %d frames, streamed from disk (read per batch)", folder,
                            systems[-1].nframes)  # fmt: skip
    return systems


def batch_size_of(spec: int | str, natoms: int) -> int:
    """Frames per batch from DeePMD's ``batch_size`` (an int, "auto" or "auto:N")."""
    if isinstance(spec, bool):
        raise ConfigError(f"batch_size: expected an integer, 'auto' or 'auto:N', got {spec!r}")
    if isinstance(spec, int | np.integer):
        if spec < 1:
            raise ConfigError(f"batch_size: expected a positive integer, got {spec}")
        return int(spec)
    words = str(spec).split(":")
    if words[0] != "auto" or len(words) > 2 or (len(words) == 2 and not words[1].isdigit()):
        raise ConfigError(f"batch_size: expected an integer, 'auto' or 'auto:N', got {spec!r}")
    rule = int(words[1]) if len(words) == 2 else 32
    return max(1, -(-rule // natoms))  # the fewest frames holding at least `rule` atoms


def system_probabilities(
    nbatches: Sequence[int], sys_probs: Sequence[float] | None = None
) -> np.ndarray:
    """DeePMD's ``prob_sys_size`` (proportional to batches per system) or normalised weights."""
    if sys_probs is not None:
        probs = np.asarray(sys_probs, np.float64)
        if probs.shape != (len(nbatches),) or np.any(probs < 0) or probs.sum() <= 0:
            raise ConfigError(
                f"sys_probs: expected {len(nbatches)} non-negative weights, got {list(probs)}"
            )
        return probs / probs.sum()
    counts = np.asarray(nbatches, np.float64)
    return counts / counts.sum()


def model_parameters(
    system: System, numb_fparam: int = 0, numb_aparam: int = 0, default_fparam=None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The system's frame and atomic parameters as a fitting with these counts takes them.

    Returns (fparams [nframes, numb_fparam] or None, aparams [nframes, natoms, numb_aparam] or
    None): None where the count is 0. A system without fparam.npy gets ``default_fparam`` in
    every frame when the fitting has one (DeePMD-kit's data requirement with a default).

    Raises:
      DataError: the file is missing (and no default) or its width is not the model's.
    """
    fparams = aparams = None
    if numb_fparam:
        fparams = system.fparams
        if fparams is None:
            if default_fparam is None:
                raise DataError(
                    f"{system.path}: no fparam.npy, but the model has numb_fparam={numb_fparam} "
                    "(add set.*/fparam.npy, or give the fitting a default_fparam)"
                )
            fparams = np.tile(np.asarray(default_fparam, np.float64), (system.nframes, 1))
        if fparams.shape[1] != numb_fparam:
            raise DataError(
                f"{system.path}: fparam.npy has {fparams.shape[1]} values per frame, the model "
                f"numb_fparam={numb_fparam}"
            )
    if numb_aparam:
        aparams = system.aparams
        if aparams is None:
            raise DataError(
                f"{system.path}: no aparam.npy, but the model has numb_aparam={numb_aparam}"
            )
        if aparams.shape[2] != numb_aparam:
            raise DataError(
                f"{system.path}: aparam.npy has {aparams.shape[2]} values per atom, the model "
                f"numb_aparam={numb_aparam}"
            )
    return fparams, aparams


def fitting_parameters(system: System, fitting) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``model_parameters`` for a ``FittingConfig`` (numb_fparam, numb_aparam, default_fparam)."""
    return model_parameters(
        system, fitting.numb_fparam, fitting.numb_aparam, fitting.default_fparam
    )
