"""dpa2_jax/train/config.py: DeePMD input.json and configs/*.py read into one RunConfig."""

import json

import pytest

from dpa2_jax.errors import ConfigError
from dpa2_jax.train.config import read_input
from tests.conftest import ROOT

SMALL = ROOT / "configs" / "water_small.py"


def test_python_config_and_its_json_twin_agree(tmp_path):
    from dpa2_jax.train.config import config_dict

    section = config_dict(SMALL)
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "input.json").write_text(json.dumps(section))
    from_py = read_input(SMALL)
    from_json = read_input(folder / "input.json")
    for section in ("model", "learning_rate"):
        assert getattr(from_json, section) == getattr(from_py, section)
    assert from_json.tasks[0].loss == from_py.tasks[0].loss
    assert from_json.training.numb_steps == from_py.training.numb_steps
    # system paths are relative to each file
    water = ("tests", "systems", "water", "data_0")
    assert from_py.tasks[0].training_data.systems[0] == str(ROOT.joinpath(*water))
    assert from_json.tasks[0].training_data.systems[0] == str(tmp_path.joinpath(*water))
    assert from_py.learning_rate.stop_lr == 3.51e-08 and from_py.tasks[0].loss.start_pref_f == 1000


def test_overrides_are_json_values():
    run = read_input(SMALL, ["training.numb_steps=20", "learning_rate.start_lr=2e-3",
                             'training.training_data.batch_size="auto:64"'])  # fmt: skip
    assert run.training.numb_steps == 20 and run.learning_rate.start_lr == 2e-3
    assert run.tasks[0].training_data.batch_size == "auto:64"


@pytest.mark.parametrize(
    "override, message",
    [
        ("loss.start_pref_ee=1", "unknown key 'start_pref_ee'; did you mean 'start_pref_e'?"),
        ("trainin.numb_steps=1", "no section 'trainin'"),
        ("training.validation_data.sytems=[]", "unknown key 'sytems'; did you mean 'systems'?"),
    ],
)
def test_bad_keys_name_the_nearest(override, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        read_input(SMALL, [override])


def test_missing_input_file(tmp_path):
    with pytest.raises(ConfigError, match="no such input file"):
        read_input(tmp_path / "input.json")


def test_water_medium_is_small_with_six_attention_layers():
    small, medium = read_input(SMALL), read_input(ROOT / "configs" / "water_medium.py")
    rf = medium.model.descriptor.repformer
    assert rf.nlayers == 6 and rf.update_g2_has_attn
    assert small.model.descriptor.repformer.nlayers == 3
    assert medium.training == small.training and medium.tasks == small.tasks
