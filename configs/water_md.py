"""A small water model stable enough for MD: configs/tiny.py's DPA-2 with room for every neighbor
(``sel`` 60 within 4 A, 28 within 3 A; water has at most 39 and 17, more in hot MD, and an atom
with more neighbors than ``sel`` loses its farthest, so that the energy jumps), trained for 5,000
steps on the bundled water data_0..data_2 (about 10 minutes on 2 CPU cores).

    dpa2-jax train configs/water_md.py --workdir runs/water_md

examples/water_md/model.dp is its result; tests/md/test_md_command.py runs 1 ps of NVE with it.
"""

import ml_collections

from configs import water_tiny

WATER = "../tests/systems/water"  # relative to this file


def get_config() -> ml_collections.ConfigDict:
    config = water_tiny.get_config()
    descriptor = config.model.descriptor
    descriptor.repinit.nsel = 60
    descriptor.repinit.three_body_sel = 28
    descriptor.repformer.nsel = 28
    config.training.training_data.systems = [f"{WATER}/data_{i}" for i in range(3)]
    config.training.numb_steps = 5000
    config.training.save_freq = 1000
    config.training.disp_freq = 500
    return config
