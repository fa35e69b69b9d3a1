"""Energy and forces of the smooth tiny model are continuous when an atom crosses a cutoff.

One atom B moves along a line away from atom A of a small cluster, so that |r_AB| crosses the
repinit cutoff (4 A) or the repformer and three-body cutoffs (both 3 A in configs/tiny.py). Energy
steps must be bounded by step * max |dE/dd| (no jump), forces must not jump, and beyond every
cutoff B must not interact at all. Helpers come from model_helpers.py.
"""

import numpy as np
import pytest

from dpa2_jax.graph import batch_graphs, frame_to_graph, pad_graph

from model_helpers import PAD, random_params, run_model, tiny_config


@pytest.fixture(scope="session")
def cfg():
    cfg = tiny_config()
    assert cfg.descriptor.smooth
    return cfg


@pytest.fixture(scope="session")
def params(cfg):
    return random_params(cfg, seed=2, zero_block_davg=True)  # see model_helpers.random_params


# A (type O, atom 0) at the origin, four atoms behind it (x < 0), B (type H) on the ray d * U.
# Every distance from B to the others exceeds |r_AB| = d.
CLUSTER = np.array(
    [[0.0, 0.0, 0.0], [-1.0, 0.3, 0.2], [-0.6, -1.2, 0.4], [-1.5, 0.9, -1.1], [-0.3, 0.4, -1.5]]
)
CLUSTER_TYPES = np.array([3, 1, 0, 2, 1, 1])  # O H C N H, and B = H
U = np.array([1.0, 0.2, 0.1]) / np.linalg.norm([1.0, 0.2, 0.1])


def scan(params, cfg, distances):
    """Energies [n] and forces [n, 6, 3] with B at each distance."""
    energies, forces = [], []
    per_batch = PAD[2] - 1
    for start in range(0, len(distances), per_batch):
        graphs = [
            frame_to_graph(
                np.vstack([CLUSTER, d * U]), CLUSTER_TYPES, None, cfg.descriptor.rcut,
                cfg.descriptor.sel,
            )
            for d in distances[start : start + per_batch]
        ]  # fmt: skip
        out = run_model(params, cfg, pad_graph(batch_graphs(graphs), *PAD))
        n = len(graphs)
        energies.append(np.asarray(out["energy"])[:n])
        forces.append(np.asarray(out["forces"])[: 6 * n].reshape(n, 6, 3))
    return np.concatenate(energies), np.concatenate(forces)


def test_cluster_geometry():
    for d in (1.0, 3.0, 4.0, 5.0):
        assert np.all(np.linalg.norm(CLUSTER[1:] - d * U, axis=1) > d)  # B is closest to A


CUTOFFS = {"repinit": 4.0, "repformer_and_three_body": 3.0}


@pytest.mark.parametrize("block", CUTOFFS)
def test_cutoffs_of_the_tiny_config(cfg, block):
    ri, rf = cfg.descriptor.repinit, cfg.descriptor.repformer
    actual = {"repinit": [ri.rcut], "repformer_and_three_body": [rf.rcut, ri.three_body_rcut]}
    assert set(actual[block]) == {CUTOFFS[block]}


STEP = 2e-3  # Angstrom


@pytest.fixture(scope="module", params=list(CUTOFFS))
def crossing(request, params, cfg):
    """(block, distances, energies, forces) with B moving from rcut - 0.2 A to rcut + 0.05 A."""
    rcut = CUTOFFS[request.param]
    distances = rcut + STEP * np.arange(-100, 26)
    return (request.param, distances, *scan(params, cfg, distances))


def test_energy_is_the_integral_of_the_force_across_cutoff(crossing):
    """E(d + h) - E(d) = h (E'(d) + E'(d + h)) / 2 + O(h^3), with E' = -F_B . U: an energy jump
    anywhere on the path, or forces inconsistent with the energy, break it."""
    block, _, energies, forces = crossing
    slope = -forces[:, 5] @ U  # dE/dd
    assert np.abs(slope).max() > 1e-6, f"B does not interact before the {block} cutoff"
    trapezoid = np.diff(energies) - STEP * (slope[1:] + slope[:-1]) / 2
    assert np.abs(trapezoid).max() < 1e-3 * STEP * np.abs(slope).max() + 1e-11


def test_forces_change_without_spikes_across_cutoff(crossing):
    """Consecutive force changes are alike: a jump would be one change much larger than both
    of its neighbors."""
    _, distances, _, forces = crossing
    change = np.linalg.norm(np.diff(forces, axis=0).reshape(len(distances) - 1, -1), axis=1)
    neighbors = np.maximum(change[:-2], change[2:])
    assert np.all(change[1:-1] <= 1.5 * neighbors + 1e-10)


@pytest.mark.parametrize("block", CUTOFFS)
def test_no_jump_at_cutoff(params, cfg, block):
    """Just inside and just outside the cutoff: energy and forces agree to within their slope."""
    rcut = CUTOFFS[block]
    delta = 1e-9
    energies, forces = scan(params, cfg, np.array([rcut - delta, rcut, rcut + delta]))
    np.testing.assert_allclose(energies, energies[1], rtol=0, atol=1e-11)
    np.testing.assert_allclose(forces, np.broadcast_to(forces[1], forces.shape), rtol=0, atol=1e-9)


def test_no_interaction_beyond_all_cutoffs(params, cfg):
    """Beyond 4 A from A (and farther from the rest), B is isolated: energy constant, F_B = 0."""
    energies, forces = scan(params, cfg, 4.0 + np.array([0.0, 1e-6, 1e-3, 0.1, 1.0]))
    np.testing.assert_allclose(energies, energies[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(forces, np.broadcast_to(forces[0], forces.shape), rtol=0, atol=1e-12)
    np.testing.assert_allclose(forces[:, 5], 0.0, atol=1e-14)


def test_energy_steps_scale_like_the_step(params, cfg):
    """Across the repformer cutoff, halving the step halves the largest energy step."""
    rcut = CUTOFFS["repformer_and_three_body"]
    coarse, _ = scan(params, cfg, rcut + 4e-4 * np.arange(-5, 6))
    fine, _ = scan(params, cfg, rcut + 2e-4 * np.arange(-10, 11))
    ratio = np.abs(np.diff(coarse)).max() / np.abs(np.diff(fine)).max()
    assert 1.8 < ratio < 2.2
