"""Model deviation (model/deviation.py) against a direct numpy computation and against
DeePMD-kit 3.2.0's own functions and model_devi.out writer."""

from __future__ import annotations

import numpy as np
import pytest

from dpa2_jax.errors import ConfigError
from dpa2_jax.model import deviation


@pytest.fixture
def ensemble():
    """4 models, 3 frames, 5 atoms: energies eV, forces eV/A, virials eV."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(4, 3)), rng.normal(size=(4, 3, 5, 3)), rng.normal(size=(4, 3, 3, 3))


def _direct(energies, forces, virials):
    """The definitions written out with loops over frames and atoms."""
    n_model, n_frame, n_atom, _ = forces.shape
    rows = []
    for k in range(n_frame):
        eps_f = []
        for i in range(n_atom):
            mean = forces[:, k, i].mean(axis=0)
            eps_f.append(np.sqrt(np.mean([np.sum((forces[m, k, i] - mean) ** 2)
                                          for m in range(n_model)])))  # fmt: skip
        v = virials[:, k].reshape(n_model, 9) / n_atom
        eps_v = np.sqrt(np.mean((v - v.mean(axis=0)) ** 2, axis=0))
        e = energies[:, k] / n_atom
        rows.append([2 * k, eps_v.max(), eps_v.min(), np.sqrt(np.sum(eps_v**2)) / 3,
                     max(eps_f), min(eps_f), np.mean(eps_f), np.sqrt(np.mean((e - e.mean()) ** 2))])  # fmt: skip
    return np.array(rows)


def test_equals_direct_numpy(ensemble):
    table = deviation.model_deviation(*ensemble, frequency=2)
    np.testing.assert_allclose(table, _direct(*ensemble), rtol=1e-12, atol=1e-15)


def test_equals_deepmd_kit(ensemble, tmp_path):
    model_devi = pytest.importorskip("deepmd.infer.model_devi")
    energies, forces, virials = ensemble
    n_atom = forces.shape[2]
    ref = np.column_stack([
        np.arange(3) * 10,
        *model_devi.calc_model_devi_v(virials.reshape(4, 3, 9) / n_atom),
        *model_devi.calc_model_devi_f(forces),
        model_devi.calc_model_devi_e(energies[..., None] / n_atom),
    ])  # fmt: skip
    table = deviation.model_deviation(energies, forces, virials, frequency=10)
    np.testing.assert_allclose(table, ref, rtol=1e-12)
    ours, theirs = tmp_path / "ours.out", tmp_path / "theirs.out"
    deviation.write_model_devi(ours, table, title="traj")
    model_devi.write_model_devi_out(ref, str(theirs), header="traj")
    assert ours.read_text() == theirs.read_text()  # same header, columns and number format
    back = deviation.read_model_devi(ours)
    assert tuple(back) == deviation.COLUMNS
    np.testing.assert_allclose(back["max_devi_f"], table[:, 4], rtol=1e-6)


def test_identical_models_do_not_deviate(ensemble):
    energies, forces, virials = (np.repeat(x[:1], 3, axis=0) for x in ensemble)
    np.testing.assert_allclose(deviation.model_deviation(energies, forces, virials)[:, 1:], 0.0,
                               atol=1e-15)  # fmt: skip


def test_needs_two_models(ensemble):
    energies, forces, virials = (x[:1] for x in ensemble)
    with pytest.raises(ConfigError, match="n_model >= 2"):
        deviation.model_deviation(energies, forces, virials)
