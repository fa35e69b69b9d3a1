"""dpa2_jax/model/energy.py ``init``: DeePMD-kit's tree and initial distributions, on the host.

The tree (every leaf's path, shape and dtype) equals what reading a DeePMD-kit model of the same
options gives; weights follow N(0, 1/(d_in + d_out)), biases N(0, 1), timesteps N(0.1, 0.001^2)
(DeePMD's ``NativeLayer`` initialisation); statistics start neutral; the key decides the values.
"""

import pathlib

import jax
import numpy as np

from dpa2_jax.io.deepmd_model import from_deepmd, model_json
from dpa2_jax.io.dp_format import read_dp
from dpa2_jax.model import init

REFERENCE = pathlib.Path(__file__).resolve().parents[1] / "reference"


def _leaves(tree):
    return {
        jax.tree_util.keystr(path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def test_tree_matches_a_deepmd_model_of_the_same_options(enable_x64):
    cfg, reference = from_deepmd(model_json(read_dp(REFERENCE / "base.dp")))
    ours, theirs = _leaves(init(jax.random.key(0), cfg)), _leaves(reference)
    assert sorted(ours) == sorted(theirs)
    for name, leaf in ours.items():
        assert leaf.shape == theirs[name].shape, name
        assert leaf.dtype == np.float64, name


def test_distributions_and_neutral_statistics(enable_x64):
    cfg, _ = from_deepmd(model_json(read_dp(REFERENCE / "base.dp")))
    leaves = _leaves(init(jax.random.key(1), cfg))
    weights = [v for k, v in leaves.items() if k.endswith("['w']") and v.ndim == 2]
    z = np.concatenate([np.ravel(w) * np.sqrt(sum(w.shape)) for w in weights])
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1.0) < 0.02  # ~10^5 draws
    biases = np.concatenate([np.ravel(v) for k, v in leaves.items() if k.endswith("['b']")])
    assert abs(biases.std() - 1.0) < 0.05
    idt = np.concatenate([np.ravel(v) for k, v in leaves.items() if k.endswith("['idt']")])
    assert idt.size and abs(idt.mean() - 0.1) < 1e-3 and idt.std() < 2e-3
    for name, leaf in leaves.items():
        if name.endswith("['davg']") or "bias" in name:
            assert not np.any(leaf), name
        if name.endswith("['dstd']"):
            assert np.all(leaf == 1.0), name


def test_same_key_same_values_other_key_other_values(enable_x64):
    cfg, _ = from_deepmd(model_json(read_dp(REFERENCE / "base.dp")))
    a, b = init(jax.random.key(3), cfg), init(jax.random.key(3), cfg)
    c = init(jax.random.PRNGKey(4), cfg)  # legacy uint32 keys work too
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    w = a["descriptor"]["repinit"]["embedding"][0]["w"]
    assert not np.array_equal(w, c["descriptor"]["repinit"]["embedding"][0]["w"])
