"""Fine-tuning's type-embedding carry-over (descriptor/type_embedding.py: change_type_map) on a
hand-made one-layer table."""

import numpy as np
import pytest

from dpa2_jax.descriptor import type_embedding


@pytest.mark.parametrize(
    "n_old, width, index",
    [
        (3, 4, [2, -1, 0, 1]),  # C/H/N/O from O/H/C-like: N new, width == new ntypes
        (4, 4, [-1, -1]),  # GeTe from H/C/N/O: both new, width == 2 x new ntypes
        (2, 5, [1, -1, 0]),  # no residual
    ],
)
def test_new_elements_get_table_rows_in_0_1_and_kept_ones_their_old_rows(n_old, width, index):
    """As DeePMD-kit's change_type_map: a new element's table row (weights plus the residual,
    without the bias) is uniform in [0, 1), whatever the new number of types."""
    rng = np.random.default_rng(0)
    old = [{"w": rng.normal(size=(n_old, width)), "b": rng.normal(size=width)}]
    [layer] = type_embedding.change_type_map(old, index, np.random.default_rng(1))
    table_old = np.asarray(type_embedding.apply(old, np.eye(n_old)))[:-1] - old[0]["b"]
    table = np.asarray(type_embedding.apply([layer], np.eye(len(index))))[:-1] - layer["b"]
    for t, i in enumerate(index):
        if i >= 0:
            np.testing.assert_allclose(table[t], table_old[i], atol=1e-14)
        else:
            assert np.all((table[t] >= 0) & (table[t] < 1)), table[t]


def test_refit_prior_keeps_known_biases_and_lets_new_elements_share():
    """Fine-tuning's prior of the bias correction (finetune.fit_prior): 0 keeps a known
    element's pretrained bias, a user value counts from the current bias, new elements share."""
    from dpa2_jax.train.finetune import fit_prior

    bias = np.array([-90.0, -10.0, 0.0, 0.0])  # O, H pretrained; Ge, Te new (fresh: 0)
    type_map = ["O", "H", "Ge", "Te"]
    assert fit_prior(type_map, bias, "change", None, [2, 3]) == [0.0, 0.0, None, None]
    assert fit_prior(type_map, bias, "change", {"H": -13.0, "Te": -200.0}, [2, 3]) == [
        0.0, -3.0, None, -200.0,
    ]  # fmt: skip
    assert fit_prior(type_map, bias, "set", None, [2, 3]) is None  # DeePMD's minimum norm
    assert fit_prior(type_map, bias, "set", {"Ge": -100.0}, [2, 3]) == [None, None, -100.0, None]
