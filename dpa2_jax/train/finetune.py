"""Fine-tuning: a pretrained model's parameters, carried into a new model with the user's type map.

    dpa2-jax train input.json --finetune PRETRAINED --model-branch water   # start from a head
    dpa2-jax train input.json --finetune PRETRAINED --model-branch RANDOM  # a fresh head

As DeePMD-kit's ``--finetune`` (``doc/train/finetuning.md``):

- The descriptor options must equal the pretrained model's (apart from its number of types);
  the first that differs is named. The chosen head's fitting options must equal the input's.
- The user's type map wins. Rows of everything indexed by type (the type embedding's one-hot
  weights, ``davg``/``dstd``, ``bias_atom_e``, ``out_bias``) follow the elements by symbol.
  Elements the pretrained model never saw get new type-embedding rows (drawn as DeePMD-kit
  does: uniform in [0, 1)) and environment statistics from the fine-tuning data, with a warning.
  Every existing element keeps its embedding, so its atoms' energies do not change.
- ``RANDOM`` is a fresh head: hidden layers drawn as for a new model, the output layer zero
  (DeePMD-kit draws it at random too). Fine-tuning then starts from the refitted energy bias
  with zero forces instead of a random head's spurious ones on a pretrained descriptor: on
  GeTe and the C/H/N/O molecules it ended 5-28 % lower in validation force RMSE in all five
  cases measured (docs/finetuning.md, `scripts/finetune_benefit.py`).
- The energy bias is refitted on the fine-tuning data before training (``refit_energy_bias``,
  DeePMD-kit's ``change-by-statistic``): the least-squares per-type correction of the residual
  E_label - E_model is added to ``out_bias``. ``dpa2-jax change-bias`` does this step alone.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence

import jax
import numpy as np

from dpa2_jax.data.dataset import fitting_parameters
from dpa2_jax.data.stats import bias_prior_vector, energy_bias, sample_frames
from dpa2_jax.data.system import System
from dpa2_jax.data.type_map import map_types
from dpa2_jax.descriptor import family_of
from dpa2_jax.errors import ConfigError, DataError
from dpa2_jax.io.convert import config_difference, read_model
from dpa2_jax.model import init
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.model.jax_setup import enable_x64_for
from dpa2_jax.model.potential import Potential
from dpa2_jax.model.statistics import compute_statistics
from dpa2_jax.typing import Params

logger = logging.getLogger(__name__)

RANDOM = "RANDOM"  # --model-branch RANDOM: a fresh head whose output starts at zero
TYPE_ROWS = ("davg", "dstd", "bias_atom_e", "out_bias")  # leaves whose first axis is the type


@dataclasses.dataclass(frozen=True)
class Finetune:
    """What to fine-tune from: a model path (workdir, model directory, DeePMD-kit ``.dp``,
    ``.pt`` checkpoint or frozen ``.pth``) and the head
    to start from (a head name, ``RANDOM``, or None for a single-head model)."""

    path: str
    model_branch: str | None = None


def finetune_params(
    cfg: ModelConfig,
    ft: Finetune,
    systems: Sequence[System],
    max_frames: int,
    seed: int,
    bias_prior: dict[str, float] | None = None,
) -> Params:
    """Parameters of ``cfg`` (one head) at the start of fine-tuning (module docstring)."""
    if ft.model_branch in (None, RANDOM):
        old_cfg, old_params, _ = read_model(ft.path)
        branch = ft.model_branch
    else:  # only that head is read (a name or DeePMD-kit alias)
        try:
            old_cfg, old_params, _ = read_model(ft.path, ft.model_branch)
        except ConfigError as err:
            raise ConfigError(f"--model-branch: {err} (or RANDOM for a fresh head)") from err
        branch = old_cfg.head_names[0]
    params = carry_over(old_cfg, old_params, cfg, branch, seed, ft.path)
    new = [t for t, e in enumerate(cfg.type_map) if e not in old_cfg.type_map]
    if new:  # environment statistics of the new elements from the fine-tuning data
        stats = compute_statistics(cfg, systems, max_frames)["descriptor"]
        descriptor = dict(params["descriptor"])
        for block, values in stats.items():
            for key in ("davg", "dstd"):
                leaf = np.array(descriptor[block][key])
                leaf[new] = values[key][new]
                descriptor[block] = {**descriptor[block], key: leaf}
        params = {**params, "descriptor": descriptor}
    return refit_energy_bias(cfg, params, cfg.head_names[0], systems, max_frames,
                             bias_prior=bias_prior, new_types=new)  # fmt: skip


def carry_over(
    old_cfg: ModelConfig,
    old_params: Params,
    cfg: ModelConfig,
    branch: str | None,
    seed: int,
    where: str = "the pretrained model",
) -> Params:
    """The pretrained parameters in ``cfg``'s type map, with head ``branch`` (or a fresh head
    for ``RANDOM``) as ``cfg``'s one head; statistics of new elements not yet set."""
    if branch != RANDOM:
        try:
            branch = old_cfg.resolve_head(branch)
        except ConfigError as err:
            raise ConfigError(f"--model-branch: {err} (or RANDOM for a fresh head)") from err
    check_compatible(old_cfg, cfg, branch, where)
    fresh = init_params(cfg, seed)
    new_types = [e for e in cfg.type_map if e not in old_cfg.type_map]
    if new_types:
        warnings.warn(
            f"{where}: elements {new_types} are not in the pretrained type map "
            f"{list(old_cfg.type_map)}: they get new type-embedding rows and environment "
            "statistics from the fine-tuning data; expect to need more data for them",
            stacklevel=2,
        )
    rng = np.random.default_rng(seed)
    index = [old_cfg.type_map.index(e) if e in old_cfg.type_map else -1 for e in cfg.type_map]
    descriptor = change_type_rows(old_params["descriptor"], index, fresh["descriptor"])
    change_type_map = family_of(cfg.descriptor).change_type_map
    if change_type_map is not None:
        descriptor = change_type_map(descriptor, old_cfg.descriptor, index, rng)
    [head] = cfg.head_names
    if branch == RANDOM:
        head_params = zero_output(fresh["heads"][head])
    else:
        head_params = change_type_rows(old_params["heads"][branch], index, fresh["heads"][head])
    params = {"descriptor": descriptor, "heads": {head: head_params}}
    dtype = np.float64 if cfg.descriptor.precision == "float64" else np.float32
    logger.info("fine-tuning from %s, head %s; type map %s -> %s", where, branch,
                list(old_cfg.type_map), list(cfg.type_map))  # fmt: skip
    return _tree_map(lambda x: np.asarray(x, dtype), params)


def zero_output(head: Params) -> Params:
    """``head`` with its fitting nets' output layers (weights and bias) set to zero: atomic
    energies are the energy bias alone and forces vanish until training moves them."""

    def zeroed(layers):
        return [*layers[:-1], {k: np.zeros_like(v) for k, v in layers[-1].items()}]

    fitting = dict(head["fitting"])
    if "layers" in fitting:
        fitting["layers"] = zeroed(fitting["layers"])
    else:
        fitting["type_layers"] = [zeroed(layers) for layers in fitting["type_layers"]]
    return {**head, "fitting": fitting}


def init_params(cfg: ModelConfig, seed: int) -> Params:
    return _tree_map(np.asarray, init(jax.random.key(seed), cfg))


def check_compatible(old: ModelConfig, new: ModelConfig, branch: str, where: str) -> None:
    """ConfigError naming the first descriptor (or chosen head's fitting) option that differs."""
    if len(new.heads) != 1:
        raise ConfigError("--finetune: the input must describe one head")
    if old.descriptor.family != new.descriptor.family:
        raise ConfigError(f"--finetune {where}: the pretrained descriptor is "
                          f"{old.descriptor.family!r}, the input's {new.descriptor.family!r}")  # fmt: skip
    aligned = {"ntypes": new.descriptor.ntypes}
    if getattr(old.descriptor, "type_map", None) is not None:
        aligned["type_map"] = new.descriptor.type_map
    if family_of(old.descriptor).change_type_map is None and old.type_map != new.type_map:
        raise ConfigError(f"--finetune {where}: descriptor {old.descriptor.family!r} cannot "
                          "change its type map (e.g. one network per type); fine-tune it with "
                          f"the pretrained type map {list(old.type_map)}")  # fmt: skip
    diff = config_difference(dataclasses.replace(old.descriptor, **aligned), new.descriptor,
                             "descriptor")  # fmt: skip
    if diff:
        raise ConfigError(f"--finetune {where}: the input's descriptor disagrees with the "
                          f"pretrained one: {diff} (pretrained vs input)")  # fmt: skip
    if branch != RANDOM:
        diff = config_difference(old.fitting(branch), new.fitting(new.head_names[0]),
                                 "fitting_net")  # fmt: skip
        if diff:
            raise ConfigError(f"--finetune {where}: the input's fitting_net disagrees with head "
                              f"{branch!r}: {diff} (pretrained vs input); use --model-branch "
                              "RANDOM for a new fitting net")  # fmt: skip
    if (
        old.atom_exclude_types
        or old.pair_exclude_types
        or new.atom_exclude_types
        or (new.pair_exclude_types)
    ):  # type indices would need remapping
        if old.type_map != new.type_map:
            raise ConfigError("--finetune: atom/pair_exclude_types with a changed type map are "
                              "not supported")  # fmt: skip


def change_type_rows(old: Params, index: Sequence[int], fresh: Params) -> Params:
    """``old`` with the type-indexed leaves (``TYPE_ROWS``) re-ordered by ``index`` (the old
    type of each new type, -1 for a new element, whose row comes from ``fresh``)."""
    index = np.asarray(index)

    def walk(o, f, name=None):
        if isinstance(o, dict):
            return {k: walk(o[k], f[k], k) for k in o}
        if isinstance(o, list | tuple):
            return [walk(a, b) for a, b in zip(o, f)]
        if name in TYPE_ROWS:
            out = np.array(f, copy=True)
            kept = index >= 0
            out[kept] = np.asarray(o)[index[kept]]
            return out
        return np.asarray(o)

    return walk(old, fresh)


def refit_energy_bias(
    cfg: ModelConfig,
    params: Params,
    head: str,
    systems: Sequence[System],
    max_frames: int,
    mode: str = "change",
    bias_prior: dict[str, float] | None = None,
    new_types: Sequence[int] = (),
) -> Params:
    """``params`` with head ``head``'s ``out_bias`` refitted on the systems' labelled frames.

    mode "change" (DeePMD-kit's ``change-by-statistic``): out_bias += the least-squares per-type
    fit of E_label - E_model; "set" (``set-by-statistic``): out_bias = the fit of
    E_label - (E_model - the current bias). Types absent from the data keep their bias.
    Directions the data leave undetermined (too few compositions: ``data.stats.follow_prior``)
    follow ``bias_prior`` ({element: eV}, e.g. isolated-atom energies) where it names the
    element; otherwise, in "change" mode, an element the model knew keeps its bias and the
    ``new_types`` share the energy left per atom evenly; "set" without a prior keeps DeePMD's
    minimum norm.
    """
    if mode not in ("change", "set"):
        raise ConfigError(f"bias mode {mode!r}: use 'change' or 'set'")
    enable_x64_for(cfg.descriptor.precision)
    labelled = [s for s in systems if s.has("energies")]
    if not labelled:
        raise DataError(f"refitting the energy bias needs energy.npy; none in "
                        f"{[s.path for s in systems]}")  # fmt: skip
    pot = Potential(cfg, params)
    ntypes = len(cfg.type_map)
    residuals, counts = [], []
    for s in labelled:
        s = sample_frames(s if s.type_map == cfg.type_map else map_types(s, cfg.type_map), max_frames,
                    None)  # fmt: skip
        fparam, aparam = fitting_parameters(s, cfg.fitting(head))
        pred = pot.evaluate(s.coords, s.cells, s.atom_types, head=head, fparam=fparam,
                            aparam=aparam)["energy"]  # fmt: skip
        residuals.append(np.asarray(s.energies) - np.asarray(pred).reshape(-1))
        counts.append(np.tile(np.bincount(s.atom_types, minlength=ntypes), (s.nframes, 1)))
    residual, count = np.concatenate(residuals), np.concatenate(counts)
    bias = np.asarray(params["heads"][head]["out_bias"], np.float64)
    if mode == "set":
        residual = residual + count @ bias
    prior = fit_prior(cfg.type_map, bias, mode, bias_prior, new_types)
    note = " (of the correction to the current bias: 0 keeps it)" if mode == "change" else ""
    delta = energy_bias(residual, count, atom_exclude_types=cfg.atom_exclude_types, prior=prior,
                        type_names=cfg.type_map, prior_note=note)  # fmt: skip
    seen = count.sum(axis=0) > 0
    new_bias = np.where(seen, bias + delta if mode == "change" else delta, bias)
    logger.info("energy bias refitted (%s) on %d frames: %s -> %s eV", mode, len(residual),
                np.round(bias, 4).tolist(), np.round(new_bias, 4).tolist())  # fmt: skip
    head_params = {**params["heads"][head], "out_bias": new_bias.astype(bias.dtype)}
    out_dtype = np.asarray(params["heads"][head]["out_bias"]).dtype
    head_params["out_bias"] = head_params["out_bias"].astype(out_dtype)
    return {**params, "heads": {**params["heads"], head: head_params}}


def fit_prior(
    type_map: Sequence[str],
    bias: np.ndarray,
    mode: str,
    bias_prior: dict[str, float] | None,
    new_types: Sequence[int],
) -> list[float | None] | None:
    """The prior (``data.stats.energy_bias``) of what ``refit_energy_bias`` fits: in "change"
    mode of the correction to ``bias`` [ntypes] (the user's value minus the bias; 0, the
    pretrained bias kept, for a known element; None, a share of the energy left per atom, for
    ``new_types``); in "set" mode of the bias itself (None without ``bias_prior``: DeePMD's
    minimum norm)."""
    prior = bias_prior_vector(type_map, bias_prior)
    if mode == "set":
        return None if bias_prior is None else prior
    return [
        (None if t in new_types else 0.0) if p is None else p - bias[t]
        for t, p in enumerate(prior)
    ]


def _tree_map(fn, tree):
    return jax.tree.map(fn, tree)
