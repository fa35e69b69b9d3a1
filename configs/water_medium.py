"""Training DPA-2 "medium" on the bundled water: DeePMD-kit's
examples/water/dpa2/input_torch_medium.json (6 repformer layers with g2 attention; learning rate,
loss and training sections as in water_small.py), data_0..2 train, data_3 validation.

    dpa2-jax train configs/water_medium.py --workdir runs/water_medium --config.training.numb_steps=2000
"""

import ml_collections

from configs import medium, water_small


def get_config() -> ml_collections.ConfigDict:
    config = water_small.get_config()
    config.model = medium.get_config().model
    return config
