"""The packaged electron-configuration table (dpa2_jax/data/econf.json, made by
scripts/make_econf_table.py) and the ``use_econf_tebd`` option of our own configs."""

import dataclasses
import json

import numpy as np
import pytest

from dpa2_jax.descriptor.type_embedding import econf_occupations, econf_vectors, econf_width
from dpa2_jax.errors import ConfigError
from dpa2_jax.io.deepmd_config import model_config, model_section
from dpa2_jax.model.config import ModelConfig, config_from_dict, config_to_dict
from tests.reference_models import TINY_DPA2


def test_every_element_matches_deepmd_kit():
    """Our vectors equal DeePMD-kit 3.2.0's (normalised) ones for all of its elements."""
    pytest.importorskip("deepmd")
    from deepmd.utils.econf_embd import normalized_electronic_configuration_embedding as theirs

    symbols = list(theirs)
    assert symbols == list(econf_occupations())  # same elements, same (atomic number) order
    ours = econf_vectors(symbols)
    for symbol, row in zip(symbols, ours):
        np.testing.assert_allclose(row, theirs[symbol], rtol=0, atol=1e-12, err_msg=symbol)


def test_table_is_physical():
    """Element Z holds Z electrons; no orbital holds more than two; vectors have unit length."""
    table = econf_occupations()
    assert len(table) == 118 and econf_width() == 118
    for z, (symbol, digits) in enumerate(table.items(), start=1):
        assert set(digits) <= set("012"), symbol
        assert sum(int(o) for o in digits) == z, symbol
    vectors = econf_vectors(list(table))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-14)
    assert np.all(np.isin(np.round(vectors * np.sqrt(118), 12), (-1.0, 1.0)))
    assert len({tuple(v) for v in vectors}) == 118  # every element distinct


def test_hund_rule_in_the_table():
    """Carbon 2p2: two singly occupied p orbitals; oxygen 2p4: one pair then two singles;
    chromium 3d5 4s1 (the exception to aufbau) from the data, not from a rule."""
    table = econf_occupations()
    assert table["C"][:5] == "22110" and table["O"][:5] == "22211"
    assert table["Cr"][:14] == "22222222211111" and table["Cr"][14] == "1"


def test_provenance_header():
    from importlib.resources import files

    data = json.loads(files("dpa2_jax.data").joinpath("econf.json").read_text())
    header = data["provenance"]
    assert "mendeleev" in header["source"] and header["date"] and "Hund" in header["rule"]
    assert len(data["subshells"]) == 19 and data["subshells"][-1] == "7p"


@pytest.mark.parametrize("bad", ["Xx", "fe", "O1"])
def test_unknown_symbol_is_named(bad):
    with pytest.raises(ConfigError, match=repr(bad)):
        econf_vectors(["H", bad])


def _econf_model_section(type_map=("C", "H", "N", "O")) -> dict:
    section = json.loads(json.dumps(TINY_DPA2))
    section["type_map"] = list(type_map)
    section["descriptor"]["use_econf_tebd"] = True
    return section


def test_input_json_and_model_json_roundtrip():
    cfg = model_config(_econf_model_section())
    assert cfg.descriptor.use_econf_tebd and cfg.descriptor.type_map == ("C", "H", "N", "O")
    assert cfg.descriptor.tebd_inputs.shape == (4, 118)
    assert model_config(model_section(cfg)) == cfg
    assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg
    plain = model_config(json.loads(json.dumps(TINY_DPA2)))
    assert not plain.descriptor.use_econf_tebd and plain.descriptor.type_map is None
    assert plain.descriptor.tebd_inputs.shape == (4, 4)


def test_type_map_entry_that_is_no_element_is_named():
    with pytest.raises(ConfigError, match="'Type1'"):
        model_config(_econf_model_section(("C", "H", "Type1", "O")))


def test_descriptor_and_model_type_maps_must_agree():
    cfg = model_config(_econf_model_section())
    with pytest.raises(ConfigError, match="type_map"):
        ModelConfig(type_map=("H", "C", "N", "O"), descriptor=cfg.descriptor, heads=cfg.heads)
    with pytest.raises(ConfigError, match="needs the model's type_map"):
        dataclasses.replace(cfg.descriptor, type_map=None)


def test_new_econf_model_has_a_118_wide_type_embedding_and_exports_it():
    """init reads the econf width; a fresh model exports to DeePMD's layout with its type map."""
    import jax

    from dpa2_jax.io.deepmd_export import to_deepmd
    from dpa2_jax.io.deepmd_model import from_deepmd
    from dpa2_jax.model.energy import init

    cfg = model_config(_econf_model_section(("O", "H", "Cu", "C")))
    params = jax.tree.map(np.asarray, init(jax.random.key(0), cfg))
    assert params["descriptor"]["type_embedding"][0]["w"].shape == (118, 4)
    model = to_deepmd(cfg, params)
    tebd = model["descriptor"]["type_embedding"]
    assert tebd["use_econf_tebd"] and tebd["type_map"] == ["O", "H", "Cu", "C"]
    assert from_deepmd(model)[0] == cfg
