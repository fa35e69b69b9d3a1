"""descriptor/se_e2_a: per-type slot groups as DeePMD builds them, statistics as DeePMD computes
them, and `dpa2-jax train input.json` / `export` on an se_a model (parity of the numbers:
tests/io/test_se_e2_a_parity.py)."""

import copy
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpa2_jax
from dpa2_jax.cli.main import main
from dpa2_jax.data import read_npy_system
from dpa2_jax.model.statistics import compute_statistics
from dpa2_jax.descriptor.env_mat import Neighborhood
from dpa2_jax.descriptor.se_e2_a.descriptor import group_by_type
from dpa2_jax.io.deepmd_config import model_config
from tests.conftest import SYSTEMS

WATER = [SYSTEMS / "water" / "data_0", SYSTEMS / "water" / "data_1"]
SECTION = {
    "type_map": ["O", "H"],
    "descriptor": {"type": "se_a", "sel": [12, 24], "rcut": 4.0, "rcut_smth": 0.5,
                   "neuron": [4, 8], "axis_neuron": 4, "type_one_side": True},
    "fitting_net": {"neuron": [16, 16], "resnet_dt": True},
}  # fmt: skip


def test_group_by_type_matches_deepmd_nlist_distinguish_types(enable_x64):
    """Random distance-ordered lists (empty tails, more neighbors of a type than its sel)."""
    from deepmd.dpmodel.utils.nlist import nlist_distinguish_types

    rng = np.random.default_rng(0)
    n_atom, nsel, type_sel = 40, 9, (2, 4, 3)
    species = rng.integers(0, 3, n_atom)
    index = np.stack([rng.permutation(n_atom)[:nsel] for _ in range(n_atom)])
    filled = rng.integers(3, nsel + 1, n_atom)
    mask = np.arange(nsel)[None] < filled[:, None]
    nlist = np.where(mask, index, -1)
    theirs = nlist_distinguish_types(nlist[None], species[None], list(type_sel))[0]
    diff = rng.standard_normal((n_atom, nsel, 3))
    nb = Neighborhood(jnp.asarray(np.where(mask, index, 0)), jnp.asarray(mask),
                      jnp.asarray(np.where(mask[..., None], diff, 0.0)), jnp.zeros(n_atom, int))  # fmt: skip
    grouped = jax.jit(group_by_type, static_argnums=2)(nb, jnp.asarray(species), type_sel)
    ours = np.where(grouped.mask, grouped.index, -1)
    np.testing.assert_array_equal(ours, theirs)
    assert (theirs[:, :2] >= 0).sum() < (np.asarray(nlist) >= 0).sum()  # some were dropped
    # r_ij travels with its neighbor
    src = {(i, j): diff[i, s] for i in range(n_atom) for s, j in enumerate(nlist[i]) if j >= 0}
    for i, j in zip(*np.nonzero(ours >= 0)):
        np.testing.assert_array_equal(grouped.diff[i, j], src[(i, ours[i, j])])


def test_statistics_match_deepmd(enable_x64):
    """davg/dstd of the se_e2_a block and the energy bias, against DeePMD's
    ``compute_or_load_stat`` on the same frames (sel 12 O cuts some O lists: the dropped neighbors count as empty slots)."""
    from deepmd.dpmodel.model.model import get_model

    section = copy.deepcopy(SECTION)
    section["descriptor"]["exclude_types"] = [[0, 1]]
    systems = [read_npy_system(p, type_map=["O", "H"]).select_frames(slice(0, 2)) for p in WATER]
    ours = compute_statistics(model_config(section), systems, max_frames=2)
    model = get_model(copy.deepcopy(section))
    sampled = [
        {"coord": s.coords.reshape(2, -1), "atype": np.tile(s.atom_types, (2, 1)),
         "box": s.cells.reshape(2, 9), "energy": s.energies.reshape(2, 1),
         "natoms": np.tile(np.r_[s.natoms, s.natoms, np.bincount(s.atom_types)], (2, 1)),
         "find_energy": np.float32(1.0)}
        for s in systems
    ]  # fmt: skip
    model.compute_or_load_stat(lambda: sampled)
    desc = model.atomic_model.descriptor
    for key, theirs in (("davg", desc.davg), ("dstd", desc.dstd)):
        np.testing.assert_allclose(ours["descriptor"]["block"][key], theirs, rtol=1e-10, atol=1e-12)
    assert np.abs(ours["descriptor"]["block"]["davg"]).max() > 1e-3
    np.testing.assert_allclose(
        ours["out_bias"], np.asarray(model.atomic_model.out_bias).ravel(), rtol=1e-10
    )


def test_train_input_json_then_deepmd_reads_the_export(tmp_path):
    """`dpa2-jax train input.json` (DeePMD's own file, type se_a) runs and `dpa2-jax export`
    writes a .dp that DeePMD-kit evaluates to our energy."""
    pytest.importorskip("deepmd")
    data = {
        "model": SECTION,
        "learning_rate": {"type": "exp", "decay_steps": 5, "start_lr": 0.005, "stop_lr": 1e-4},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
                 "limit_pref_f": 1},
        "training": {
            "training_data": {"systems": [str(p) for p in WATER], "batch_size": 1},
            "numb_steps": 4, "seed": 1, "disp_freq": 2, "save_freq": 4,
        },
    }  # fmt: skip
    (tmp_path / "input.json").write_text(json.dumps(data))
    workdir = tmp_path / "run"
    assert main(["train", str(tmp_path / "input.json"), "--workdir", str(workdir)]) == 0
    assert main(["export", str(workdir), str(tmp_path / "model.dp")]) == 0

    from deepmd.dpmodel.model.base_model import BaseModel
    from deepmd.dpmodel.utils.serialization import load_dp_model

    pot = dpa2_jax.load(tmp_path / "model.dp")
    assert np.abs(np.asarray(pot.params["descriptor"]["block"]["davg"])).max() > 1e-3
    s = read_npy_system(SYSTEMS / "water" / "data_3", type_map=["O", "H"])
    ours = pot.evaluate(s.coords[:1], s.cells[:1], s.atom_types)
    model = BaseModel.deserialize(load_dp_model(str(tmp_path / "model.dp"))["model"])
    theirs = model.call(
        s.coords[:1].reshape(1, -1), s.atom_types[None], box=s.cells[:1].reshape(1, 9)
    )
    np.testing.assert_allclose(ours["energy"], np.ravel(theirs["energy"]), rtol=1e-10)
