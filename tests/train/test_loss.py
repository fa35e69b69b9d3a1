"""Parity of the energy loss with DeePMD-kit 3.2.0's dpmodel EnergyLoss, padding and labels."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from deepmd.dpmodel.loss.ener import EnergyLoss

from dpa2_jax.errors import ConfigError, DataError
from dpa2_jax.graph import batch_graphs, frame_to_graph, pad_graph
from dpa2_jax.train.loss import EnergyLossConfig, energy_loss, prefactor

START_LR = 1e-3
BASE = dict(start_pref_v=0.5, limit_pref_v=2.0)  # DeePMD's defaults plus a virial term
AE = dict(start_pref_ae=0.3, limit_pref_ae=0.7)
PF = dict(start_pref_pf=2.0, limit_pref_pf=0.5)
CASES = {
    "defaults": {},
    "virial": BASE,
    "only_start_pref_e": dict(start_pref_e=1.0, limit_pref_e=0.0, start_pref_f=0, limit_pref_f=0),
    "intensive": {**BASE, "intensive_ener_virial": True},
    "relative_f": {**BASE, "relative_f": 0.5},
    "atom_energy": {**BASE, **AE},
    "atom_pref": {**BASE, **PF},
    "atom_pref_default": {**BASE, **PF, "use_default_pf": True},
    "relative_f_atom_pref": {**PF, "relative_f": 0.2},
    "atom_ener_coeff": {**BASE, "enable_atom_ener_coeff": True},
    "mae": {**BASE, **AE, **PF, "loss_func": "mae"},
    "mae_f_use_norm": {**BASE, "loss_func": "mae", "f_use_norm": True},
    "huber": {**BASE, **AE, "use_huber": True, "huber_delta": [0.05, 0.6, 0.1]},
    "huber_f_use_norm": {**BASE, "use_huber": True, "huber_delta": 0.8, "f_use_norm": True},
}


def _frame(rng, natoms, labels=("energy", "forces", "virial")):
    """Random labels and predictions of one frame (eV, eV/A), O(1) residuals."""
    return {
        "natoms": natoms,
        "labels": set(labels),
        "energy": rng.normal(scale=3.0),
        "forces": rng.normal(size=(natoms, 3)),
        "virial": rng.normal(size=(3, 3)),
        "atom_energy": rng.normal(size=natoms),
        "atom_pref": rng.uniform(0.5, 2.0, size=natoms),
        "atom_ener_coeff": rng.choice([-1.0, 1.0, 2.0], size=natoms),
        "pred_energy": rng.normal(scale=3.0),
        "pred_forces": rng.normal(size=(natoms, 3)),
        "pred_virial": rng.normal(size=(3, 3)),
        "pred_atom_energy": rng.normal(size=natoms),
    }


def _batch(frames, extra_nodes=3, extra_graphs=2, extra_edges=5, seed=0):
    """Predictions and the padded graph (arbitrary positions) of the frames.

    Padding entries of the predictions hold random values: the loss must ignore them.
    """
    rng = np.random.default_rng(seed)
    graphs = []
    for f in frames:
        n = f["natoms"]
        g = frame_to_graph(
            rng.uniform(0.0, 4.0, size=(n, 3)),
            rng.integers(0, 2, size=n),
            None,
            rcut=3.0,
            sel=6,
            energy=f["energy"] if "energy" in f["labels"] else None,
            forces=f["forces"] if "forces" in f["labels"] else None,
            virial=f["virial"] if "virial" in f["labels"] else None,
        )
        present = float("atom_energy" in f["labels"])
        nodes = {
            **g.nodes,
            "atom_energy": f["atom_energy"] * present,
            "atom_pref": f["atom_pref"],
            "atom_ener_coeff": f["atom_ener_coeff"],
        }
        globals_ = {**g.globals, "has_atom_energy": np.array([present])}
        graphs.append(g._replace(nodes=nodes, globals=globals_))
    batch = batch_graphs(graphs)
    n_node = int(batch.n_node.sum()) + extra_nodes
    n_edge = int(batch.n_edge.sum()) + extra_edges
    n_graph = len(frames) + extra_graphs
    graph = pad_graph(batch, n_node, n_edge, n_graph)

    def padded(key, shape):
        out = rng.normal(size=shape)
        real = np.concatenate([np.reshape(f[key], (-1, *shape[1:])) for f in frames])
        out[: len(real)] = real
        return out

    predictions = {
        "energy": padded("pred_energy", (n_graph,)),
        "forces": padded("pred_forces", (n_node, 3)),
        "virial": padded("pred_virial", (n_graph, 3, 3)),
        "atom_energy": padded("pred_atom_energy", (n_node,)),
    }
    return predictions, graph


def _deepmd_loss(cfg: EnergyLossConfig, frames, lr, ragged=False):
    """DeePMD-kit's loss and metrics of the same numbers (one system, or a ragged batch)."""
    options = dataclasses.asdict(cfg)
    del options["type"]
    if isinstance(options["huber_delta"], tuple):
        options["huber_delta"] = list(options["huber_delta"])
    loss = EnergyLoss(starter_learning_rate=START_LR, **options)

    def stack(key, shape):
        return np.concatenate([np.reshape(f[key], shape) for f in frames])

    natoms = frames[0]["natoms"]
    # DeePMD's shapes: rectangular [nf, natoms, ...] for one system, flat [N, ...] when ragged.
    per_atom = (-1, 1) if ragged else (-1, natoms, 1)
    per_atom3 = (-1, 3) if ragged else (-1, natoms * 3)
    model = {
        "energy": stack("pred_energy", (1, 1)),
        "force": stack("pred_forces", per_atom3),
        "virial": stack("pred_virial", (1, 9)),
        "atom_energy": stack("pred_atom_energy", per_atom),
    }
    labels = {
        "energy": stack("energy", (1, 1)),
        "force": stack("forces", per_atom3),
        "virial": stack("virial", (1, 9)),
        "atom_ener": stack("atom_energy", per_atom[:-1]),
        "atom_pref": np.concatenate([np.repeat(f["atom_pref"], 3) for f in frames]).reshape(
            per_atom3
        ),
        "atom_ener_coeff": stack("atom_ener_coeff", per_atom[:-1]),
        "find_energy": 1.0,
        "find_force": 1.0,
        "find_virial": 1.0,
        "find_atom_ener": 1.0,
        "find_atom_pref": 1.0,
    }
    if ragged:
        model["n_node"] = np.array([f["natoms"] for f in frames])
    value, more = loss.call(lr, natoms, model, labels)
    return float(value), {k: float(v) for k, v in more.items()}


@functools.partial(jax.jit, static_argnums=0)
def _loss(cfg, predictions, graph, lr):
    return energy_loss(cfg, predictions, graph, lr, START_LR)


def _frames(seed, sizes, labels=("energy", "forces", "virial", "atom_energy")):
    rng = np.random.default_rng(seed)
    return [_frame(rng, n, labels) for n in sizes]


def _check(cfg, frames, lr, ragged):
    predictions, graph = _batch(frames)
    loss, metrics = _loss(cfg, predictions, graph, lr)
    ref_loss, ref_metrics = _deepmd_loss(cfg, frames, lr, ragged=ragged)
    assert float(loss) == pytest.approx(ref_loss, rel=1e-12, abs=0)
    assert set(metrics) == set(ref_metrics) | {"loss"}
    for key, value in ref_metrics.items():
        assert float(metrics[key]) == pytest.approx(value, rel=1e-12, abs=0), key
    assert float(metrics["loss"]) == float(loss)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("lr", [START_LR, 2.7e-4, 1e-8])
def test_matches_deepmd_one_system(enable_x64, case, lr):
    cfg = EnergyLossConfig(**CASES[case])
    _check(cfg, _frames(1, [5, 5, 5, 5]), lr, ragged=False)


@pytest.mark.parametrize("case", list(CASES))
def test_matches_deepmd_ragged_batch(enable_x64, case):
    """Frames of different sizes: DeePMD-kit's ragged (n_node) reduction."""
    cfg = EnergyLossConfig(**CASES[case])
    _check(cfg, _frames(2, [3, 7, 4]), 4e-4, ragged=True)


def test_padding_changes_nothing(enable_x64):
    cfg = EnergyLossConfig(**CASES["atom_energy"], **PF)
    frames = _frames(3, [4, 6])
    small = _loss(cfg, *_batch(frames, extra_nodes=1, extra_graphs=1, extra_edges=0), 3e-4)
    big = _loss(cfg, *_batch(frames, extra_nodes=40, extra_graphs=6, seed=9), 3e-4)
    for key in small[1]:
        assert float(big[1][key]) == pytest.approx(float(small[1][key]), rel=1e-13, abs=0)


@pytest.mark.parametrize("term,label", [("e", "energy"), ("v", "virial"), ("ae", "atom_energy")])
def test_frames_without_a_label_do_not_count(enable_x64, term, label):
    """A frame lacking a label drops out of that term only; other terms still see it."""
    cfg = EnergyLossConfig(**BASE, **AE)
    rng = np.random.default_rng(4)
    labelled = [_frame(rng, 5, ("energy", "forces", "virial", "atom_energy")) for _ in range(2)]
    all_labels = {"energy", "forces", "virial", "atom_energy"}
    unlabelled = _frame(rng, 5, all_labels - {label})
    _, mixed = _loss(cfg, *_batch([*labelled, unlabelled]), 5e-4)
    _, only_labelled = _loss(cfg, *_batch(labelled), 5e-4)
    unlabelled["labels"] = all_labels
    _, all_labelled = _loss(cfg, *_batch([*labelled, unlabelled]), 5e-4)
    for key in ("rmse_e", "rmse_f", "rmse_v", "rmse_ae"):
        expected = only_labelled if key == f"rmse_{term}" else all_labelled
        assert float(mixed[key]) == pytest.approx(float(expected[key]), rel=1e-13), key
    assert float(mixed[f"rmse_{term}"]) != pytest.approx(float(all_labelled[f"rmse_{term}"]))


def test_no_frame_with_a_label(enable_x64):
    """The term is zero and its metric NaN, as DeePMD-kit displays a missing label."""
    cfg = EnergyLossConfig(**BASE)
    frames = _frames(5, [4, 4], labels=("forces",))
    loss, metrics = _loss(cfg, *_batch(frames), START_LR)
    forces_only = EnergyLossConfig(start_pref_e=0, limit_pref_e=0)
    expected, _ = _loss(forces_only, *_batch(frames), START_LR)
    assert np.isnan(metrics["rmse_e"]) and np.isnan(metrics["rmse_v"])
    assert np.isfinite(metrics["rmse_f"])
    assert float(loss) == pytest.approx(float(expected), rel=1e-14)


@pytest.mark.parametrize("lr", [START_LR, 6e-4, 1e-5, 0.0])
def test_prefactor_schedule(enable_x64, lr):
    frames = _frames(6, [5, 5])
    terms = {
        "e": dict(start_pref_e=0.02, limit_pref_e=1.0),
        "f": dict(start_pref_f=1000.0, limit_pref_f=1.0),
        "v": dict(start_pref_v=0.1, limit_pref_v=3.0),
    }
    zero = dict(start_pref_e=0, limit_pref_e=0, start_pref_f=0, limit_pref_f=0)
    total = 0.0
    for term, prefs in terms.items():
        loss, metrics = _loss(EnergyLossConfig(**{**zero, **prefs}), *_batch(frames), lr)
        start, limit = prefs.values()
        pref = limit + (start - limit) * lr / START_LR
        assert float(prefactor(start, limit, lr, START_LR)) == pytest.approx(pref, rel=1e-15)
        natoms = 5 if term in "ev" else 1  # energy and virial: squared error per atom
        assert float(loss) == pytest.approx(pref * metrics[f"rmse_{term}"] ** 2 * natoms)
        total += float(loss)
    all_terms = EnergyLossConfig(**terms["e"], **terms["f"], **terms["v"])
    loss, _ = _loss(all_terms, *_batch(frames), lr)
    assert float(loss) == pytest.approx(total, rel=1e-13)


@pytest.mark.parametrize("case", ["defaults", "huber_f_use_norm", "mae", "relative_f"])
def test_gradient_is_finite_with_padding(enable_x64, case):
    cfg = EnergyLossConfig(**CASES[case])
    frames = _frames(7, [3, 4])
    predictions, graph = _batch(frames)
    # Exact predictions on one frame put residuals at zero, where norms have kinks.
    predictions["forces"][:3] = frames[0]["forces"]
    grads = jax.grad(lambda p: energy_loss(cfg, p, graph, 1e-4, START_LR)[0])(predictions)
    for key, grad in grads.items():
        assert np.all(np.isfinite(grad)), key
    assert np.all(np.asarray(grads["forces"])[7:] == 0)  # padding nodes get no gradient


def test_float32():
    frames = _frames(8, [4, 4])
    predictions, graph = _batch(frames)
    predictions = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), predictions)
    graph = jax.tree_util.tree_map(
        lambda x: x.astype(np.float32) if x.dtype == np.float64 else x, graph
    )
    loss, metrics = _loss(EnergyLossConfig(**BASE), predictions, graph, 1e-4)
    assert all(m.dtype == jnp.float32 for m in metrics.values())
    assert loss.dtype == jnp.float32 and np.isfinite(loss)


@pytest.mark.parametrize(
    "options,name",
    [
        (dict(type="ener_spin"), "type"),
        (dict(loss_func="l3"), "loss_func"),
        (dict(start_pref_gf=1.0), "start_pref_gf"),
        (dict(limit_pref_h=1.0), "limit_pref_h"),
        (dict(numb_generalized_coord=2), "numb_generalized_coord"),
        (dict(f_use_norm=True), "f_use_norm"),
        (dict(use_huber=True, relative_f=0.1), "relative_f"),
        (dict(use_huber=True, **PF), "start_pref_pf"),
        (dict(huber_delta=[0.1, 0.2]), "huber_delta"),
    ],
)
def test_bad_options(options, name):
    with pytest.raises(ConfigError, match=name):
        EnergyLossConfig(**options)


def test_missing_label_field(enable_x64):
    predictions, graph = _batch(_frames(9, [4]))
    graph = graph._replace(nodes={k: v for k, v in graph.nodes.items() if k != "atom_pref"})
    with pytest.raises(DataError, match="atom_pref"):
        energy_loss(EnergyLossConfig(**PF), predictions, graph, 1e-4, START_LR)
    cfg = EnergyLossConfig(**PF, use_default_pf=True)  # weights of 1.0 when absent
    loss, _ = energy_loss(cfg, predictions, graph, 1e-4, START_LR)
    assert np.isfinite(loss)


def test_config_is_hashable_with_list_delta():
    cfg = EnergyLossConfig(huber_delta=[0.1, 0.2, 0.3])
    assert cfg.huber_delta == (0.1, 0.2, 0.3)
    assert hash(cfg) == hash(EnergyLossConfig(huber_delta=(0.1, 0.2, 0.3)))


def test_warmup_from_zero_keeps_the_loss_finite_and_follows_deepmd(enable_x64):
    """Warmup with the default warmup_start_factor 0 puts lr(0) at 0. The prefactors' reference
    rate is learning_rate.start_lr, as in DeePMD-kit (deepmd/pt/train/training.py builds the loss
    with ``config["learning_rate"]["start_lr"]`` as ``starter_learning_rate``), not lr(0): the
    loss at step 0 is finite, the limit prefactors' loss. Learning rates come from DeePMD-kit's
    own LearningRateExp, the loss (prefactors included) from its dpmodel EnergyLoss."""
    from deepmd.dpmodel.utils.learning_rate import BaseLR

    from dpa2_jax.train.schedules import LearningRateConfig, make_schedule

    options = dict(start_lr=START_LR, stop_lr=1e-5, decay_steps=2, warmup_steps=4)
    schedule = make_schedule(LearningRateConfig(**options), 20)
    theirs = BaseLR(type="exp", num_steps=20, **options)
    assert float(schedule(0)) == 0.0 and schedule.start_lr == START_LR
    cfg = EnergyLossConfig(**CASES["atom_pref"])
    frames = _frames(3, [5, 5, 5])
    predictions, graph = _batch(frames)
    for step in range(8):  # warmup (0 to 3), then the decay
        lr = schedule(step)
        assert float(lr) == theirs.value(step), step
        loss, metrics = _loss(cfg, predictions, graph, lr)  # reference: schedule.start_lr
        ref_loss, ref_metrics = _deepmd_loss(cfg, frames, theirs.value(step))
        assert np.isfinite(float(loss)) and float(loss) == pytest.approx(ref_loss, rel=1e-12)
        assert float(metrics["rmse"]) == pytest.approx(ref_metrics["rmse"], rel=1e-12)
    # step 0 (lr = 0): every prefactor at its limit, and lr(0) as the reference is 0/0
    limits = {f"start_pref_{t}": getattr(cfg, f"limit_pref_{t}") for t in ("e", "f", "v", "pf")}
    at_limits = _loss(dataclasses.replace(cfg, **limits), predictions, graph, START_LR)[0]
    assert float(_loss(cfg, predictions, graph, schedule(0))[0]) == float(at_limits)
    assert np.isnan(float(energy_loss(cfg, predictions, graph, schedule(0), schedule(0))[0]))
