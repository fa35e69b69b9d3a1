"""The descriptor-family contract (descriptor/family.py) is complete: a family defined here, in a
few lines of physics, trains, fine-tunes into another type map, saves and loads through the
public functions only (``register``, ``dpa2-jax train``, ``dpa2_jax.load``).

The toy family: radial Gaussians of the neighbor distance, weighted per neighbor type,

    D_ik = sum_j s(r_ij) exp(-beta_k r_ij) w[type_j, k]        [n_node, n_basis]

with DeePMD's smooth switch s(r) from 0.5 rcut to rcut.
"""

import dataclasses
import json
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import pytest

import dpa2_jax
from dpa2_jax.cli.main import main
from dpa2_jax.data import read_npy_system
from dpa2_jax.descriptor import FAMILIES, DescriptorFamily, register
from dpa2_jax.descriptor.env_mat import switch_function
from tests.conftest import SYSTEMS


@dataclasses.dataclass(frozen=True)
class RadialConfig:
    family: ClassVar[str] = "toy_radial"
    ntypes: int
    rcut: float = 4.0
    sel: int = 60
    n_basis: int = 4
    precision: str = "float64"

    @property
    def dim_out(self) -> int:
        return self.n_basis


def init(rng, cfg):
    return {
        "beta": rng.uniform(0.5, 1.5, cfg.n_basis),
        "w": rng.normal(size=(cfg.ntypes, cfg.n_basis)),
    }


def apply(params, cfg, species, nb, layout):
    r = nb.distance()  # [n_node, sel]
    s = switch_function(r, 0.5 * cfg.rcut, cfg.rcut) * nb.mask
    w = params["w"][jnp.clip(species[nb.index], 0, cfg.ntypes - 1)]  # [n_node, sel, n_basis]
    return jnp.sum(s[..., None] * jnp.exp(-params["beta"] * r[..., None]) * w, axis=1)


def change_type_map(params, old_cfg, index, rng):
    index = np.asarray(index)
    w = np.where(index[:, None] >= 0, np.asarray(params["w"])[index], 1.0)
    return {**params, "w": w}


FAMILY = DescriptorFamily("toy_radial", RadialConfig, init, apply, change_type_map=change_type_map)
WATER = SYSTEMS / "water"


def _input(path, type_map, steps):
    section = {
        "model": {
            "type_map": type_map,
            "descriptor": {"type": "toy_radial", "rcut": 4.0, "sel": 60, "n_basis": 4},
            "fitting_net": {"neuron": [8, 8]},
        },
        "learning_rate": {"type": "exp", "decay_steps": 10, "start_lr": 0.005, "stop_lr": 1e-4},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
                 "limit_pref_f": 1},
        "training": {
            "training_data": {"systems": [str(WATER / "data_0")], "batch_size": 1},
            "validation_data": {"systems": [str(WATER / "data_3")], "batch_size": 2},
            "numb_steps": steps, "seed": 1, "disp_freq": 10, "save_freq": 20,
        },
    }  # fmt: skip
    path.write_text(json.dumps(section))
    return str(path)


@pytest.fixture(scope="module")
def registered():
    """The toy family in the registry for this module's tests only."""
    register(FAMILY)
    yield
    del FAMILIES[FAMILY.name]


@pytest.fixture(scope="module")
def pretrained(registered, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toy")
    config = _input(tmp / "in.json", ["O", "H"], 20)
    assert main(["train", config, "--workdir", str(tmp / "run")]) == 0
    return tmp / "run"


def test_a_family_defined_outside_the_package_trains_and_loads(pretrained):
    rows = np.loadtxt(pretrained / "lcurve.out")
    assert rows.shape[0] >= 2 and np.all(np.isfinite(rows))
    pot = dpa2_jax.load(pretrained)
    assert pot.config.descriptor == RadialConfig(ntypes=2)
    water = read_npy_system(WATER / "data_3")
    out = pot.evaluate(water.coords[:1], water.cells[:1], water.atom_types)
    # forces are -dE/dx: check one component by central differences
    h, atom = 1e-5, 7
    shifted = [water.coords[:1].copy() for _ in range(2)]
    shifted[0][0, atom, 1] += h
    shifted[1][0, atom, 1] -= h
    e = [pot.evaluate(c, water.cells[:1], water.atom_types)["energy"][0] for c in shifted]
    np.testing.assert_allclose(out["forces"][0, atom, 1], -(e[0] - e[1]) / (2 * h), atol=1e-6)


def test_fine_tuning_into_a_reordered_type_map_keeps_the_forces(pretrained, tmp_path):
    """Zero steps from the pretrained head, with the type map reversed: ``change_type_map``
    reorders the per-type weights, so forces are unchanged (the refitted bias moves energies
    only)."""
    config = _input(tmp_path / "ft.json", ["H", "O"], 0)
    assert main(["train", config, "--workdir", str(tmp_path / "ft"), "--finetune",
                 str(pretrained), "--model-branch", "default"]) == 0  # fmt: skip
    water = read_npy_system(WATER / "data_3")
    symbols = [water.type_map[t] for t in water.atom_types]
    before = dpa2_jax.load(pretrained).evaluate(water.coords[:2], water.cells[:2], symbols)
    after = dpa2_jax.load(tmp_path / "ft").evaluate(water.coords[:2], water.cells[:2], symbols)
    assert dpa2_jax.load(tmp_path / "ft").config.type_map == ("H", "O")
    np.testing.assert_allclose(after["forces"], before["forces"], rtol=0, atol=1e-10)
