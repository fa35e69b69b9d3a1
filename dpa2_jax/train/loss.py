"""DeePMD-kit's energy loss ("ener") with learning-rate-linked prefactors, on padded graphs.

    L = p_e L_e + p_f L_f + p_v L_v + p_ae L_ae + p_pf L_pf,
    p(lr) = limit_pref + (start_pref - limit_pref) * lr / start_lr.

With residuals r = label - prediction, N_g atoms in frame g and n = 1 if `intensive_ener_virial`
else 0, the mean-squared terms ("mse", the default) are

    L_e  = mean_g [ r_e(g)^2 / N_g^(1+n) ]                 energy [eV^2 / atom^(1+n)]
    L_f  = mean over atoms and components of r_f^2        forces [(eV/A)^2]
    L_v  = mean_g [ mean_9 r_v(g)^2 / N_g^(1+n) ]          virial
    L_ae = mean over atoms of r_ae^2                       atomic energies
    L_pf = mean over atoms and components of w_i r_f^2     forces weighted by atom_pref w_i

and the reported metrics rmse_e = sqrt(mean_g r_e^2 / N_g^2) (per atom), rmse_f, rmse_v (per
atom), rmse_ae, rmse_pf, and rmse = sqrt(L). `relative_f` divides each atom's force residual by
|F_label| + relative_f. "mae" replaces squares by absolute values (energy and virial divided by
N_g once) and reports mae_* instead of rmse_*; `use_huber` replaces the squares of the loss (not
of the metrics) by the Huber function of the residual, energy and virial residuals divided by N_g
first; `f_use_norm` applies them to |r_f| per atom.

For a batch of frames of one system this is exactly DeePMD-kit 3.2.0's `EnergyLoss.call`
(`deepmd/dpmodel/loss/ener.py`, the same formulas as `EnergyStdLoss` in `deepmd/pt/loss/ener.py`).
Frames of different sizes are reduced as DeePMD-kit reduces a ragged batch: energy and virial
terms average over frames of per-frame values divided by each frame's own N_g, per-atom terms
pool every real atom of the batch. DeePMD-kit flags a label present or absent for a whole batch
(`find_energy`); here each frame has its own flag (`has_energy`, ...): a frame without a label is
left out of that term's mean, a term no frame has is zero, and its metric is NaN (as DeePMD-kit
displays a missing label). Padding nodes and graphs never count.

Labels beyond graph.py's fields, read only when a term needs them:
    nodes["atom_energy"]      [n_node]  float  atomic energy label, eV (start/limit_pref_ae)
    globals["has_atom_energy"] [n_graph] float  1.0 where present (default: every real frame)
    nodes["atom_pref"]        [n_node]  float  per-atom force weight (start/limit_pref_pf)
    globals["has_atom_pref"]  [n_graph] float  1.0 where present (default: every real frame)
    nodes["atom_ener_coeff"]  [n_node]  float  c_i of E = sum_i c_i E_i (enable_atom_ener_coeff;
                                               default 1.0)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import jraph

from dpa2_jax.errors import ConfigError, DataError
from dpa2_jax.graph import fields
from dpa2_jax.graph.padding import graph_mask, node_mask
from dpa2_jax.options import check_field_types
from dpa2_jax.typing import Array

TERMS = ("e", "f", "v", "ae", "pf")  # the terms implemented; each has start_pref_*, limit_pref_*
UNSUPPORTED_TERMS = ("gf", "h")  # generalized-force and Hessian terms


@dataclasses.dataclass(frozen=True)
class EnergyLossConfig:
    """DeePMD-kit's "ener" loss options, names and defaults (hashable, a static argument).

    A term is on when its start or limit prefactor is non-zero. `huber_delta` is one delta or
    three (energy, force, virial); the atomic-energy term uses the energy delta. The
    generalized-force (`start_pref_gf`, `limit_pref_gf`, `numb_generalized_coord`) and Hessian
    (`start_pref_h`, `limit_pref_h`) terms are not supported yet and must stay at 0.
    """

    type: str = "ener"
    start_pref_e: float = 0.02
    limit_pref_e: float = 1.0
    enable_atom_ener_coeff: bool = False
    intensive_ener_virial: bool = False
    start_pref_f: float = 1000.0
    limit_pref_f: float = 1.0
    relative_f: float | None = None
    f_use_norm: bool = False
    start_pref_v: float = 0.0
    limit_pref_v: float = 0.0
    start_pref_ae: float = 0.0  # atomic energies
    limit_pref_ae: float = 0.0
    start_pref_pf: float = 0.0  # forces weighted per atom
    limit_pref_pf: float = 0.0
    use_default_pf: bool = False
    loss_func: str = "mse"
    use_huber: bool = False
    huber_delta: float | tuple[float, float, float] = 0.01
    # not supported yet: must stay 0
    start_pref_gf: float = 0.0
    limit_pref_gf: float = 0.0
    numb_generalized_coord: int = 0
    start_pref_h: float = 0.0
    limit_pref_h: float = 0.0

    def __post_init__(self):
        check_field_types(self, "loss")
        if isinstance(self.huber_delta, (list, tuple)):
            if len(self.huber_delta) != 3:
                raise ConfigError(
                    f"loss.huber_delta: expected one float or three (energy, force, virial), "
                    f"got {list(self.huber_delta)}"
                )
            object.__setattr__(self, "huber_delta", tuple(float(d) for d in self.huber_delta))
        if self.type != "ener":
            raise ConfigError(f"loss.type: expected 'ener', got {self.type!r}")
        if self.loss_func not in ("mse", "mae"):
            raise ConfigError(f"loss.loss_func: expected 'mse' or 'mae', got {self.loss_func!r}")
        for term in UNSUPPORTED_TERMS:
            for name in (f"start_pref_{term}", f"limit_pref_{term}"):
                if getattr(self, name) != 0:
                    raise ConfigError(
                        f"loss.{name}={getattr(self, name)}: the {term!r} loss term is not "
                        "supported yet"
                    )
        if self.numb_generalized_coord != 0:
            raise ConfigError(
                f"loss.numb_generalized_coord={self.numb_generalized_coord}: the generalized "
                "force loss is not supported yet"
            )
        if self.f_use_norm and not (self.use_huber or self.loss_func == "mae"):
            raise ConfigError("loss.f_use_norm needs use_huber or loss_func='mae'")
        if self.use_huber and (self.has("pf") or self.relative_f is not None):
            raise ConfigError(
                "loss.use_huber cannot be combined with the atom_pref force term "
                "(start_pref_pf/limit_pref_pf) or relative_f, as in DeePMD-kit"
            )

    def has(self, term: str) -> bool:
        """Whether the term (one of TERMS) is on: a non-zero start or limit prefactor."""
        return getattr(self, f"start_pref_{term}") != 0 or getattr(self, f"limit_pref_{term}") != 0

    def deltas(self) -> tuple[float, float, float]:
        """Huber deltas of the energy, force and virial terms."""
        if isinstance(self.huber_delta, tuple):
            return self.huber_delta
        return (self.huber_delta,) * 3


def prefactor(start: float, limit: float, lr: Array, start_lr: Array) -> Array:
    """limit + (start - limit) * lr / start_lr: from `start` at lr = start_lr to `limit` at 0."""
    return limit + (start - limit) * (lr / start_lr)


def energy_loss(
    cfg: EnergyLossConfig,
    predictions: dict[str, Array],
    graph: jraph.GraphsTuple,
    lr: Array,
    start_lr: Array,
) -> tuple[Array, dict[str, Array]]:
    """The weighted loss of a padded batch and DeePMD-kit's metrics (module docstring).

    Args:
        cfg: loss options (static).
        predictions: from `dpa2_jax.model.make_forces_fn`: energy [n_graph] eV, forces
            [n_node, 3] eV/A, virial [n_graph, 3, 3] eV, atom_energy [n_node] eV.
        graph: padded batch with labels and `has_*` flags (graph.py and the module docstring).
        lr: learning rate of this step (scalar).
        start_lr: the prefactors' reference rate: DeePMD-kit's `learning_rate.start_lr`, not the
            rate of step 0 (which warmup lowers, to 0 by default).

    Returns:
        (loss, metrics): the scalar loss and a dict of scalars: "loss", "rmse" = sqrt(loss), and
        per term on "rmse_<term>" ("mse") or "mae_<term>" ("mae"), NaN where no frame of the
        batch has the term's label.

    Raises:
        DataError: (when traced) a term needs a label field the graph does not have.
    """
    b = _Batch.of(cfg, graph, predictions["energy"].dtype)
    terms = {}  # term -> (value entering the loss, displayed metric, whether any frame has it)
    if cfg.has("e"):
        terms["e"] = _energy_term(cfg, predictions, b)
    if cfg.has("f") or cfg.has("pf"):
        r_f, has_f = _force_residual(cfg, predictions, b)
    if cfg.has("f"):
        terms["f"] = _force_term(cfg, r_f, has_f, b)
    if cfg.has("v"):
        terms["v"] = _virial_term(predictions, b)
    if cfg.has("ae"):
        terms["ae"] = _atom_energy_term(predictions, b)
    if cfg.has("pf"):
        terms["pf"] = _pref_force_term(cfg, r_f, has_f, b)
    loss = jnp.zeros((), b.dtype)
    metrics, metric = {}, "mae" if b.kind == "mae" else "rmse"
    for term, (value, display, present) in terms.items():
        start, limit = getattr(cfg, f"start_pref_{term}"), getattr(cfg, f"limit_pref_{term}")
        loss = loss + prefactor(start, limit, lr, start_lr) * value
        metrics[f"{metric}_{term}"] = jnp.where(present, display, jnp.nan)
    metrics["loss"] = loss
    metrics["rmse"] = jnp.sqrt(loss)
    return loss, metrics


@dataclasses.dataclass(frozen=True)
class _Batch:
    """What every term reads of a padded batch (at trace time).

    graph; dtype; kind: "mse", "mae" or "huber"; norm_exp: 1 + n of the module docstring;
    deltas: Huber deltas (energy, force, virial); node_graph [n_node]: each node's graph;
    inv_natoms [n_graph]: 1 / N_g, 0 for padding graphs; real_graph [n_graph], real_node
    [n_node]: padding masks.
    """

    graph: jraph.GraphsTuple
    dtype: jnp.dtype
    kind: str
    norm_exp: int
    deltas: tuple[float, float, float]
    node_graph: Array
    inv_natoms: Array
    real_graph: Array
    real_node: Array

    @classmethod
    def of(cls, cfg: EnergyLossConfig, graph: jraph.GraphsTuple, dtype) -> _Batch:
        n_node = fields.species(graph).shape[0]
        natoms = graph.n_node.astype(dtype)
        return cls(
            graph=graph, dtype=dtype,
            kind="mae" if cfg.loss_func == "mae" else ("huber" if cfg.use_huber else "mse"),
            norm_exp=2 if cfg.intensive_ener_virial else 1, deltas=cfg.deltas(),
            node_graph=fields.node_graph(graph, n_node),
            inv_natoms=jnp.where(natoms > 0, 1.0 / jnp.where(natoms > 0, natoms, 1.0), 0.0),
            real_graph=graph_mask(graph), real_node=node_mask(graph),
        )  # fmt: skip

    @property
    def n_graph(self) -> int:
        return self.graph.n_node.shape[0]

    @property
    def n_node(self) -> int:
        return fields.species(self.graph).shape[0]

    def flag(self, name: str) -> Array:
        """[n_graph] 1.0 for real frames having the label ``has_NAME`` (default: all)."""
        flag = fields.graph_field(self.graph, name)
        flag = jnp.ones((self.n_graph,), self.dtype) if flag is None else flag
        return jnp.where(self.real_graph, flag.astype(self.dtype), 0.0)


def _energy_term(cfg: EnergyLossConfig, predictions: dict, b: _Batch):
    """L_e, rmse_e (or mae_e) and presence; E = sum_i c_i E_i with enable_atom_ener_coeff."""
    has = b.flag("has_energy")
    energy = predictions["energy"]
    if cfg.enable_atom_ener_coeff:
        coeff = fields.node_field(b.graph, "atom_ener_coeff")
        coeff = jnp.ones((b.n_node,), b.dtype) if coeff is None else coeff
        weighted = jnp.where(b.real_node, coeff * predictions["atom_energy"], 0.0)
        energy = jax.ops.segment_sum(weighted, b.node_graph, num_segments=b.n_graph)
    r = jnp.where(has > 0, fields.label(b.graph, "energy")[0] - energy, 0.0)  # [n_graph]
    value = _frame_mean(_extensive_penalty(r, b.inv_natoms, b.kind, b.norm_exp, b.deltas[0]), has)
    squares = jnp.square(r * b.inv_natoms)  # [n_graph]
    display = value if b.kind == "mae" else jnp.sqrt(_frame_mean(squares, has))
    return value, display, jnp.sum(has) > 0


def _force_residual(cfg: EnergyLossConfig, predictions: dict, b: _Batch):
    """(r_f [n_node, 3], has_f [n_node]): force residuals (relative with relative_f), zero on
    atoms of frames without forces, and the per-atom flag."""
    has_f = b.flag("has_forces")[b.node_graph]  # [n_node]
    labels = fields.label(b.graph, "forces")[0]
    r_f = jnp.where((has_f > 0)[:, None], labels - predictions["forces"], 0.0)
    if cfg.relative_f is not None:
        scale = jnp.linalg.norm(labels, axis=-1) + cfg.relative_f  # [n_node]
        r_f = r_f / jnp.where(has_f > 0, scale, 1.0)[:, None]
    return r_f, has_f


def _force_term(cfg: EnergyLossConfig, r_f: Array, has_f: Array, b: _Batch):
    """L_f (on |r_f| per atom with f_use_norm), rmse_f (or mae_f) and presence."""
    if cfg.f_use_norm:
        value = _atom_mean(_penalty(_safe_norm(r_f)[:, None], b.kind, b.deltas[1]), has_f)
    else:
        value = _atom_mean(_penalty(r_f, b.kind, b.deltas[1]), has_f)
    display = value if b.kind == "mae" else jnp.sqrt(_atom_mean(jnp.square(r_f), has_f))
    return value, display, jnp.sum(has_f) > 0


def _virial_term(predictions: dict, b: _Batch):
    """L_v, rmse_v (or mae_v; per atom) and presence."""
    has = b.flag("has_virial")
    r = (fields.label(b.graph, "virial")[0] - predictions["virial"]).reshape(b.n_graph, 9)
    r = jnp.where((has > 0)[:, None], r, 0.0)
    penalty = _extensive_penalty(r, b.inv_natoms[:, None], b.kind, b.norm_exp, b.deltas[2])
    value = _frame_mean(jnp.mean(penalty, -1), has)
    squares = jnp.mean(jnp.square(r), -1) * b.inv_natoms**2  # [n_graph]
    display = value if b.kind == "mae" else jnp.sqrt(_frame_mean(squares, has))
    return value, display, jnp.sum(has) > 0


def _atom_energy_term(predictions: dict, b: _Batch):
    """L_ae, rmse_ae (or mae_ae) and presence; the energy's Huber delta."""
    has = b.flag("has_atom_energy")[b.node_graph]
    r = jnp.where(has > 0, _node_label(b.graph, "atom_energy") - predictions["atom_energy"], 0)
    value = _atom_mean(_penalty(r[:, None], b.kind, b.deltas[0]), has)
    display = value if b.kind == "mae" else jnp.sqrt(_atom_mean(jnp.square(r[:, None]), has))
    return value, display, jnp.sum(has) > 0


def _pref_force_term(cfg: EnergyLossConfig, r_f: Array, has_f: Array, b: _Batch):
    """L_pf, rmse_pf (or mae_pf) and presence: forces weighted by atom_pref (default 1 with
    use_default_pf)."""
    if cfg.use_default_pf:
        weight = fields.node_field(b.graph, "atom_pref")
        weight = jnp.ones((b.n_node,), b.dtype) if weight is None else weight
        has = has_f
    else:
        weight = _node_label(b.graph, "atom_pref")
        has = has_f * b.flag("has_atom_pref")[b.node_graph]
    value = _atom_mean(_penalty(r_f, b.kind, b.deltas[1]) * weight[:, None], has)
    display = value if b.kind == "mae" else jnp.sqrt(value)
    return value, display, jnp.sum(has) > 0


def _penalty(r: Array, kind: str, delta: float) -> Array:
    """Elementwise r^2 ("mse"), |r| ("mae") or the Huber function (quadratic below delta)."""
    if kind == "mse":
        return jnp.square(r)
    if kind == "mae":
        return jnp.abs(r)
    return jnp.where(jnp.abs(r) <= delta, 0.5 * jnp.square(r), delta * (jnp.abs(r) - 0.5 * delta))


def _extensive_penalty(r: Array, inv: Array, kind: str, norm_exp: int, delta: float) -> Array:
    """Penalty of an extensive residual (energy, virial) with DeePMD-kit's 1/N scaling per kind."""
    if kind == "mse":
        return jnp.square(r) * inv**norm_exp
    if kind == "mae":
        return jnp.abs(r) * inv
    return _penalty(r * inv, kind, delta)


def _frame_mean(values: Array, weight: Array) -> Array:
    """Mean of [n_graph] values over frames of weight 1; 0 when there are none."""
    count = jnp.sum(weight)
    return jnp.sum(values * weight) / jnp.where(count > 0, count, 1.0)


def _atom_mean(values: Array, weight: Array) -> Array:
    """Mean of [n_node, k] values over the components of atoms of weight 1 (pooled); 0 if none."""
    count = jnp.sum(weight) * values.shape[-1]
    return jnp.sum(values * weight[:, None]) / jnp.where(count > 0, count, 1.0)


def _safe_norm(r: Array) -> Array:
    """|r| over the last axis, with a zero (not NaN) gradient at r = 0."""
    sq = jnp.sum(jnp.square(r), axis=-1)
    return jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)


def _node_label(graph: jraph.GraphsTuple, name: str) -> Array:
    label = fields.node_field(graph, name)
    if label is None:
        raise DataError(
            f"graph.nodes has no {name!r} label, which the loss options ask for "
            f"(labels present: {sorted(graph.nodes)})"
        )
    return label
