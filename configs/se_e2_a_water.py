"""se_e2_a (DeepPot-SE) on water: DeePMD-kit's examples/water/se_e2_a/input.json model, the
cheap student for distillation (rcut 6 A, sel [46, 92])."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # model (DeePMD's "model" section, names and defaults kept)
    config.model = {
        "type_map": ["O", "H"],
        "descriptor": {
            "type": "se_e2_a", "sel": [46, 92], "rcut_smth": 0.5, "rcut": 6.0,
            "neuron": [25, 50, 100], "resnet_dt": False, "axis_neuron": 16,
            "type_one_side": True, "precision": "float64",
        },
        "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "precision": "float64"},
    }  # fmt: skip
    return config
