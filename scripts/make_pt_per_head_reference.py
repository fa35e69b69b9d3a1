"""A multi-task DeePMD-kit checkpoint whose heads do not share every descriptor variable.

    /work/torchenv/bin/python scripts/make_pt_per_head_reference.py   # from the repo root

DeePMD-kit 3.2.0's multi-task training (``shared_dict``, shared level 0) shares a DPA-2's type
embedding, repinit, three-body and repformer blocks between heads, but not ``tebd_transform``
(used with ``add_tebd_to_repinit_out``): each head keeps its own. Such a checkpoint cannot
become one dpa2_jax model with one descriptor; each head can (``--head``). This script trains
one with options the other fixtures never use (type map H, C, N, O; gelu/silu; three
repformer layers with res_avg, gated attention, g1_out_conv/mlp, sqrt normalisation; three
heads) for 6 steps and stores DeePMD-kit's numbers per head in
tests/reference/pt_checkpoints/per_head/ (README there). Needs DeePMD-kit with torch and e3nn
(see make_pt_checkpoint_reference.py).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_pt_checkpoint_reference import ROOT, SYSTEMS, dp  # noqa: E402

OUT = os.path.join(ROOT, "tests", "reference", "pt_checkpoints", "per_head")
TYPE_MAP = ["H", "C", "N", "O"]
HEADS = {"pbe_water": ("water/data_1",), "wb97_chno": ("chno_molecules/H10C5N2O",
         "chno_molecules/H8C4N2O"), "cho_frag": ("cho_molecules/C3H3O4",)}  # fmt: skip
DESCRIPTOR = {
    "type": "dpa2",
    "repinit": {
        "rcut": 4.5, "rcut_smth": 0.6, "nsel": 48, "neuron": [5, 10], "axis_neuron": 4,
        "tebd_dim": 6, "activation_function": "gelu", "use_three_body": True,
        "three_body_neuron": [3, 6], "three_body_sel": 18, "three_body_rcut": 3.2,
        "three_body_rcut_smth": 2.0, "type_one_side": True,
    },
    "repformer": {
        "rcut": 3.4, "rcut_smth": 2.2, "nsel": 22, "nlayers": 3, "g1_dim": 10, "g2_dim": 8,
        "axis_neuron": 3, "attn1_hidden": 8, "attn1_nhead": 2, "attn2_hidden": 4,
        "attn2_nhead": 1, "attn2_has_gate": True, "update_h2": False, "update_style": "res_avg",
        "use_sqrt_nnei": True, "g1_out_conv": True, "g1_out_mlp": True,
        "activation_function": "silu", "set_davg_zero": False,
    },
    "precision": "float64", "add_tebd_to_repinit_out": True, "seed": 7,
}  # fmt: skip
LOSS = {"type": "ener", "start_pref_e": 0.1, "limit_pref_e": 1, "start_pref_f": 100,
        "limit_pref_f": 1}  # fmt: skip


def training_input() -> dict:
    def fitting(seed):
        return {"neuron": [12, 12, 12], "resnet_dt": False, "precision": "float64", "seed": seed}

    def data(systems):
        return {"training_data": {"systems": [os.path.join(SYSTEMS, s) for s in systems],
                                  "batch_size": 1}}  # fmt: skip

    return {
        "model": {
            "shared_dict": {"tm": TYPE_MAP, "d": DESCRIPTOR},
            "model_dict": {h: {"type_map": "tm", "descriptor": "d", "fitting_net": fitting(11 + k)}
                           for k, h in enumerate(HEADS)},
        },
        "learning_rate": {"type": "exp", "decay_steps": 1, "start_lr": 2e-3, "stop_lr": 1e-4},
        "loss_dict": {h: LOSS for h in HEADS},
        "training": {
            "numb_steps": 6, "seed": 3, "disp_freq": 6, "save_freq": 6,
            "model_prob": {"pbe_water": 0.4, "wb97_chno": 0.3, "cho_frag": 0.3},
            "data_dict": {h: data(s) for h, s in HEADS.items()},
        },
    }  # fmt: skip


def geometry(path: str, frame: int) -> dict:
    local = open(os.path.join(path, "type_map.raw")).read().split()
    types = np.loadtxt(os.path.join(path, "type.raw"), dtype=int).reshape(-1)
    out = {"coords": np.load(os.path.join(path, "set.000", "coord.npy"))[frame : frame + 1]
           .reshape(1, -1, 3).astype(np.float64),
           "atom_types": np.array([TYPE_MAP.index(local[t]) for t in types])}  # fmt: skip
    if not os.path.exists(os.path.join(path, "nopbc")):
        box = np.load(os.path.join(path, "set.000", "box.npy"))[frame : frame + 1]
        out["cells"] = box.reshape(1, 3, 3).astype(np.float64)
    return out


def main() -> None:
    import deepmd
    import torch
    from deepmd.infer import DeepPot

    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "input.json"), "w") as f:
            json.dump(training_input(), f, indent=1)
        command = dp(["train", "input.json", "--skip-neighbor-stat"], tmp)
        shutil.copyfile(os.path.realpath(os.path.join(tmp, "model.ckpt.pt")),
                        os.path.join(OUT, "per_head_tebd.ckpt.pt"))  # fmt: skip
    ckpt = os.path.join(OUT, "per_head_tebd.ckpt.pt")
    geoms = {"molecule": geometry(os.path.join(SYSTEMS, "chno_molecules", "H10C5N2O"), 2),
             "water": geometry(os.path.join(SYSTEMS, "water", "data_2"), 2)}  # fmt: skip
    rows = []
    for head in HEADS:
        pot = DeepPot(ckpt, head=head)
        for name, g in geoms.items():
            e, f, v, ae, _ = pot.eval(g["coords"], g.get("cells"), g["atom_types"], atomic=True)
            nat = len(g["atom_types"])
            np.savez(os.path.join(OUT, f"per_head_tebd__{head}__{name}.npz"), **g,
                     energy=np.reshape(e, (1,)), forces=np.reshape(f, (1, nat, 3)),
                     virial=np.reshape(v, (1, 3, 3)), atom_energy=np.reshape(ae, (1, nat)))  # fmt: skip
            rows.append(f"| {head} | {name} | {nat} | {float(np.ravel(e)[0]):.6f} |")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(f"""# A multi-task checkpoint with a descriptor variable per head

Generated by `scripts/make_pt_per_head_reference.py` (its docstring says what and why; do not
edit by hand): {date}, DeePMD-kit {deepmd.__version__}, torch {torch.__version__}, command
`{command}` in a temporary folder. `per_head_tebd.ckpt.pt` is the checkpoint after 6 steps;
each `per_head_tebd__<head>__<geometry>.npz` holds the inputs (`coords [1,nat,3]` A,
`cells [1,3,3]` for water, `atom_types [nat]` in H, C, N, O) and DeePMD-kit's `energy [1]`,
`forces [1,nat,3]`, `virial [1,3,3]`, `atom_energy [1,nat]` (`DeepPot(ckpt, head=HEAD)`;
molecule: chno_molecules/H10C5N2O frame 2, water: water/data_2 frame 2).

| head | geometry | atoms | energy (eV) |
| --- | --- | --- | --- |
""" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
