"""configs/distill_water.py in a minute of CPU: a short check, one short MD run, a tiny se_e2_a
student trained for a few steps, a few steps of MD for the report's g(r) (the distillation
tests).

    dpa2-jax distill configs/distill_water_tiny.py --workdir runs/distill_tiny
"""

import ml_collections

from configs import distill_water


def get_config() -> ml_collections.ConfigDict:
    config = distill_water.get_config()
    config.teacher.model = "../examples/water_tiny/model.dp"  # fast; 20 check steps at 300 K pass
    config.check.steps = 20
    config.check.every = 5
    config.check.window = 10
    config.explore.structures = [f"{distill_water.WATER}/data_0"]
    config.explore.temperatures = [300.0]
    config.explore.steps = 20
    config.explore.every = 5
    config.explore.perturb.copies = 1
    config.student.model = {
        "type_map": ["O", "H"],
        "descriptor": {
            "type": "se_e2_a", "sel": [16, 32], "rcut_smth": 0.5, "rcut": 4.0,
            "neuron": [4, 8], "axis_neuron": 4, "type_one_side": True, "precision": "float64",
        },
        "fitting_net": {"neuron": [8, 8], "resnet_dt": True, "precision": "float64"},
    }  # fmt: skip
    config.student.training.numb_steps = 10
    config.student.training.disp_freq = 5
    config.student.training.save_freq = 10
    config.report.repeats = 2
    config.report.rdf.equilibration = 10
    config.report.rdf.steps = 20
    config.report.rdf.every = 5
    return config
