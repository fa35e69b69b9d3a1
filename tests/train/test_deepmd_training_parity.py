"""Training parity with DeePMD-kit 3.2.0's PyTorch backend (stored values: tests/reference/
training_tiny.npz and training_tiny_float32.npz, made by scripts/make_training_reference.py,
which documents the setup).

On the tiny model and 384-atom water frames with energy, force and virial labels: our loss, its
metrics and its gradient equal DeePMD-kit's EnergyStdLoss and torch autograd to 1e-10; ten Adam
steps on DeePMD's learning-rate schedule follow torch's parameter trajectory to 1e-8. With
``"precision": "float32"`` (descriptor and fitting) the same holds at float32's tolerances
(measured: loss 1e-8, metrics 6e-7, gradients 4e-5 of each leaf's largest entry, ten losses
4e-6, parameters after ten steps 7e-7).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpa2_jax.data import read_npy_system
from dpa2_jax.graph import batch_graphs, pad_graph, system_to_graphs
from dpa2_jax.io.deepmd_config import model_config
from dpa2_jax.model import init
from dpa2_jax.train.loss import EnergyLossConfig
from dpa2_jax.train.optimizer import make_optimizer, param_groups
from dpa2_jax.train.schedules import LearningRateConfig, make_schedule
from dpa2_jax.train.state import create_state
from dpa2_jax.train.step import make_loss_fn, make_train_step
from tests.conftest import ROOT, SYSTEMS, load_config_module

REFERENCES = {"float64": "training_tiny.npz", "float32": "training_tiny_float32.npz"}
# relative tolerances: loss, metrics, gradient, losses of ten steps, parameters after them
TOLERANCES = {
    "float64": (1e-10, 1e-10, 1e-10, 1e-10, 1e-8),
    "float32": (1e-6, 1e-5, 4e-4, 4e-5, 1e-5),
}
LOSS = EnergyLossConfig(start_pref_e=0.02, limit_pref_e=1.0, start_pref_f=1000.0,
                        limit_pref_f=1.0, start_pref_v=0.02, limit_pref_v=1.0)  # fmt: skip
LR = LearningRateConfig(type="exp", start_lr=1e-3, stop_lr=1e-5, decay_steps=3)
STEPS = 10


@pytest.fixture(scope="module", params=["float64", "float32"])
def setup(request):
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    ref = dict(np.load(ROOT / "tests" / "reference" / REFERENCES[request.param]))
    model = load_config_module("tiny").get_config().model.to_dict()
    model["descriptor"]["precision"] = model["fitting_net"]["precision"] = request.param
    cfg = model_config(model)
    ref["tolerances"] = TOLERANCES[request.param]
    template = init(jax.random.key(0), cfg)

    def tree(prefix):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: jnp.asarray(ref[prefix + jax.tree_util.keystr(path)]), template
        )

    system = read_npy_system(SYSTEMS / "water_virial_384", cfg.type_map)
    graphs = system_to_graphs(system, cfg.descriptor.rcut, cfg.descriptor.sel)
    shape = (system.natoms + 1, max(int(g.n_edge[0]) for g in graphs[:STEPS]), 2)
    batches = [pad_graph(batch_graphs([g]), *shape) for g in graphs[:STEPS]]
    yield cfg, ref, tree, batches
    jax.config.update("jax_enable_x64", previous)


def _close(ours, theirs, rtol, what):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    scale = max(float(np.max(np.abs(theirs))), 1e-300)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * scale, err_msg=what)


def test_schedule_gives_the_reference_learning_rates(setup):
    _, ref, _, _ = setup
    schedule = make_schedule(LR, STEPS)
    _close([schedule(k) for k in range(STEPS)], ref["lrs"], 1e-15, "lr")


def test_loss_metrics_and_gradient_match_torch(setup):
    cfg, ref, tree, batches = setup
    rtol_loss, rtol_metrics, rtol_grad, _, _ = ref["tolerances"]
    params = tree("params0")
    lr = ref["lrs"][0]
    loss_fn = make_loss_fn(cfg, None, LOSS, float(lr))
    (loss, metrics), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
        params, batches[0], lr
    )
    _close(loss, ref["loss0"], rtol_loss, "loss")
    for name in ("rmse_e", "rmse_f", "rmse_v", "rmse"):
        _close(metrics[name], ref[f"metrics0/{name}"], rtol_metrics, name)
    labels = param_groups(params)
    expected = tree("grad")
    checked = 0
    for (path, g), label, e in zip(
        jax.tree_util.tree_flatten_with_path(grads)[0], jax.tree.leaves(labels, is_leaf=lambda x: x is None),
        jax.tree.leaves(expected), strict=True,
    ):  # fmt: skip
        if label is not None:
            assert g.dtype == e.dtype, jax.tree_util.keystr(path)
            _close(g, e, rtol_grad, jax.tree_util.keystr(path))
            checked += 1
    assert checked > 20


def test_ten_adam_steps_follow_torch(setup):
    cfg, ref, tree, batches = setup
    *_, rtol_losses, rtol_params = ref["tolerances"]
    schedule = make_schedule(LR, STEPS)
    optimizer = make_optimizer()
    step = jax.jit(make_train_step(cfg, None, LOSS, optimizer, schedule))
    state = create_state(tree("params0"), optimizer)
    losses = []
    for batch in batches:
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    _close(losses, ref["losses"], rtol_losses, "losses")
    for (path, ours), theirs in zip(
        jax.tree_util.tree_flatten_with_path(state.params)[0], jax.tree.leaves(tree("params10")),
        strict=True,
    ):  # fmt: skip
        _close(ours, theirs, rtol_params, jax.tree_util.keystr(path))
