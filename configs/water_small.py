"""Training DPA-2 "small" on the bundled water: DeePMD-kit's
examples/water/dpa2/input_torch_small.json (model, learning rate, loss and training sections),
with the data paths pointing at tests/systems/water (data_0..2 train, data_3 validation).

    dpa2-jax train configs/water_small.py --workdir runs/water_small --config.training.numb_steps=2000
"""

import ml_collections

from configs import small

WATER = "../tests/systems/water"  # relative to this file


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # model
    config.model = small.get_config().model
    # learning rate (DeePMD's "exp" schedule)
    config.learning_rate = {
        "type": "exp", "decay_steps": 5000, "start_lr": 0.001, "stop_lr": 3.51e-08,
    }  # fmt: skip
    # loss (energy per atom, forces; no virial labels in this data)
    config.loss = {
        "type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
        "limit_pref_f": 1, "start_pref_v": 0, "limit_pref_v": 0,
    }  # fmt: skip
    # training
    config.training = {
        "training_data": {
            "systems": [f"{WATER}/data_0", f"{WATER}/data_1", f"{WATER}/data_2"],
            "batch_size": 1,
        },
        "validation_data": {"systems": [f"{WATER}/data_3"], "batch_size": 1, "numb_btch": 3},
        "numb_steps": 1000000, "seed": 10, "disp_file": "lcurve.out", "disp_freq": 100,
        "save_freq": 2000,
    }  # fmt: skip
    return config
