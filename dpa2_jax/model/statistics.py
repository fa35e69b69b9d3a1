"""A model's data statistics before training: the descriptor's (its family's ``statistics``),
each head's energy bias and fparam/aparam normalisation (``data/stats.py``), sampled as
DeePMD-kit samples them (``data_stat_nbatch`` frames per system), and written into the params.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dpa2_jax.data.stats import (
    DATA_STAT_NBATCH,
    bias_prior_vector,
    energy_bias,
    fitting_input_statistics,
    sample_frames,
)
from dpa2_jax.data.system import System
from dpa2_jax.data.type_map import map_types
from dpa2_jax.descriptor import family_of
from dpa2_jax.errors import ConfigError, DataError
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.typing import Params


def _sampled(
    cfg: ModelConfig, systems: Sequence[System], max_frames: int, rng: np.random.Generator | None
) -> list[System]:
    """At most ``max_frames`` frames of each system, in the model's type map."""
    return [
        sample_frames(
            s if s.type_map == cfg.type_map else map_types(s, cfg.type_map), max_frames, rng
        )
        for s in systems
    ]


def descriptor_statistics(cfg: ModelConfig, systems: Sequence[System]) -> dict[str, dict]:
    """{block: {leaf: array}} of the descriptor family's ``statistics`` over every frame of
    ``systems`` (already sampled and mapped onto ``cfg.type_map``)."""
    statistics = family_of(cfg.descriptor).statistics
    if statistics is None:
        return {}
    return statistics(cfg.descriptor, [f for s in systems for f in s.frames()])


def compute_statistics(
    cfg: ModelConfig,
    systems: Sequence[System],
    max_frames: int = DATA_STAT_NBATCH,
    rcond: float | None = None,
    rng: np.random.Generator | None = None,
    head: str | None = None,
    bias_prior: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Descriptor statistics and the energy bias of a model.

    Args:
      cfg: the model's config.
      systems: labelled systems; their types are mapped onto ``cfg.type_map`` by symbol.
      max_frames: frames taken per system (DeePMD's ``data_stat_nbatch``).
      rcond: see ``data.stats.energy_bias``.
      rng: draws the frames at random when given; otherwise the first ``max_frames``.
      head: the fitting head whose fparam/aparam statistics are taken (None: the only one).
      bias_prior: {element: eV} that the bias follows where the data leave it undetermined
        (``data.stats.follow_prior``; elements not named share the energy left per atom);
        None: DeePMD's minimum norm.

    Returns:
      {"descriptor": {block: {"davg", "dstd"}} ([ntypes, sel, 4] each, for environment-matrix
      families), "out_bias": [ntypes] eV}, and for a fitting with numb_fparam or numb_aparam
      "fitting": {"fparam_avg", "fparam_inv_std" [numb_fparam]; "aparam_avg",
      "aparam_inv_std" [numb_aparam]} (those it has).
    """
    if not systems:
        raise DataError("compute_statistics: no systems given")
    ntypes = len(cfg.type_map)
    systems = _sampled(cfg, systems, max_frames, rng)
    labelled = [s for s in systems if s.energies is not None]
    if not labelled:
        raise DataError(
            "compute_statistics: no system has energies; the energy bias needs energy.npy "
            f"(systems: {[s.path for s in systems]})"
        )
    energies = np.concatenate([s.energies for s in labelled])  # [n_frame]
    counts = np.concatenate(
        [np.tile(np.bincount(s.atom_types, minlength=ntypes), (s.nframes, 1)) for s in labelled]
    )  # [n_frame, ntypes]
    out = {
        "descriptor": descriptor_statistics(cfg, systems),
        "out_bias": energy_bias(
            energies, counts, rcond, cfg.atom_exclude_types,
            prior=None if bias_prior is None else bias_prior_vector(cfg.type_map, bias_prior),
            type_names=cfg.type_map,
        ),  # fmt: skip
    }
    fitting = fitting_input_statistics(systems, cfg.fitting(cfg.resolve_head(head)))
    if fitting:
        out["fitting"] = fitting
    return out


def task_statistics(
    cfg: ModelConfig,
    tasks: dict[str, tuple[Sequence[System], int]],
    rcond: float | None = None,
    bias_prior: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Statistics of a multi-task model: {"descriptor": ..., "heads": {name: {"out_bias", and
    "fitting" where it has fparam/aparam}}}.

    Args:
      cfg: the ``ModelConfig``, one head per task.
      tasks: per head, (its training systems, frames taken per system).
      bias_prior: see ``compute_statistics`` (the same for every head).

    The shared descriptor's statistics are taken over every task's frames together (DeePMD-kit
    3.2.0's ``share_params`` adds the linked descriptors' moments to the base one unweighted);
    the energy bias and fitting-input statistics are each head's own. One task: exactly
    ``compute_statistics``.
    """
    heads, sampled = {}, []
    for name, (systems, max_frames) in tasks.items():
        stats = compute_statistics(cfg, systems, max_frames, rcond, head=name,
                                   bias_prior=bias_prior)  # fmt: skip
        heads[name] = {k: v for k, v in stats.items() if k != "descriptor"}
        sampled += _sampled(cfg, systems, max_frames, None)
        descriptor = stats["descriptor"]
    if len(tasks) > 1:
        descriptor = descriptor_statistics(cfg, sampled)
    return {"descriptor": descriptor, "heads": heads}


def _like(value: np.ndarray, old: Any, where: str) -> np.ndarray:
    if tuple(np.shape(value)) != tuple(np.shape(old)):
        raise ConfigError(f"{where}: statistics of shape {np.shape(value)}, params {np.shape(old)}")
    return np.asarray(value, dtype=old.dtype)


def apply_statistics(
    params: Params, cfg: ModelConfig, stats: dict[str, Any], head: str | None = None
) -> Params:
    """A new params tree with ``stats`` (from ``compute_statistics``) written in: each
    descriptor block's statistics (davg/dstd), ``heads[head]["out_bias"]``, which plays
    DeePMD's model-level ``out_bias``, and the fitting's fparam/aparam avg and inv_std when
    ``stats`` has them. Leaves keep their dtypes; ``params`` is not modified."""
    head = cfg.resolve_head(head)
    descriptor = dict(params["descriptor"])
    for name, block in stats["descriptor"].items():
        old = descriptor[name]
        descriptor[name] = {
            **old,
            **{k: _like(v, old[k], f"descriptor.{name}.{k}") for k, v in block.items()},
        }
    heads = dict(params["heads"])
    old = heads[head]["out_bias"]
    heads[head] = {**heads[head], "out_bias": _like(stats["out_bias"], old, f"{head}.out_bias")}
    if stats.get("fitting"):  # fparam/aparam normalisation of the head's fitting
        fitting = dict(heads[head]["fitting"])
        for key, value in stats["fitting"].items():
            fitting[key] = _like(value, fitting[key], f"{head}.fitting.{key}")
        heads[head] = {**heads[head], "fitting": fitting}
    return {**params, "descriptor": descriptor, "heads": heads}
