"""Bad input to dpa2_jax/model/potential.py (``Potential.evaluate``, ``load``) raises clear errors.

Every check here runs before anything is compiled, so these tests are fast.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpa2_jax
from dpa2_jax.errors import CheckpointError, ConfigError, DataError
from dpa2_jax.graph import frame_to_graph
from dpa2_jax.io.dp_format import write_dp
from dpa2_jax.model.config import ModelConfig
from dpa2_jax.model.energy import init
from dpa2_jax.model.potential import Potential

CELL = np.eye(3) * 6.0


def placeholder_params(cfg):
    """Parameters of init()'s structure (the values do not matter: nothing is evaluated)."""
    shapes = init(jax.random.key(0), cfg)
    return jax.tree.map(lambda leaf: jnp.ones(leaf.shape, leaf.dtype), shapes)


@pytest.fixture(scope="session")
def pot(cfg):
    return Potential(cfg, placeholder_params(cfg))


@pytest.fixture(scope="session")
def two_head_pot(cfg):
    ((_, fit),) = cfg.heads
    two = ModelConfig(
        type_map=cfg.type_map, descriptor=cfg.descriptor, heads=(("a", fit), ("b", fit))
    )
    params = placeholder_params(two)
    assert set(params["heads"]) == {"a", "b"}
    return Potential(two, params)


@pytest.fixture
def frame():
    """Four atoms: coords [2 frames, 4, 3], types [4]."""
    rng = np.random.default_rng(0)
    return rng.uniform(0.0, 6.0, (2, 4, 3)), np.array([0, 1, 2, 3])


# -- Potential.evaluate -------------------------------------------------------------------------


def test_wrong_coord_shape(pot, frame):
    coords, types = frame
    with pytest.raises(
        DataError, match=r"coord: expected shape \(nframes, 4, 3\) for 4 atoms, got \(2, 4, 2\)"
    ):
        pot.evaluate(coords[..., :2], CELL, types)
    with pytest.raises(DataError, match=r"coord: expected shape .* got \(24,\)"):
        pot.evaluate(coords.reshape(-1), CELL, types)


def test_zero_frames_say_so(pot, frame):
    _, types = frame
    with pytest.raises(DataError, match="coord: got 0 frames; pass at least one frame"):
        pot.evaluate(np.zeros((0, 4, 3)), CELL, types)


EMPTY = "the structure has no atoms; a frame needs at least one atom"


@pytest.mark.parametrize("types", [[], np.array([], int), np.array([], str)])
def test_empty_structure_one_message_from_every_entry_point(pot, types):
    """Potential.evaluate (indices or symbols), the graph builder and the ASE calculator all
    report an empty structure with the same check and message (not a dtype complaint)."""
    with pytest.raises(DataError, match=EMPTY):
        pot.evaluate(np.zeros((1, 0, 3)), CELL, types)
    with pytest.raises(DataError, match=EMPTY):
        frame_to_graph(np.zeros((0, 3)), np.array([], int), None, 4.0, 10)


def test_empty_atoms_in_the_ase_calculator(pot):
    ase = pytest.importorskip("ase")
    from dpa2_jax import DPA2Calculator

    atoms = ase.Atoms()
    atoms.calc = DPA2Calculator(pot)
    with pytest.raises(DataError, match=EMPTY):
        atoms.get_potential_energy()


def test_natoms_mismatch(pot, frame):
    coords, types = frame
    with pytest.raises(DataError, match=r"for 3 atoms, got \(2, 4, 3\)"):
        pot.evaluate(coords, CELL, types[:3])


@pytest.mark.parametrize("bad", [[0, 1, 4, 3], [0, -1, 2, 3]])
def test_types_out_of_range(pot, frame, bad):
    coords, _ = frame
    wrong = [t for t in bad if not 0 <= t < 4]
    message = re.escape(f"atom_types: type(s) {wrong} out of range") + r".*\(valid 0\.\.3\)"
    with pytest.raises(DataError, match=message):
        pot.evaluate(coords, CELL, bad)


def test_types_not_integers(pot, frame):
    coords, _ = frame
    with pytest.raises(
        DataError, match="atom_types: expected a 1-D list of integers or element symbols"
    ):
        pot.evaluate(coords, CELL, [0.0, 1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="atom_types: expected a 1-D list"):
        pot.evaluate(coords, CELL, np.zeros((2, 2), int))


def test_unknown_element_symbol(pot, frame):
    coords, _ = frame
    with pytest.raises(
        DataError,
        match=r"element\(s\) \['S'\] are not in the model's type map \['C', 'H', 'N', 'O'\]",
    ):
        pot.evaluate(coords, CELL, ["C", "S", "O", "H"])


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_coordinates_name_the_frame(pot, frame, value):
    coords, types = frame
    coords = coords.copy()
    coords[1, 2, 0] = value
    with pytest.raises(DataError, match="coord: NaN or inf in frame 1"):
        pot.evaluate(coords, CELL, types)


@pytest.mark.parametrize("cell", [np.eye(2), np.zeros((3, 3, 3)), np.zeros((2, 3, 2)), np.ones(8)])
def test_cell_with_wrong_shape(pot, frame, cell):
    coords, types = frame
    with pytest.raises(DataError, match=r"cell: expected shape \(2, 3, 3\), \(3, 3\) or None"):
        pot.evaluate(coords, cell, types)


def test_singular_cell(pot, frame):
    coords, types = frame
    cells = np.stack([CELL, np.array([[6.0, 0, 0], [0, 6.0, 0], [3.0, 3.0, 0]])])
    with pytest.raises(DataError, match=r"cell: cell of frame 1 is singular or has zero volume"):
        pot.evaluate(coords, cells, types)


def test_non_finite_cell(pot, frame):
    coords, types = frame
    with pytest.raises(DataError, match="cell: NaN or inf"):
        pot.evaluate(coords, np.full((3, 3), np.nan), types)


def test_coincident_atoms(pot, frame):
    coords, types = frame
    coords = coords.copy()
    coords[0, 3] = coords[0, 1] + CELL[2]  # an image of atom 1
    with pytest.raises(DataError, match=r"atoms 1 and 3 .* coincide|atoms 3 and 1 .* coincide"):
        pot.evaluate(coords, CELL, types)


def test_unknown_head(pot, two_head_pot, frame):
    coords, types = frame
    with pytest.raises(ConfigError, match=r"unknown head 'energy'; this model has \['default'\]"):
        pot.evaluate(coords, CELL, types, head="energy")
    with pytest.raises(ConfigError, match=r"unknown head 'c'; this model has \['a', 'b'\]"):
        two_head_pot.evaluate(coords, CELL, types, head="c")


def test_multi_head_model_needs_a_head(two_head_pot, frame):
    coords, types = frame
    assert two_head_pot.heads == ("a", "b")
    with pytest.raises(ConfigError, match=r"several heads \['a', 'b'\]: choose one with head="):
        two_head_pot.evaluate(coords, CELL, types)


# -- load ---------------------------------------------------------------------------------------


def test_load_missing_file(tmp_path):
    path = tmp_path / "missing.dp"
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + r": no such model file"):
        dpa2_jax.load(path)


def test_load_missing_directory(tmp_path):
    path = tmp_path / "no_such_model"
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + r": no such model file"):
        dpa2_jax.load(path)


def test_load_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "x.dp"
    path.write_text("not a model\n")
    with pytest.raises(
        CheckpointError, match=re.escape(str(path)) + r": not a readable .dp \(HDF5\) model file"
    ):
        dpa2_jax.load(path)


def test_load_hdf5_without_model_json(tmp_path):
    import h5py

    path = tmp_path / "empty.dp"
    with h5py.File(path, "w") as f:
        f.create_dataset("variable_0000", data=np.zeros(3))
    with pytest.raises(CheckpointError, match="without the 'json' attribute"):
        dpa2_jax.load(path)


def test_load_model_with_another_descriptor(tmp_path):
    path = tmp_path / "se_e3.dp"
    model = {
        "@class": "Model",
        "type": "standard",
        "@version": 2,
        "type_map": ["O", "H"],
        "descriptor": {"type": "se_e3", "@version": 2, "rcut": 6.0, "sel": [46, 92]},
        "fitting": {"type": "ener", "@version": 2, "neuron": [240, 240, 240]},
        "@variables": {"out_bias": np.zeros((1, 2, 1)), "out_std": np.ones((1, 2, 1))},
    }
    write_dp(path, {"model": model, "backend": "test"})
    with pytest.raises(
        ConfigError,
        match=re.escape(str(path))
        + r": descriptor type 'se_e3' is not supported \(available: \['dpa2', 'se_a', 'se_e2_a'\]\)",
    ):
        dpa2_jax.load(path)


def test_load_model_of_another_class(tmp_path):
    path = tmp_path / "dipole.dp"
    write_dp(path, {"model": {"@class": "Model", "type": "dipole", "@version": 2}})
    with pytest.raises(
        ConfigError,
        match=re.escape(str(path)) + r": model @class='Model' type='dipole' is not supported",
    ):
        dpa2_jax.load(path)


def test_load_file_without_model_entry(tmp_path):
    path = tmp_path / "nomodel.dp"
    write_dp(path, {"backend": "test"})
    with pytest.raises(
        ConfigError, match=re.escape(str(path)) + r": the .dp file has no 'model' entry"
    ):
        dpa2_jax.load(path)
