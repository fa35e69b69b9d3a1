"""Parity with DeePMD-kit 3.2.0: stored reference values (tests/reference, made by
scripts/make_reference.py) for the randomised DPA-2 models listed in tests/reference/README.md x
molecule / triclinic cell / water.

Every variable of those models is random (statistics, biases, type embeddings, residual
scales), so padding slots, normalisation and each repformer option are exercised.
"""

import pathlib

import jax
import numpy as np
import pytest

import dpa2_jax
from dpa2_jax.errors import ConfigError
from dpa2_jax.graph import BucketPadder, batch_graphs, frame_to_graph
from dpa2_jax.model.compiled import compiled_forces_fn
from dpa2_jax.io.deepmd_export import to_deepmd
from dpa2_jax.io.deepmd_model import from_deepmd, model_json
from dpa2_jax.io.dp_format import read_dp, write_dp

REFERENCE = pathlib.Path(__file__).resolve().parents[1] / "reference"
CASES = sorted(p.stem for p in REFERENCE.glob("*__*.npz"))
KEYS = ("energy", "forces", "virial", "atom_energy")


@pytest.fixture(scope="module", autouse=True)
def x64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def _reference(case: str) -> dict:
    data = np.load(REFERENCE / f"{case}.npz")
    return {k: data[k] for k in data.files}


def _tolerance(ref: dict) -> float:
    return 1e-10 if str(ref["precision"]) == "float64" else 2e-5


def _assert_close(ours: np.ndarray, theirs: np.ndarray, rtol: float, what: str):
    scale = max(float(np.max(np.abs(theirs))), 1.0)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * scale, err_msg=what)


VARIANTS = sorted({c.split("__")[0] for c in CASES})
# The default suite keeps the variants that change the most code paths (the type-embedding
# inputs, strip mode, smoothness, exclusions, precision, one-sided nets, the residual style);
# every variant runs with -m slow (run it before changing the descriptor).
DEFAULT_VARIANTS = {
    "base", "strip", "no_three_body", "res_residual_norm", "nonsmooth", "exclude_types",
    "type_one_side", "float32", "econf_combined",
}  # fmt: skip
ECONF_VARIANTS = sorted(v for v in VARIANTS if v == "use_econf_tebd" or v.startswith("econf_"))


def _evaluate_cases(
    variant: str, geometries: list[str], slots_on_device: bool = False
) -> dict[str, dict]:
    """Evaluates several geometries in one padded batch (one compilation per model). With
    ``slots_on_device`` the edges are shuffled and ranked inside the compiled function."""
    pot = dpa2_jax.load(REFERENCE / f"{variant}.dp")
    refs = {g: _reference(f"{variant}__{g}") for g in geometries}
    graphs, sizes = [], []
    for ref in refs.values():
        for k in range(ref["coords"].shape[0]):
            cell = ref["cells"][k] if bool(ref["pbc"]) else None
            graphs.append(
                frame_to_graph(ref["coords"][k], ref["atom_types"], cell, pot.rcut,
                               pot.config.descriptor.sel, dtype=pot.dtype)
            )  # fmt: skip
        sizes.append(ref["coords"].shape)
    unpadded = batch_graphs(graphs)
    layout = pot.layout([unpadded])  # fewer slots than sel where exact, as evaluate() does
    if slots_on_device:
        unpadded = _shuffled_edges(unpadded, np.random.default_rng(7))
    batch = BucketPadder()(unpadded)
    forces_fn = compiled_forces_fn(pot.config, "default", layout, slots_on_device)
    out = forces_fn(pot.params, batch)
    out = jax.tree.map(np.asarray, out)
    results, frame, node = {}, 0, 0
    for geometry, (nf, nat, _) in zip(refs, sizes):
        results[geometry] = {
            "energy": out["energy"][frame : frame + nf],
            "virial": out["virial"][frame : frame + nf],
            "forces": out["forces"][node : node + nf * nat].reshape(nf, nat, 3),
            "atom_energy": out["atom_energy"][node : node + nf * nat].reshape(nf, nat),
        }
        frame, node = frame + nf, node + nf * nat
    return results


def _shuffled_edges(graph, rng):
    """The same graph with its edges in a random order and their slots erased."""
    order = rng.permutation(len(graph.senders))
    edges = {"shifts": graph.edges["shifts"][order], "slot": np.full(len(order), -7, np.int32)}
    return graph._replace(
        senders=graph.senders[order], receivers=graph.receivers[order], edges=edges
    )


def _check_variant(variant: str, geometries: list[str]) -> None:
    results = _evaluate_cases(variant, geometries)
    for geometry, out in results.items():
        ref = _reference(f"{variant}__{geometry}")
        for key in KEYS:
            _assert_close(out[key], ref[key], _tolerance(ref), f"{variant} {geometry}: {key}")


@pytest.mark.parametrize(
    "variant",
    [v if v in DEFAULT_VARIANTS else pytest.param(v, marks=pytest.mark.slow) for v in VARIANTS],
)
def test_energy_forces_virial_match_deepmd(variant):
    """Molecule (no PBC) and small triclinic cell, float64 to 1e-10."""
    _check_variant(variant, ["small_cell", "molecule"])


def test_water_matches_deepmd_with_truncated_neighbor_lists():
    """Two 192-atom water frames where neighbor lists are cut to sel (no ties at the cut)."""
    _check_variant("base", ["water"])


@pytest.mark.parametrize("variant", ["base", pytest.param("no_three_body", marks=pytest.mark.slow)])
def test_slots_built_on_device_from_shuffled_edges_match_host_slots(variant):
    """Periodic (triclinic and 192-atom water, lists truncated at sel) and free-space frames:
    edges in random order, ranked inside jit, give the host-sorted numbers to 1e-12."""
    geometries = ["small_cell", "molecule", "water"] if variant == "base" else ["small_cell"]
    host = _evaluate_cases(variant, geometries)
    device = _evaluate_cases(variant, geometries, slots_on_device=True)
    for geometry in geometries:
        for key in KEYS:
            _assert_close(device[geometry][key], host[geometry][key], 1e-12, f"{geometry} {key}")


@pytest.mark.slow
def test_water_with_zero_davg_matches_deepmd():
    _check_variant("base_zero_davg", ["water"])


def test_econf_references_exist_and_cover_the_options():
    """Guards the test itself: the econf models combine the options that move type embeddings."""
    assert {"use_econf_tebd", "econf_res_incr", "econf_exclude_types", "econf_nonsmooth",
            "econf_combined", "econf_type_map"} <= set(ECONF_VARIANTS)  # fmt: skip
    cfg = from_deepmd(model_json(read_dp(REFERENCE / "econf_combined.dp")))[0].descriptor
    assert cfg.use_econf_tebd and cfg.repinit.use_three_body and not cfg.smooth
    assert cfg.repformer.update_style == "res_incr" and cfg.exclude_types


@pytest.mark.parametrize("variant", ECONF_VARIANTS)
def test_econf_type_embedding_roundtrips_exactly_and_is_not_stored(variant, tmp_path):
    """DeePMD stores the flag, the type map and the (118, tebd_dim) weight, never the econf
    vectors; our export writes back that same type_embedding entry."""
    original = model_json(read_dp(REFERENCE / f"{variant}.dp"))
    cfg, params = from_deepmd(original)
    assert cfg.descriptor.type_map == cfg.type_map == tuple(original["type_map"])
    exported = tmp_path / "export.dp"
    write_dp(exported, {"model": to_deepmd(cfg, params)})
    ours = model_json(read_dp(exported))["descriptor"]
    theirs = original["descriptor"]
    for d in (ours, theirs):
        assert d["use_econf_tebd"] is True and d["type_embedding"]["use_econf_tebd"] is True
        assert d["type_map"] == d["type_embedding"]["type_map"] == original["type_map"]
    for a, b in zip(
        jax.tree.leaves(theirs["type_embedding"]), jax.tree.leaves(ours["type_embedding"])
    ):
        np.testing.assert_array_equal(a, b)
    layers = params["descriptor"]["type_embedding"]
    assert layers[0]["w"].shape == (118, cfg.descriptor.repinit.tebd_dim)


def test_econf_needs_element_symbols_in_the_type_map():
    """A type map entry that is not an element is named in a ConfigError."""
    model = model_json(read_dp(REFERENCE / "use_econf_tebd.dp"))
    model = dict(model, type_map=["C", "H", "Xx", "O"])
    model["descriptor"] = dict(model["descriptor"], type_map=model["type_map"])
    with pytest.raises(ConfigError, match="'Xx'"):
        from_deepmd(model)


def test_econf_export_refuses_another_type_map():
    """The econf rows follow the type map, so exporting under another one is an error."""
    from dpa2_jax.descriptor.dpa2.deepmd import to_deepmd as descriptor_to_deepmd

    cfg, params = from_deepmd(model_json(read_dp(REFERENCE / "use_econf_tebd.dp")))
    with pytest.raises(ConfigError, match="type_map"):
        descriptor_to_deepmd(cfg.descriptor, params["descriptor"], ["H", "C", "N", "O"])


def test_padding_slots_matter_when_davg_is_nonzero():
    """Guards the test itself: the reference models do exercise the -davg/dstd padding."""
    data = read_dp(REFERENCE / "base.dp")["model"]["descriptor"]
    assert np.abs(data["repinit_variable"]["@variables"]["davg"]).max() > 1e-3


@pytest.mark.parametrize("variant", VARIANTS)
def test_convert_export_roundtrip_is_lossless(variant, tmp_path):
    """.dp -> (config, params) -> .dp reproduces DeePMD's serialized model exactly."""
    original = model_json(read_dp(REFERENCE / f"{variant}.dp"))
    cfg, params = from_deepmd(original)
    exported = tmp_path / "export.dp"
    write_dp(exported, {"model": to_deepmd(cfg, params)})
    cfg2, params2 = from_deepmd(model_json(read_dp(exported)))
    assert cfg2 == cfg
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "variant",
    ["base", "strip", "res_residual_norm", "add_tebd_to_repinit_out", *ECONF_VARIANTS],
)
def test_deepmd_evaluates_our_export_to_the_same_energy(variant, tmp_path):
    """DeePMD-kit's numpy backend loads the .dp we write and gives the reference energies."""
    pytest.importorskip("deepmd")
    from deepmd.dpmodel.model.base_model import BaseModel
    from deepmd.dpmodel.utils.serialization import load_dp_model

    cfg, params = from_deepmd(model_json(read_dp(REFERENCE / f"{variant}.dp")))
    exported = tmp_path / "export.dp"
    write_dp(exported, {"model": to_deepmd(cfg, params)})
    model = BaseModel.deserialize(load_dp_model(str(exported))["model"])
    for geometry in ("small_cell", "molecule"):
        ref = _reference(f"{variant}__{geometry}")
        nf, nat = ref["coords"].shape[:2]
        box = ref["cells"].reshape(nf, 9) if bool(ref["pbc"]) else None
        out = model.call(
            ref["coords"].reshape(nf, -1), np.tile(ref["atom_types"], (nf, 1)), box=box
        )
        _assert_close(out["energy"].reshape(nf), ref["energy"], 1e-10, f"{variant} {geometry}")
