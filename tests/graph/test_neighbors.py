"""Tests of dpa2_jax/graph/neighbors.py against a brute-force search over periodic images."""

import itertools
import pathlib
import warnings

import numpy as np
import pytest

from dpa2_jax.errors import ConfigError, DataError
from dpa2_jax.graph import neighbors as neighbors_module
from dpa2_jax.graph.neighbors import neighbor_list

WATER = pathlib.Path(__file__).parents[1] / "systems" / "water" / "data_0"


def brute_force_neighbor_list(positions, cell, rcut):
    """All (center, neighbor, shift, distance) with 0 < |r_ij| <= rcut, by trying every image.

    Images are enumerated over a box of shifts wide enough for the cutoff (face distances of the
    cell) and for positions spread outside the cell (their fractional span).
    """
    positions = np.asarray(positions, dtype=np.float64)
    if cell is None:
        shifts = np.zeros((1, 3), dtype=int)
        shift_vectors = np.zeros((1, 3))
    else:
        inverse = np.linalg.inv(cell)
        face_distance = 1.0 / np.linalg.norm(inverse, axis=0)
        fractional = positions @ inverse
        span = fractional.max(axis=0) - fractional.min(axis=0)
        reach = np.ceil(rcut / face_distance + span).astype(int) + 1
        shifts = np.array(list(itertools.product(*[range(-k, k + 1) for k in reach])))
        shift_vectors = shifts @ cell
    vectors = (
        positions[None, :, None, :] - positions[:, None, None, :] + shift_vectors[None, None]
    )  # [center, neighbor, shift, 3]
    distances = np.linalg.norm(vectors, axis=-1)
    centers, neighbors, images = np.nonzero(distances <= rcut)
    not_self = (centers != neighbors) | np.any(shifts[images] != 0, axis=1)
    centers, neighbors, images = centers[not_self], neighbors[not_self], images[not_self]
    return centers, neighbors, shifts[images], distances[centers, neighbors, images]


def as_dict(centers, neighbors, shifts, distances):
    return {
        (int(c), int(n), tuple(int(s) for s in shift)): float(d)
        for c, n, shift, d in zip(centers, neighbors, shifts, distances)
    }


def assert_matches_brute_force(positions, cell, rcut):
    nlist = neighbor_list(positions, cell, rcut, sel=100_000)
    got = as_dict(nlist.centers, nlist.neighbors, nlist.shifts, nlist.distances)
    want = as_dict(*brute_force_neighbor_list(positions, cell, rcut))
    assert got.keys() == want.keys()
    keys = list(want)
    np.testing.assert_allclose([got[k] for k in keys], [want[k] for k in keys], rtol=1e-12)
    return nlist


def random_cell(rng, length, triclinic):
    cell = np.diag(rng.uniform(0.7, 1.3, 3) * length)
    if triclinic:
        cell += rng.uniform(-0.5, 0.5, (3, 3)) * length * (1 - np.eye(3))
    return cell


@pytest.mark.parametrize("seed", range(12))
def test_random_triclinic_cells_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    cell = random_cell(rng, rng.uniform(4.0, 9.0), triclinic=True)
    # positions partly outside the cell: shifts must refer to the positions as given
    positions = rng.uniform(-0.5, 1.5, (int(rng.integers(2, 15)), 3)) @ cell
    assert_matches_brute_force(positions, cell, rcut=rng.uniform(2.0, 6.0))


@pytest.mark.parametrize("seed", range(6))
def test_orthogonal_cells_match_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    cell = random_cell(rng, rng.uniform(4.0, 9.0), triclinic=False)
    positions = rng.uniform(0.0, 1.0, (int(rng.integers(2, 15)), 3)) @ cell
    assert_matches_brute_force(positions, cell, rcut=rng.uniform(2.0, 6.0))


@pytest.mark.parametrize("seed", range(8))
def test_tiny_cells_have_many_images(seed):
    rng = np.random.default_rng(200 + seed)
    cell = random_cell(rng, rng.uniform(2.0, 3.0), triclinic=seed % 2 == 1)
    positions = rng.uniform(0.0, 1.0, (int(rng.integers(1, 4)), 3)) @ cell
    nlist = assert_matches_brute_force(positions, cell, rcut=6.0)
    # every atom sees dozens of images of itself and of the others
    assert nlist.max_neighbors > 50
    self_images = nlist.centers == nlist.neighbors
    assert np.any(self_images) and np.all(np.any(nlist.shifts[self_images] != 0, axis=1))


def test_non_periodic_matches_brute_force():
    rng = np.random.default_rng(7)
    positions = rng.uniform(-5.0, 5.0, (40, 3))
    nlist = assert_matches_brute_force(positions, None, rcut=4.0)
    assert np.all(nlist.shifts == 0)


def test_sorted_by_center_then_distance_with_consecutive_slots():
    rng = np.random.default_rng(3)
    cell = random_cell(rng, 6.0, triclinic=True)
    positions = rng.uniform(0.0, 1.0, (20, 3)) @ cell
    nlist = neighbor_list(positions, cell, rcut=5.0, sel=1000)
    assert nlist.centers.dtype == nlist.neighbors.dtype == nlist.slot.dtype == np.int32
    assert nlist.shifts.dtype == np.int32 and nlist.distances.dtype == np.float64
    assert np.all(np.diff(nlist.centers) >= 0)
    same_center = nlist.centers[1:] == nlist.centers[:-1]
    assert np.all(np.diff(nlist.distances)[same_center] >= 0)
    counts = np.bincount(nlist.centers, minlength=20)
    expected_slot = np.concatenate([np.arange(c) for c in counts])
    np.testing.assert_array_equal(nlist.slot, expected_slot)


def test_distance_exactly_rcut_is_kept_and_ties_are_ordered():
    # simple cubic lattice, one atom, spacing 2 A, rcut 4 A: 6 + 12 + 8 + 6 neighbors with
    # |shift|^2 = 1, 2, 3, 4; the last shell lies exactly at rcut
    nlist = neighbor_list(np.zeros((1, 3)), 2.0 * np.eye(3), rcut=4.0, sel=1000)
    assert nlist.n_edge == 32 and nlist.max_neighbors == 32
    assert np.sum(nlist.distances == 4.0) == 6
    # exact ties are ordered by shift, lexicographically
    for d in np.unique(nlist.distances):
        shell = [tuple(s) for s in nlist.shifts[nlist.distances == d]]
        assert shell == sorted(shell)


def test_sort_order_is_exact_for_near_and_exact_ties():
    """The fast sort equals a full lexsort, even where center * 2 rcut + d rounds to one key."""
    rng = np.random.default_rng(2)
    n = 20_000
    centers = (10**6 + np.arange(n) // (27 * 40)).astype(np.int32)
    distances = rng.choice([1.0, 1.0 + 1e-12, 1.0 + 3e-12, 2.5], n) + rng.choice([0, 1e-3], n)
    # (neighbor, shift) unique, as in a real list, with many equal neighbors and shifts
    all_shifts = np.array(list(itertools.product(range(-1, 2), repeat=3)), dtype=np.int32)
    neighbors = (np.arange(n) // 27 % 40).astype(np.int32)
    shifts = all_shifts[np.arange(n) % 27]
    perm = rng.permutation(n)
    args = centers[perm], distances[perm], neighbors[perm], shifts[perm]
    order = neighbors_module._sort_order(*args, rcut=6.0)
    c, d, j, s = args
    np.testing.assert_array_equal(order, np.lexsort((s[:, 2], s[:, 1], s[:, 0], j, d, c)))


def test_truncation_keeps_the_nearest_and_warns_once(monkeypatch):
    monkeypatch.setattr(neighbors_module, "_sel_warning_issued", False)
    rng = np.random.default_rng(11)
    cell = random_cell(rng, 7.0, triclinic=True)
    positions = rng.uniform(0.0, 1.0, (30, 3)) @ cell
    full = neighbor_list(positions, cell, rcut=5.0, sel=10_000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cut = neighbor_list(positions, cell, rcut=5.0, sel=20)
        neighbor_list(positions, cell, rcut=5.0, sel=20)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and f"max seen {full.max_neighbors}" in messages[0]
    assert cut.max_neighbors == full.max_neighbors > 20
    # the truncated list is the prefix (slot < 20) of the full sorted list
    first = full.slot < 20
    np.testing.assert_array_equal(cut.centers, full.centers[first])
    np.testing.assert_array_equal(cut.neighbors, full.neighbors[first])
    np.testing.assert_array_equal(cut.shifts, full.shifts[first])
    np.testing.assert_array_equal(cut.distances, full.distances[first])
    for c in range(30):
        kept = cut.distances[cut.centers == c]
        dropped = full.distances[~first & (full.centers == c)]
        assert len(kept) == 20
        assert dropped.size == 0 or kept.max() <= dropped.min()


def load_water_frame():
    box = np.load(WATER / "set.000" / "box.npy")[0].reshape(3, 3)
    coords = np.load(WATER / "set.000" / "coord.npy")[0].reshape(-1, 3)
    types = np.loadtxt(WATER / "type.raw", dtype=int)
    return coords, box, types


def test_water_frame_neighbor_counts():
    coords, box, _ = load_water_frame()
    nlist = neighbor_list(coords, box, rcut=6.0, sel=120)
    counts = np.bincount(nlist.centers, minlength=len(coords))
    assert 85 < counts.mean() < 93  # 88.9 in this frame, BENCHMARKS.md quotes about 89
    assert nlist.max_neighbors <= 120
    assert np.all(nlist.distances <= 6.0)


def test_small_cutoff_is_slot_and_distance_subset_of_large():
    """(rcut 4, sel 48) equals the edges of (rcut 6, sel 120) with slot < 48 and d <= 4."""
    coords, box, _ = load_water_frame()
    large = neighbor_list(coords, box, rcut=6.0, sel=120)
    small = neighbor_list(coords, box, rcut=4.0, sel=48)
    subset = (large.slot < 48) & (large.distances <= 4.0)
    np.testing.assert_array_equal(small.centers, large.centers[subset])
    np.testing.assert_array_equal(small.neighbors, large.neighbors[subset])
    np.testing.assert_array_equal(small.shifts, large.shifts[subset])
    np.testing.assert_array_equal(small.slot, large.slot[subset])
    assert 20 < len(small.centers) / len(coords) < 32  # about 26 within 4 A


def deepmd_neighbor_lists(positions, cell, rcut, sel):
    """Per center: DeePMD-kit's (neighbor atom index, distance) in its slot order."""
    nlist_module = pytest.importorskip("deepmd.dpmodel.utils.nlist")
    positions, cell, n = positions.astype(np.float64), cell.astype(np.float64), len(positions)
    extended, _, mapping, nlist = nlist_module.extend_input_and_build_neighbor_list(
        positions.reshape(1, -1),
        np.zeros((1, n), dtype=int),
        rcut,
        [sel],
        mixed_types=True,
        box=cell.reshape(1, 9),
    )
    extended, mapping, nlist = extended[0], mapping[0], nlist[0]  # [n_all, 3] [n_all] [n, sel]
    lists = []
    for center in range(n):
        slots = nlist[center][nlist[center] >= 0]
        distances = np.linalg.norm(extended[slots] - extended[center], axis=1)
        lists.append((mapping[slots], distances))
    return lists


@pytest.mark.parametrize(
    "frame, rcut, sel",
    [("water", 6.0, 120), ("water", 6.0, 48), ("tiny_triclinic", 6.0, 400)],
)
def test_matches_deepmd_kit_build_neighbor_list(frame, rcut, sel, monkeypatch):
    monkeypatch.setattr(neighbors_module, "_sel_warning_issued", True)  # truncation is expected
    if frame == "water":
        positions, cell, _ = load_water_frame()
    else:
        rng = np.random.default_rng(9)
        cell = random_cell(rng, 3.0, triclinic=True)
        positions = rng.uniform(0.0, 1.0, (3, 3)) @ cell
    reference = deepmd_neighbor_lists(positions, cell, rcut, sel)
    nlist = neighbor_list(positions, cell, rcut, sel)
    for center, (want_neighbors, want_distances) in enumerate(reference):
        mine = nlist.centers == center
        np.testing.assert_allclose(nlist.distances[mine], want_distances, rtol=0, atol=1e-10)
        # equal up to the order of (near-)equal distances
        assert sorted(nlist.neighbors[mine].tolist()) == sorted(want_neighbors.tolist())


def test_permuting_atoms_permutes_the_list():
    rng = np.random.default_rng(5)
    cell = random_cell(rng, 6.0, triclinic=True)
    positions = rng.uniform(0.0, 1.0, (12, 3)) @ cell
    perm = rng.permutation(12)
    a = neighbor_list(positions, cell, rcut=5.0, sel=1000)
    b = neighbor_list(positions[perm], cell, rcut=5.0, sel=1000)
    got = as_dict(perm[b.centers], perm[b.neighbors], b.shifts, b.distances)
    assert got == as_dict(a.centers, a.neighbors, a.shifts, a.distances)


def test_empty_and_single_atom():
    assert neighbor_list(np.zeros((0, 3)), None, 6.0, 10).n_edge == 0
    assert neighbor_list(np.zeros((1, 3)), None, 6.0, 10).n_edge == 0
    # one atom in a 5 A cube: its six face images
    assert neighbor_list(np.zeros((1, 3)), 5.0 * np.eye(3), 6.0, 10).n_edge == 6


@pytest.mark.parametrize(
    "positions, cell, match",
    [
        (np.array([[0.0, 0.0, np.nan]]), None, "NaN"),
        (np.zeros((2, 2)), None, "shape"),
        (np.zeros((1, 3)), np.zeros((3, 3)), "singular"),
        (np.zeros((1, 3)), np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1.0]]), "singular"),
        (np.zeros((1, 3)), np.eye(2), "shape"),
        (np.zeros((1, 3)), np.full((3, 3), np.inf), "infinite"),
        (np.zeros((2, 3)), None, "coincide"),
    ],
)
def test_bad_input_raises_data_error(positions, cell, match):
    with pytest.raises(DataError, match=match):
        neighbor_list(positions, cell, rcut=3.0, sel=10)


@pytest.mark.parametrize("rcut, sel", [(0.0, 10), (np.nan, 10), (3.0, 0), (3.0, 2.5)])
def test_bad_cutoff_raises_config_error(rcut, sel):
    with pytest.raises(ConfigError):
        neighbor_list(np.zeros((1, 3)), None, rcut=rcut, sel=sel)
