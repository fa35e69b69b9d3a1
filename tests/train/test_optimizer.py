"""dpa2_jax/train/optimizer.py: statistics stay fixed, the sampled head and the descriptor follow
Adam, the other heads do not move at all."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dpa2_jax.train.optimizer import DESCRIPTOR, head_group, make_optimizer


def _params(heads=("default",)):
    return {
        "descriptor": {"repinit": {"davg": jnp.ones((2, 3, 4)), "dstd": jnp.ones((2, 3, 4)),
                                   "embedding": [{"w": jnp.ones((2, 2))}]}},
        "heads": {h: {"fitting": {"bias_atom_e": jnp.zeros((2, 1)),
                                  "layers": [{"w": jnp.ones((2, 1))}]},
                      "out_bias": jnp.zeros(2)} for h in heads},
    }  # fmt: skip


def test_statistics_are_frozen_and_weights_move():
    params = _params()
    grads = jax.tree.map(jnp.ones_like, params)
    opt = make_optimizer(gradient_max_norm=1.0)
    updates, _ = opt.update(grads, opt.init(params), params, 0.1)
    new = optax.apply_updates(params, updates)
    rep, head = new["descriptor"]["repinit"], new["heads"]["default"]
    for frozen, old in ((rep["davg"], 1.0), (rep["dstd"], 1.0), (head["out_bias"], 0.0),
                        (head["fitting"]["bias_atom_e"], 0.0)):  # fmt: skip
        np.testing.assert_array_equal(frozen, old)
    np.testing.assert_allclose(rep["embedding"][0]["w"], 0.9, rtol=1e-6)  # Adam's first step
    np.testing.assert_allclose(head["fitting"]["layers"][0]["w"], 0.9, rtol=1e-6)


def test_matches_optax_adam_with_clipping_for_a_single_task():
    params = jax.tree.map(lambda x: x.astype(jnp.float64), _params())
    rng = np.random.default_rng(0)
    opt = make_optimizer(gradient_max_norm=0.5)
    ref = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(1e-2))
    state, ref_state, p, q = opt.init(params), ref.init(params), params, params
    for _ in range(3):
        g = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), p)
        g = jax.tree_util.tree_map_with_path(  # statistics get no gradient in the model
            lambda path, x: 0 * x if path[-1].key in ("davg", "dstd", "out_bias", "bias_atom_e")
            else x, g)  # fmt: skip
        u, state = opt.update(g, state, p, 1e-2)
        p = optax.apply_updates(p, u)
        uq, ref_state = ref.update(g, ref_state, q)
        q = optax.apply_updates(q, uq)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)


def test_inactive_head_parameters_and_moments_are_bit_for_bit_unchanged():
    params = _params(("water", "cho"))
    opt = make_optimizer()
    state = opt.init(params)
    assert set(state) == {DESCRIPTOR, head_group("water"), head_group("cho")}
    grads = jax.tree.map(jnp.ones_like, params)
    u, state = opt.update(grads, state, params, 0.1, (DESCRIPTOR, head_group("water")))
    params = optax.apply_updates(params, u)
    before_cho, state_cho = params["heads"]["cho"], state[head_group("cho")]
    u, state2 = opt.update(grads, state, params, 0.1, (DESCRIPTOR, head_group("water")))
    after = optax.apply_updates(params, u)
    for a, b in zip(jax.tree.leaves(before_cho), jax.tree.leaves(after["heads"]["cho"])):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(state_cho), jax.tree.leaves(state2[head_group("cho")])):
        np.testing.assert_array_equal(a, b)
    assert int(state2[head_group("water")].count) == 2 and int(state2[head_group("cho")].count) == 0
    assert not np.array_equal(after["heads"]["water"]["fitting"]["layers"][0]["w"],
                              params["heads"]["water"]["fitting"]["layers"][0]["w"])  # fmt: skip


@pytest.mark.parametrize("freeze, scale", [(True, 1.0), (False, 0.1)])
def test_freeze_descriptor_and_smaller_descriptor_learning_rate(freeze, scale):
    params = _params()
    opt = make_optimizer(freeze_descriptor=freeze, descriptor_lr_scale=scale)
    grads = jax.tree.map(jnp.ones_like, params)
    u, state = opt.update(grads, opt.init(params), params, 0.1)
    w_desc = u["descriptor"]["repinit"]["embedding"][0]["w"]
    w_head = u["heads"]["default"]["fitting"]["layers"][0]["w"]
    np.testing.assert_allclose(w_head, -0.1, rtol=1e-4)
    np.testing.assert_allclose(w_desc, 0.0 if freeze else -0.1 * scale, rtol=1e-4)
    assert (DESCRIPTOR in state) is not freeze
