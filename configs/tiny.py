"""A CPU-sized DPA-2 for tests: every repformer update on, small widths, short cutoffs."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # model
    config.model = {
        "type_map": ["O", "H"],
        "descriptor": {
            "type": "dpa2",
            "repinit": {
                "tebd_dim": 4, "rcut": 4.0, "rcut_smth": 0.5, "nsel": 40, "neuron": [6, 12],
                "axis_neuron": 3, "use_three_body": True, "three_body_sel": 16,
                "three_body_rcut": 3.0, "three_body_rcut_smth": 2.5, "three_body_neuron": [2, 4],
            },
            "repformer": {
                "rcut": 3.0, "rcut_smth": 2.5, "nsel": 16, "nlayers": 2, "g1_dim": 8,
                "g2_dim": 6, "axis_neuron": 2, "attn1_hidden": 6, "attn1_nhead": 2,
                "attn2_hidden": 6, "attn2_nhead": 2, "update_h2": True, "attn2_has_gate": True,
                "update_style": "res_residual", "update_residual": 0.1,
            },
            "precision": "float64",
        },
        "fitting_net": {"neuron": [8, 8], "resnet_dt": True},
    }  # fmt: skip
    return config
