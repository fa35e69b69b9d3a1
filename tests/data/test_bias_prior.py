"""Energy biases the data cannot determine (data/stats.py: ``follow_prior``): one composition
leaves the split between elements free; the fit keeps every determined combination as least
squares gives it, takes the rest from a stated prior and warns, naming the elements."""

import logging

import numpy as np
import pytest

from dpa2_jax.data.stats import (
    bias_prior_vector,
    energy_bias,
    undetermined_directions,
)
from dpa2_jax.errors import ConfigError
from dpa2_jax.train.config import run_config

ONE_COMPOSITION = np.array([[108, 108]] * 6)  # GeTe: every frame Ge108Te108
ENERGIES = np.array([-35527.0, -35527.5, -35522.3, -35520.2, -35519.8, -35524.1])


def _lstsq(energies, counts):
    return np.linalg.lstsq(counts.astype(float), energies, rcond=None)[0]


def test_one_composition_keeps_the_fitted_energies_and_follows_the_prior(caplog):
    prior = [-107.5, -221.0]
    with caplog.at_level(logging.WARNING, logger="dpa2_jax"):
        bias = energy_bias(ENERGIES, ONE_COMPOSITION, prior=prior, type_names=["Ge", "Te"])
    plain = _lstsq(ENERGIES, ONE_COMPOSITION)
    np.testing.assert_allclose(ONE_COMPOSITION @ bias, ONE_COMPOSITION @ plain, rtol=1e-13)
    # the undetermined direction Ge - Te is the prior's; lstsq's own split is even
    np.testing.assert_allclose(bias[0] - bias[1], prior[0] - prior[1], rtol=1e-12)
    assert abs(plain[0] - plain[1]) < 1e-9
    [record] = caplog.records
    assert "['Ge', 'Te']" in record.getMessage() and "-107.5" in record.getMessage()


def test_without_a_prior_the_minimum_norm_is_kept_and_a_warning_says_so(caplog):
    counts = np.array([[64, 128]] * 4)  # water: O64H128
    energies = np.array([-30000.0, -30001.0, -29999.5, -30000.2])
    with caplog.at_level(logging.WARNING, logger="dpa2_jax"):
        bias = energy_bias(energies, counts, type_names=["O", "H"])
    np.testing.assert_allclose(bias, _lstsq(energies, counts), rtol=1e-13)
    assert "['O', 'H']" in caplog.text and "minimum-norm" in caplog.text


def test_elements_without_a_prior_share_the_energy_left_per_atom(caplog):
    counts = np.array([[2, 4, 0], [2, 4, 0], [2, 4, 0]])  # one composition, a type absent
    energies = np.array([-60.0, -61.0, -59.0])
    with caplog.at_level(logging.WARNING, logger="dpa2_jax"):
        bias = energy_bias(energies, counts, prior=[None, None, None], type_names="ABC")
    np.testing.assert_allclose(bias[:2], [-10.0, -10.0], rtol=1e-13)  # -60 eV over 6 atoms
    assert bias[2] == 0.0  # absent: untouched
    np.testing.assert_allclose(_lstsq(energies, counts)[:2], [-6.0, -12.0], rtol=1e-12)
    assert "['A', 'B']" in caplog.text and "C" not in caplog.text.split("biases of")[1][:12]
    # one element with a prior: the other takes what is left
    bias = energy_bias(energies, counts, prior=[-3.0, None, None])
    np.testing.assert_allclose(bias[:2], [-3.0, -13.5], rtol=1e-13)


def test_two_compositions_of_three_types_fix_one_direction():
    counts = np.array([[1, 1, 0], [1, 1, 0], [0, 1, 1], [0, 1, 1]])
    energies = np.array([-5.0, -5.2, -9.0, -8.8])
    prior = [-1.0, -2.0, -3.0]
    bias = energy_bias(energies, counts, prior=prior)
    np.testing.assert_allclose(counts @ bias, counts @ _lstsq(energies, counts), atol=1e-12)
    null = undetermined_directions(counts.astype(float))
    assert null.shape == (3, 1)
    np.testing.assert_allclose(null.T @ (bias - prior), 0.0, atol=1e-12)


def test_full_rank_data_are_unchanged_and_silent(caplog):
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 9, size=(10, 3))
    energies = counts @ np.array([-3.0, -1.5, -7.0]) + rng.normal(size=10)
    with caplog.at_level(logging.WARNING, logger="dpa2_jax"):
        bias = energy_bias(energies, counts, prior=[100.0, None, -50.0])
    np.testing.assert_allclose(bias, _lstsq(energies, counts), rtol=1e-12)
    assert undetermined_directions(counts.astype(float)).shape == (3, 0)
    assert not caplog.records


def test_preset_and_excluded_types_stay_out_of_the_undetermined_part():
    counts = np.array([[3, 3, 2]] * 4)
    energies = np.array([-30.0, -31.0, -29.5, -30.5])
    bias = energy_bias(energies, counts, preset=[None, None, -4.0], prior=[-1.0, -2.0, 0.0])
    assert bias[2] == -4.0
    np.testing.assert_allclose(bias[0] - bias[1], 1.0, rtol=1e-12)
    np.testing.assert_allclose(counts @ bias, np.mean(energies), rtol=1e-13)
    bias = energy_bias(energies, counts, atom_exclude_types=[2], prior=[-1.0, -2.0, 7.0])
    assert bias[2] == 0.0


@pytest.mark.parametrize(
    "prior, message",
    [
        ({"Xe": -1.0}, "element 'Xe' is not in the type map"),
        ({"O": "low"}, r"bias_prior\['O'\] = 'low'"),
        ([1.0, 2.0], "give {element: energy in eV}"),
    ],
)
def test_bad_bias_priors_name_the_problem(prior, message):
    with pytest.raises(ConfigError, match=message):
        bias_prior_vector(["O", "H"], prior)


def test_input_bias_prior_is_read_and_checked(tmp_path):
    d = {
        "model": {"type_map": ["O", "H"], "bias_prior": {"O": -430.0},
                  "descriptor": {"type": "se_e2_a", "rcut": 4.0, "sel": [8, 16]},
                  "fitting_net": {"neuron": [8]}},
        "learning_rate": {"start_lr": 1e-3},
        "training": {"numb_steps": 1, "training_data": {"systems": [str(tmp_path)]}},
    }  # fmt: skip
    assert run_config(d).bias_prior == {"O": -430.0}
    d["model"]["bias_prior"] = {"N": -1.0}
    with pytest.raises(ConfigError, match="model.bias_prior: element 'N'"):
        run_config(d)
