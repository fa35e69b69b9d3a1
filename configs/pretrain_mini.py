"""Multi-task pretraining in miniature: one DPA-2 descriptor shared by three heads, one per bundled
DFT data set (DeePMD-kit's multi-task input: shared_dict, model_dict, loss_dict, data_dict).

    dpa2-jax train configs/pretrain_mini.py --workdir runs/pretrain_mini
    dpa2-jax test runs/pretrain_mini tests/systems/water/data_3 --head water

Tasks: water (192-atom boxes), water_virial (384-atom boxes from another DeePMD-kit example,
with virials) and cho (C/H/O molecules). The elements are H, C, N, O so that C/H/N/O molecules
can be fine-tuned from it without a new element; N is in no pretraining set (its statistics
stay neutral). GeTe (tests/systems/gete) is the held-out target with two new elements.
"""

import ml_collections

from configs import tiny

DATA = "../tests/systems"  # relative to this file


def _loss(pref_v: float = 0.0) -> dict:
    return {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
            "limit_pref_f": 1, "start_pref_v": pref_v, "limit_pref_v": pref_v}  # fmt: skip


def get_config() -> ml_collections.ConfigDict:
    model = tiny.get_config().model.to_dict()
    fitting = model["fitting_net"]
    config = ml_collections.ConfigDict()
    config.model = {
        "shared_dict": {"type_map_all": ["H", "C", "N", "O"], "descriptor": model["descriptor"]},
        "model_dict": {
            name: {"type_map": "type_map_all", "descriptor": "descriptor",
                   "fitting_net": dict(fitting)}
            for name in ("water", "water_virial", "cho")
        },
    }  # fmt: skip
    config.learning_rate = {"type": "exp", "decay_steps": 100, "start_lr": 0.005, "stop_lr": 1e-4}
    config.loss_dict = {"water": _loss(), "water_virial": _loss(0.02), "cho": _loss()}
    cho = f"{DATA}/cho_molecules"
    config.training = {
        "model_prob": {"water": 0.4, "water_virial": 0.2, "cho": 0.4},
        "data_dict": {
            "water": {
                "training_data": {"systems": [f"{DATA}/water/data_0", f"{DATA}/water/data_1",
                                              f"{DATA}/water/data_2"], "batch_size": 1},
                "validation_data": {"systems": [f"{DATA}/water/data_3"], "batch_size": 1,
                                    "numb_btch": 1},
            },
            "water_virial": {
                "training_data": {"systems": [f"{DATA}/water_virial_384"], "batch_size": 1},
            },
            "cho": {
                "training_data": {"systems": [f"{cho}/C1H4O2", f"{cho}/C3H3O4"],
                                  "batch_size": "auto"},
                "validation_data": {"systems": [f"{cho}/C4H3O1"], "batch_size": "auto",
                                    "numb_btch": 1},
            },
        },
        "numb_steps": 1000, "seed": 1, "disp_file": "lcurve.out", "disp_freq": 100,
        "save_freq": 500, "max_ckpt_keep": 2,
    }  # fmt: skip
    return config
