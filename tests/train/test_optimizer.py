"""dpa2_jax/train/optimizer.py: statistics stay fixed, everything else follows Adam."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dpa2_jax.train.optimizer import make_optimizer


def test_statistics_are_frozen_and_weights_move():
    params = {
        "descriptor": {"repinit": {"davg": jnp.ones((2, 3, 4)), "dstd": jnp.ones((2, 3, 4)),
                                   "embedding": [{"w": jnp.ones((2, 2))}]}},
        "heads": {"default": {"fitting": {"bias_atom_e": jnp.zeros((2, 1)),
                                          "layers": [{"w": jnp.ones((2, 1))}]},
                              "out_bias": jnp.zeros(2)}},
    }  # fmt: skip
    grads = jax.tree.map(jnp.ones_like, params)
    opt = make_optimizer(optax.constant_schedule(0.1), gradient_max_norm=1.0)
    updates, _ = opt.update(grads, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    rep, head = new["descriptor"]["repinit"], new["heads"]["default"]
    for frozen, old in ((rep["davg"], 1.0), (rep["dstd"], 1.0), (head["out_bias"], 0.0),
                        (head["fitting"]["bias_atom_e"], 0.0)):  # fmt: skip
        np.testing.assert_array_equal(frozen, old)
    np.testing.assert_allclose(rep["embedding"][0]["w"], 0.9, rtol=1e-6)  # Adam's first step
    np.testing.assert_allclose(head["fitting"]["layers"][0]["w"], 0.9, rtol=1e-6)
