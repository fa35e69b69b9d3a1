"""Tests for dpa2_jax/data/type_map.py."""

import pathlib

import numpy as np
import pytest

from dpa2_jax.data import System, check_type_map, map_types, read_npy_system
from dpa2_jax.errors import DataError

SYSTEMS = pathlib.Path(__file__).parents[1] / "systems"
MODEL = ["H", "C", "N", "O"]


def symbols(system):
    return [system.type_map[t] for t in system.atom_types]


@pytest.mark.parametrize(
    "folder", ["water/data_0", "cho_molecules/C4H3O1", "chno_molecules/H8C4N2O"]
)
def test_symbols_preserved(folder):
    s = read_npy_system(SYSTEMS / folder)
    mapped = map_types(s, MODEL)
    assert mapped.type_map == tuple(MODEL)
    assert mapped.atom_types.dtype == np.int32
    assert symbols(mapped) == symbols(s)
    assert mapped.coords is s.coords  # frames shared, not copied


def test_water_into_hcno():
    s = read_npy_system(SYSTEMS / "water/data_0")  # O=0, H=1
    mapped = map_types(s, MODEL)
    expected = np.where(s.atom_types == 0, 3, 0)
    np.testing.assert_array_equal(mapped.atom_types, expected)
    np.testing.assert_array_equal(map_types(mapped, ["O", "H"]).atom_types, s.atom_types)


def test_absent_element_named():
    s = read_npy_system(SYSTEMS / "chno_molecules/H8C4N2O")
    with pytest.raises(
        DataError,
        match=r"H8C4N2O: element 'N' is not in the model type map "
        r"\['H', 'C', 'O'\]",
    ):
        map_types(s, ["H", "C", "O"])


def test_unused_element_dropped():
    s = System("mem", ("O", "H", "Pt"), np.array([0, 1, 1]), np.zeros((1, 3, 3)))
    mapped = map_types(s, ["H", "O"])
    assert symbols(mapped) == ["O", "H", "H"]


@pytest.mark.parametrize(
    "bad,match",
    [
        ([], "non-empty"),
        (["H", ""], "non-empty"),
        (["H", "O", "H"], r"\['H'\] appear more"),
        ("HO", "got the string"),
    ],
)
def test_bad_model_type_map(bad, match):
    with pytest.raises(DataError, match=match):
        check_type_map(bad)
    s = System("mem", ("H",), np.array([0]), np.zeros((1, 1, 3)))
    with pytest.raises(DataError, match=match):
        map_types(s, bad)
