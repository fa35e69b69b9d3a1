"""A minute of training on this CPU: configs/tiny.py's model on the bundled water, a few hundred
steps (the README's main command and the training tests).

    dpa2-jax train configs/water_tiny.py --workdir runs/water_tiny
"""

import ml_collections

from configs import tiny

WATER = "../tests/systems/water"  # relative to this file


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # model
    config.model = tiny.get_config().model
    # learning rate
    config.learning_rate = {"type": "exp", "decay_steps": 100, "start_lr": 0.005, "stop_lr": 1e-4}
    # loss
    config.loss = {
        "type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
        "limit_pref_f": 1, "start_pref_v": 0, "limit_pref_v": 0,
    }  # fmt: skip
    # training
    config.training = {
        "training_data": {"systems": [f"{WATER}/data_0", f"{WATER}/data_1"], "batch_size": 1},
        "validation_data": {"systems": [f"{WATER}/data_3"], "batch_size": 4, "numb_btch": 1},
        "numb_steps": 1000, "seed": 1, "disp_file": "lcurve.out", "disp_freq": 100,
        "save_freq": 500, "max_ckpt_keep": 2,
    }  # fmt: skip
    return config
