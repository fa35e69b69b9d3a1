"""Parity of data/stats.py, descriptor/env_mat_stats.py and model/statistics.py with DeePMD-kit 3.2.0's own statistics (numpy dpmodel backend):
davg/dstd of every DPA-2 block (``compute_input_stats``) and the model's energy ``out_bias``
(``compute_or_load_out_stat``), computed by DeePMD's ``compute_or_load_stat`` on the same
frames."""

import copy
import warnings

import jax
import numpy as np
import pytest

from dpa2_jax.data import read_npy_system
from dpa2_jax.data.stats import energy_bias
from dpa2_jax.descriptor.env_mat_stats import environment_moments, environment_statistics
from dpa2_jax.io.deepmd_config import model_config
from dpa2_jax.model.statistics import apply_statistics, compute_statistics
from tests.conftest import SYSTEMS, load_config_module

WATER = [SYSTEMS / "water" / "data_0", SYSTEMS / "water" / "data_1"]
CHO = sorted((SYSTEMS / "cho_molecules").iterdir())
RTOL = 1e-10


def _section(type_map, repinit=None, repformer=None, **descriptor):
    """configs/tiny.py's model section, with a three-body block unlike the repformer one."""
    section = load_config_module("tiny").get_config().model.to_dict()
    section["type_map"] = list(type_map)
    desc = section["descriptor"]
    desc["repinit"].update(three_body_rcut=3.5, three_body_rcut_smth=0.5, three_body_sel=24)
    desc["repinit"].update(repinit or {})
    desc["repformer"].update(repformer or {})
    desc.update(descriptor)
    return section


def _deepmd_statistics(section, systems):
    """DeePMD-kit's statistics of ``systems`` (all their frames), as our stats dict."""
    from deepmd.dpmodel.model.model import get_model

    model = get_model(copy.deepcopy(section))
    ntypes = len(section["type_map"])
    sampled = []
    for s in systems:
        nf = s.nframes
        counts = np.bincount(s.atom_types, minlength=ntypes)
        sampled.append(
            {
                "coord": s.coords.reshape(nf, -1),
                "atype": np.tile(s.atom_types.astype(np.int64), (nf, 1)),
                "box": None if s.cells is None else s.cells.reshape(nf, 9),
                "energy": s.energies.reshape(nf, 1),
                "natoms": np.tile(np.r_[s.natoms, s.natoms, counts], (nf, 1)),
                "find_energy": np.float32(1.0),
            }
        )
    model.compute_or_load_stat(lambda: sampled)
    desc = model.atomic_model.descriptor
    blocks = {"repinit": desc.repinit, "repformers": desc.repformers}
    if desc.use_three_body:
        blocks["three_body"] = desc.repinit_three_body
    return {
        "descriptor": {
            name: {"davg": np.asarray(b.mean), "dstd": np.asarray(b.stddev)}
            for name, b in blocks.items()
        },
        "out_bias": np.asarray(model.atomic_model.out_bias).reshape(ntypes),
    }


def _assert_close(ours, theirs, what):
    scale = max(float(np.max(np.abs(theirs))), 1.0)
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=RTOL * scale, err_msg=what)


CASES = {
    # C is absent from water; repinit (and three-body) with davg, repformer without.
    "water": (WATER, ["O", "H", "C"], dict(repinit={"set_davg_zero": False}), 2),
    # the other way round, and a repformer sel small enough to drop the farthest neighbors.
    "water_rf_davg": (
        WATER, ["O", "H", "C"], dict(repformer={"set_davg_zero": False, "nsel": 8}), 2,
    ),
    # molecules without cell; N absent; both blocks with davg; type-pair exclusion,
    # env_protection and an atom type excluded from the energy.
    "cho": (
        CHO, ["C", "H", "O", "N"],
        dict(repinit={"set_davg_zero": False}, repformer={"set_davg_zero": False},
             exclude_types=[[0, 2]], env_protection=0.05),
        3,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_parity_with_deepmd(case):
    paths, type_map, options, nframes = CASES[case]
    section = _section(type_map, **options)
    if case == "cho":
        section["atom_exclude_types"] = [1]
    cfg = model_config(section)
    systems = [read_npy_system(p, type_map=type_map) for p in paths]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sel overflow warning (intended in one case)
        ours = compute_statistics(cfg, systems, max_frames=nframes)
    theirs = _deepmd_statistics(section, [s.select_frames(slice(0, nframes)) for s in systems])

    expected_blocks = {"repinit", "three_body", "repformers"}
    assert set(ours["descriptor"]) == set(theirs["descriptor"]) == expected_blocks
    for name, block in theirs["descriptor"].items():
        for key in ("davg", "dstd"):
            assert ours["descriptor"][name][key].shape == block[key].shape
            _assert_close(ours["descriptor"][name][key], block[key], f"{case} {name} {key}")
    _assert_close(ours["out_bias"], theirs["out_bias"], f"{case} out_bias")

    absent = type_map.index("C" if case.startswith("water") else "N")
    for name, block in ours["descriptor"].items():
        assert np.all(block["davg"][absent] == 0.0) and np.all(block["dstd"][absent] == 0.1)
    assert abs(ours["out_bias"][absent]) < 1e-12
    davg_zero = {
        "repinit": cfg.descriptor.repinit.set_davg_zero,
        "three_body": cfg.descriptor.repinit.set_davg_zero,  # DeePMD: repinit's flag
        "repformers": cfg.descriptor.repformer.set_davg_zero,
    }
    for name, zero in davg_zero.items():
        assert np.any(ours["descriptor"][name]["davg"] != 0.0) != zero, name


def test_energy_bias_matches_compute_stats_from_redu():
    from deepmd.utils.out_stat import compute_stats_from_redu

    rng = np.random.default_rng(0)
    counts = rng.integers(0, 9, size=(12, 4))
    counts[:, 3] = 0  # a type absent from the data
    energies = counts @ np.array([-3.0, -1.5, -7.0, -2.0]) + rng.normal(size=12)
    for rcond, preset in ((None, None), (1e-3, [None, -1.4, None, None])):
        theirs, _ = compute_stats_from_redu(
            energies[:, None], counts, assigned_bias=None if preset is None else
            np.array([[np.nan] if p is None else [p] for p in preset]), rcond=rcond,
        )  # fmt: skip
        ours = energy_bias(energies, counts, rcond=rcond, preset=preset)
        _assert_close(ours, theirs[:, 0], f"rcond={rcond} preset={preset}")
        assert abs(ours[3]) < 1e-12


def test_moments_add_over_frames():
    system = read_npy_system(WATER[0], type_map=["O", "H"])
    frames = [(system.coords[f], system.atom_types, system.cells[f]) for f in range(3)]
    args = dict(ntypes=2, rcut=4.0, rcut_smth=0.5, sel=40)
    whole = environment_moments(frames, **args)
    parts = environment_moments(frames[:1], **args) + environment_moments(frames[1:], **args)
    np.testing.assert_allclose(whole, parts, rtol=1e-13)
    davg, dstd = environment_statistics(frames, set_davg_zero=False, **args)
    assert davg.shape == dstd.shape == (2, 40, 4)
    assert np.all(davg[..., 1:] == 0.0) and np.all(dstd[..., 1] == dstd[..., 3])


def test_apply_statistics_writes_a_new_tree(enable_x64):
    from dpa2_jax.model.energy import init

    section = _section(["O", "H", "C"], repinit={"set_davg_zero": False})
    cfg = model_config(section)
    params = init(jax.random.PRNGKey(0), cfg)
    systems = [read_npy_system(WATER[0], type_map=cfg.type_map)]
    rng = np.random.default_rng(1)
    stats = compute_statistics(cfg, systems, max_frames=2, rng=rng)
    new = apply_statistics(params, cfg, stats)
    for name, block in stats["descriptor"].items():
        for key in ("davg", "dstd"):
            leaf = new["descriptor"][name][key]
            assert leaf.dtype == np.asarray(params["descriptor"][name][key]).dtype
            np.testing.assert_array_equal(leaf, block[key])
    head = cfg.resolve_head(None)
    np.testing.assert_array_equal(new["heads"][head]["out_bias"], stats["out_bias"])
    assert np.all(np.asarray(params["descriptor"]["repinit"]["dstd"]) == 1.0)  # untouched
    assert new["descriptor"]["type_embedding"] is params["descriptor"]["type_embedding"]
