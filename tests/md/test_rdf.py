"""md/rdf.py: radial distribution functions against cases with known answers (the ideal gas, a
simple cubic lattice, a skewed cell against a brute-force search over images) and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dpa2_jax.errors import DataError
from dpa2_jax.md import rdf


def test_ideal_gas_gives_one():
    """Uniform random atoms: g = 1 within counting noise at every r, for like and unlike pairs."""
    rng = np.random.default_rng(0)
    n_frame, n_atom, side = 20, 300, 15.0
    coords = rng.uniform(0, side, size=(n_frame, n_atom, 3))
    cells = np.broadcast_to(np.eye(3) * side, (n_frame, 3, 3))
    symbols = ["O"] * 100 + ["H"] * 200
    edges = rdf.bin_edges(7.0, 0.25)
    for pair in (("O", "O"), ("O", "H"), ("H", "O")):
        g = rdf.radial_distribution(coords, cells, symbols, pair, edges)
        outer = edges[1:] > 2.0  # shells with enough pairs for a tight count
        n = {"O": 100, "H": 200}
        pairs = n[pair[0]] * (n[pair[1]] - (pair[0] == pair[1]))  # ordered pairs per frame
        counts = pairs * n_frame / side**3 * 4 / 3 * np.pi * np.diff(edges**3)
        noise = 1.0 / np.sqrt(counts[outer])  # Poisson relative error per shell
        assert np.all(np.abs(g[outer] - 1.0) < 5 * noise), pair
        assert abs(np.mean(g[outer]) - 1.0) < 0.02, pair


def test_simple_cubic_lattice_peaks_and_coordination():
    """A simple cubic lattice of spacing a: peaks only at a sqrt(i^2 + j^2 + k^2), with 6, 12,
    8 and 6 neighbors in the first four shells (integrated g), zero between shells."""
    a, n = 2.02, 6  # shells away from the 0.05 A bin edges
    grid = np.array(list(itertools.product(range(n), repeat=3)), float) * a  # 216 atoms
    cell = np.eye(3) * n * a
    coords = grid[None] + 0.3  # anywhere in the cell
    edges = rdf.bin_edges(rdf.largest_radius(cell[None]), 0.05)
    g = rdf.radial_distribution(coords, cell[None], ["X"] * len(grid), ("X", "X"), edges)
    density = (len(grid) - 1) / np.linalg.det(cell)
    coordination = rdf.coordination_numbers(edges, g, density)
    for r, shell_total in ((a, 6), (a * np.sqrt(2), 18), (a * np.sqrt(3), 26), (2 * a, 32)):
        k = np.searchsorted(edges, r, side="right") - 1  # the bin holding r
        assert g[k] > 3  # far above the mean of 1
        assert coordination[k] == pytest.approx(shell_total, abs=1e-9)
        assert coordination[k - 1] == pytest.approx(shell_total - {6: 6, 18: 12, 26: 8, 32: 6}[
            shell_total], abs=1e-9)  # fmt: skip
    m = {i * i + j * j + k * k for i, j, k in itertools.product(range(4), repeat=3)} - {0}
    shells = a * np.sqrt(sorted(m))
    holding = np.searchsorted(edges, shells, side="right") - 1
    empty = np.setdiff1d(np.arange(len(g)), holding)
    np.testing.assert_array_equal(g[empty], 0.0)
    assert (g[holding[holding < len(g)]] > 0).all()


def test_skewed_cell_matches_a_search_over_images():
    """In a triclinic cell, minimum-image counts below half the shortest height equal a
    brute-force count over the 27 nearest images."""
    rng = np.random.default_rng(1)
    cell = np.array([[9.0, 0.0, 0.0], [3.5, 8.5, 0.0], [-2.0, 2.5, 9.5]])
    x = rng.uniform(size=(40, 3)) @ cell
    symbols = ["O"] * 15 + ["H"] * 25
    r_max = rdf.largest_radius(cell[None])
    edges = rdf.bin_edges(r_max, 0.2)
    g = rdf.radial_distribution(x[None], cell[None], symbols, ("O", "H"), edges)
    images = np.array(list(itertools.product((-1, 0, 1), repeat=3))) @ cell  # [27, 3]
    d = x[15:][None, :, None, :] + images[None, None] - x[:15][:, None, None, :]
    r = np.linalg.norm(d, axis=-1).ravel()
    counts = np.histogram(r[r < edges[-1]], bins=edges)[0]
    ideal = 15 * 25 / np.linalg.det(cell) * 4 / 3 * np.pi * np.diff(edges**3)
    np.testing.assert_allclose(g, counts / ideal, rtol=1e-12)
    assert counts.sum() > 0


def test_largest_difference_in_range():
    edges = np.arange(0, 7.01, 0.5)  # centers 0.25, 0.75, ..., 6.75
    g_ref = np.ones(14)
    g = g_ref.copy()
    g[1] = 5.0  # at 0.75 A: outside [2, 6]
    g[8] = 1.3  # at 4.25 A
    g[12] = 0.8  # at 6.25 A: outside
    assert rdf.largest_difference(edges, g, g_ref, (2.0, 6.0)) == pytest.approx((0.3, 4.25))
    with pytest.raises(DataError, match="holds no bin"):
        rdf.largest_difference(edges, g, g_ref, (8.0, 9.0))


def test_bad_input_is_named():
    cell = np.eye(3)[None] * 10.0
    x = np.zeros((1, 3, 3))
    with pytest.raises(DataError, match="exceeds half the shortest cell height"):
        rdf.radial_distribution(x, cell, ["O", "H", "H"], ("O", "H"), rdf.bin_edges(6.0, 0.1))
    with pytest.raises(DataError, match="pair O-O: the frames hold 1 O and 1 O"):
        rdf.radial_distribution(x, cell, ["O", "H", "H"], ("O", "O"), rdf.bin_edges(4.0, 0.1))
    with pytest.raises(DataError, match="do not match"):
        rdf.radial_distribution(x, cell, ["O", "H"], ("O", "H"), rdf.bin_edges(4.0, 0.1))
    with pytest.raises(DataError, match="bin_width"):
        rdf.bin_edges(1.0, 0.0)
