"""Radial distribution functions of periodic frames (numpy, host side).

For atoms of type a and b in frames f of volume V_f, with pair distances taken at the minimum
image, the partial radial distribution function over a shell [r_k, r_k+1) is

    g_ab(r_k) = sum_f n_f(k) / sum_f [N_a (N_b - delta_ab) / V_f * 4/3 pi (r_k+1^3 - r_k^3)]

where n_f(k) counts ordered pairs (i in a, j in b, i != j) in the shell: the ideal gas (atoms
placed uniformly and independently) gives g = 1 on average at every r, and a liquid tends to
1 at large r. ``coordination_numbers`` integrates it back: the mean number of b atoms within
r of an a atom, 4 pi rho_b int_0^r g(s) s^2 ds with rho_b = (N_b - delta_ab) / V.

Minimum image: fractional separations are wrapped to [-1/2, 1/2). That finds every pair closer
than half the cell's shortest perpendicular height h (a vector shorter than h/2 has every
fractional component below 1/2 in size, and no second image is that close), in any cell shape,
so ``r_max`` may not exceed h/2 (``largest_radius``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dpa2_jax.errors import DataError


def cell_heights(cell: np.ndarray) -> np.ndarray:
    """Perpendicular heights [3] (A) of a cell [3, 3] whose rows are the lattice vectors."""
    return 1.0 / np.linalg.norm(np.linalg.inv(np.asarray(cell, np.float64)), axis=0)


def largest_radius(cells: np.ndarray) -> float:
    """Half the shortest perpendicular height over frames' cells [n_frame, 3, 3] (A): the
    largest r at which minimum-image distances count every pair."""
    cells = np.asarray(cells, np.float64).reshape(-1, 3, 3)
    return float(min(cell_heights(c).min() for c in cells) / 2.0)


def bin_edges(r_max: float, bin_width: float) -> np.ndarray:
    """Edges [n_bin + 1] from 0 in steps of ``bin_width`` up to at most ``r_max`` (A)."""
    if bin_width <= 0 or r_max < bin_width:
        raise DataError(f"bin_width {bin_width} A, r_max {r_max} A: need 0 < bin_width <= r_max")
    n_bin = int(np.floor(r_max / bin_width + 1e-9))
    return np.arange(n_bin + 1) * bin_width


def minimum_image_distances(
    coords: np.ndarray, cell: np.ndarray, centers: np.ndarray, neighbors: np.ndarray
) -> np.ndarray:
    """Distances [n_center, n_neighbor] (A) between atoms ``centers`` and ``neighbors`` (index
    arrays into coords [N, 3] A) at the minimum image of ``cell`` [3, 3] (rows are lattice
    vectors; exact below half its shortest height). An atom's distance to itself is inf."""
    d = coords[neighbors][None, :, :] - coords[centers][:, None, :]  # [n_c, n_n, 3]
    frac = d @ np.linalg.inv(cell)
    frac -= np.round(frac)
    r = np.linalg.norm(frac @ cell, axis=-1)
    return np.where(centers[:, None] == neighbors[None, :], np.inf, r)


def radial_distribution(
    coords: np.ndarray,
    cells: np.ndarray,
    symbols: Sequence[str],
    pair: tuple[str, str],
    edges: np.ndarray,
) -> np.ndarray:
    """g_ab [n_bin] of the pair (a, b) of element symbols over frames (module docstring).

    Args:
      coords: [n_frame, N, 3] positions, A.
      cells: [n_frame, 3, 3] cells, A (rows are lattice vectors); periodic frames only.
      symbols: [N] element symbols of the atoms (the same in every frame).
      pair: (a, b) symbols, e.g. ("O", "H"): distances from each a atom to each b atom.
      edges: [n_bin + 1] shell edges from 0 (``bin_edges``), A; the last at most half the
        shortest cell height of any frame.

    Raises:
      DataError: no atom of a or b (or a single one of a when a == b), shapes that do not
        match, or edges beyond half a cell's height.
    """
    coords = np.asarray(coords, np.float64)
    cells = np.asarray(cells, np.float64)
    symbols = np.asarray(symbols)
    if coords.ndim != 3 or cells.shape != (len(coords), 3, 3) or len(symbols) != coords.shape[1]:
        raise DataError(f"radial_distribution: coords {coords.shape}, cells {cells.shape} and "
                        f"{len(symbols)} symbols do not match ([n_frame, N, 3], [n_frame, 3, 3], "
                        "[N])")  # fmt: skip
    a, b = (np.flatnonzero(symbols == s) for s in pair)
    same = pair[0] == pair[1]
    if len(a) == 0 or len(b) - same < 1:
        raise DataError(f"pair {pair[0]}-{pair[1]}: the frames hold {len(a)} {pair[0]} and "
                        f"{len(b)} {pair[1]} atoms; need a pair of them")  # fmt: skip
    edges = np.asarray(edges, np.float64)
    if edges[-1] > largest_radius(cells) + 1e-9:
        raise DataError(f"radial_distribution: r_max {edges[-1]:g} A exceeds half the shortest "
                        f"cell height ({largest_radius(cells):.4g} A); minimum-image distances "
                        "would miss pairs")  # fmt: skip
    counts = np.zeros(len(edges) - 1)
    ideal = 0.0  # sum over frames of N_a (N_b - delta_ab) / V
    for x, cell in zip(coords, cells):
        r = minimum_image_distances(x, cell, a, b)
        counts += np.histogram(r[r < edges[-1]], bins=edges)[0]
        ideal += len(a) * (len(b) - same) / abs(np.linalg.det(cell))
    shells = 4.0 / 3.0 * np.pi * np.diff(edges**3)
    return counts / (ideal * shells)


def coordination_numbers(edges: np.ndarray, g: np.ndarray, density: float) -> np.ndarray:
    """Mean number of b neighbors [n_bin] within each outer edge r_k+1 of an a atom:
    sum over shells up to k of g * density * shell volume; ``density`` = (N_b - delta_ab) / V
    in 1/A^3."""
    shells = 4.0 / 3.0 * np.pi * np.diff(np.asarray(edges, np.float64) ** 3)
    return np.cumsum(np.asarray(g) * density * shells)


def largest_in_range(
    edges: np.ndarray, values: np.ndarray, r_range: tuple[float, float]
) -> tuple[float, float]:
    """(max of ``values`` [n_bin], the bin center where it is) over bins whose centers lie in
    ``r_range`` (A, inclusive).

    Raises:
      DataError: no bin center in the range.
    """
    edges = np.asarray(edges)
    centers = 0.5 * (edges[1:] + edges[:-1])
    inside = (centers >= r_range[0]) & (centers <= r_range[1])
    if not inside.any():
        raise DataError(f"r range {list(r_range)} A holds no bin (bins up to {edges[-1]:g} A)")
    values = np.asarray(values, np.float64)[inside]
    k = int(np.argmax(values))
    return float(values[k]), float(centers[inside][k])


def largest_difference(
    edges: np.ndarray, g: np.ndarray, g_ref: np.ndarray, r_range: tuple[float, float]
) -> tuple[float, float]:
    """(max |g - g_ref|, the bin center where it is) over ``r_range`` (``largest_in_range``)."""
    return largest_in_range(edges, np.abs(np.asarray(g) - np.asarray(g_ref)), r_range)
