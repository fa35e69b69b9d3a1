"""DPA-2 "small": DeePMD-kit's examples/water/dpa2/input_torch_small.json (0.62 M parameters)."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # model (DeePMD's "model" section, names and defaults kept)
    config.model = {
        "type_map": ["O", "H"],
        "descriptor": {
            "type": "dpa2",
            "repinit": {
                "tebd_dim": 8, "rcut": 6.0, "rcut_smth": 0.5, "nsel": 120,
                "neuron": [25, 50, 100], "axis_neuron": 12, "activation_function": "tanh",
                "three_body_sel": 48, "three_body_rcut": 4.0, "three_body_rcut_smth": 3.5,
                "use_three_body": True,
            },
            "repformer": {
                "rcut": 4.0, "rcut_smth": 3.5, "nsel": 48, "nlayers": 3, "g1_dim": 128,
                "g2_dim": 32, "attn2_hidden": 32, "attn2_nhead": 4, "attn1_hidden": 128,
                "attn1_nhead": 4, "axis_neuron": 4, "update_h2": False,
                "update_g1_has_conv": True, "update_g1_has_grrg": True,
                "update_g1_has_drrd": True, "update_g1_has_attn": False,
                "update_g2_has_g1g1": False, "update_g2_has_attn": False,
                "update_style": "res_residual", "update_residual": 0.01,
                "update_residual_init": "norm", "attn2_has_gate": True, "use_sqrt_nnei": True,
                "g1_out_conv": True, "g1_out_mlp": True,
            },
            "precision": "float64", "add_tebd_to_repinit_out": False,
        },
        "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "precision": "float64"},
    }  # fmt: skip
    return config
