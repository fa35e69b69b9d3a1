"""Makes tiny DeePMD-kit PyTorch training checkpoints and DeePMD-kit's numbers on them.

    /work/torchenv/bin/python scripts/make_pt_checkpoint_reference.py   # from the repo root

Needs DeePMD-kit 3.2 with its PyTorch backend (``dp --pt``; its descriptors import e3nn, so
``pip install deepmd-kit torch e3nn``); dpa2_jax itself never needs them.
Writes into tests/reference/pt_checkpoints/:

* ``multitask_dpa2.ckpt.pt``: a two-head multi-task DPA-2 (heads ``water`` and ``cho``, the
  latter also called ``CHO_molecules``; shared descriptor and type map) after a few
  ``dp --pt train`` steps;
* ``se_e2_a.ckpt.pt``: a single-task se_e2_a energy model trained likewise, with one frame
  parameter (``numb_fparam``) so the checkpoint carries fparam statistics;
* ``se_e2_a.pth``, ``multitask_dpa2_cho.pth``: the latter, and the ``cho`` head of the
  former, frozen by ``dp --pt freeze`` (TorchScript);
* ``<checkpoint stem>__<head>__<geometry>.npz``: DeePMD-kit's energy, forces, virial and atomic
  energies (``deepmd.infer.DeepPot`` on the checkpoint, float64) with the inputs;
* README.md: provenance (date, versions, commands).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "reference", "pt_checkpoints")
SYSTEMS = os.path.join(ROOT, "tests", "systems")
TYPE_MAP = ["O", "H", "C"]
STEPS = 4

DPA2 = {
    "type": "dpa2",
    "repinit": {
        "rcut": 4.0, "rcut_smth": 0.5, "nsel": 40, "neuron": [4, 8], "axis_neuron": 3,
        "tebd_dim": 4, "activation_function": "tanh", "use_three_body": True,
        "three_body_neuron": [2, 4], "three_body_sel": 20, "three_body_rcut": 3.0,
        "three_body_rcut_smth": 2.5,
    },
    "repformer": {
        "rcut": 3.0, "rcut_smth": 2.5, "nsel": 24, "nlayers": 2, "g1_dim": 8, "g2_dim": 6,
        "axis_neuron": 2, "attn1_hidden": 6, "attn1_nhead": 2, "attn2_hidden": 6,
        "attn2_nhead": 2, "update_h2": True, "update_style": "res_residual",
        "update_residual": 0.01, "update_residual_init": "norm",
    },
    "precision": "float64", "add_tebd_to_repinit_out": False, "seed": 1,
}  # fmt: skip
SE_E2_A = {
    "type": "se_e2_a", "sel": [20, 40], "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8],
    "axis_neuron": 4, "precision": "float64", "seed": 1,
}  # fmt: skip
LOSS = {
    "type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
    "limit_pref_f": 1,
}  # fmt: skip
LEARNING_RATE = {"type": "exp", "decay_steps": 2, "start_lr": 1e-3, "stop_lr": 1e-4}
TRAINING = {"numb_steps": STEPS, "seed": 1, "disp_freq": STEPS, "save_freq": STEPS}


def fitting(seed: int, **extra) -> dict:
    return {"neuron": [8, 8], "resnet_dt": True, "precision": "float64", "seed": seed, **extra}


def data(*systems: str) -> dict:
    return {"systems": [os.path.join(SYSTEMS, s) for s in systems], "batch_size": 1}


def multitask_input() -> dict:
    return {
        "model": {
            "shared_dict": {"type_map_all": TYPE_MAP, "dpa2_descriptor": DPA2},
            "model_dict": {
                "water": {"type_map": "type_map_all", "descriptor": "dpa2_descriptor",
                          "fitting_net": fitting(2)},
                "cho": {"type_map": "type_map_all", "descriptor": "dpa2_descriptor",
                        "fitting_net": fitting(3), "model_branch_alias": ["CHO_molecules"]},
            },
        },
        "learning_rate": LEARNING_RATE,
        "loss_dict": {"water": LOSS, "cho": LOSS},
        "training": {
            **TRAINING,
            "model_prob": {"water": 0.5, "cho": 0.5},
            "data_dict": {
                "water": {"training_data": data("water/data_0")},
                "cho": {"training_data": data("cho_molecules/C3H3O4")},
            },
        },
    }  # fmt: skip


def se_e2_a_input(systems: list[str]) -> dict:
    return {
        "model": {"type_map": ["O", "H"], "descriptor": SE_E2_A,
                  "fitting_net": fitting(2, numb_fparam=1)},
        "learning_rate": LEARNING_RATE,
        "loss": LOSS,
        "training": {**TRAINING, "training_data": {"systems": systems, "batch_size": 1}},
    }  # fmt: skip


def water_with_fparam(tmp: str) -> str:
    """tests/systems/water/data_0 with an fparam.npy (a made-up electronic temperature)."""
    dst = os.path.join(tmp, "water_fparam")
    shutil.copytree(os.path.join(SYSTEMS, "water", "data_0"), dst)
    nframes = np.load(os.path.join(dst, "set.000", "energy.npy")).shape[0]
    fparam = np.linspace(0.5, 1.5, nframes).reshape(nframes, 1)
    np.save(os.path.join(dst, "set.000", "fparam.npy"), fparam)
    return dst


def dp(args: list[str], cwd: str) -> str:
    cmd = [os.path.join(os.path.dirname(sys.executable), "dp"), "--pt", *args]
    print("$", " ".join(cmd[1:]), f"(in {cwd})", flush=True)
    subprocess.run(cmd, cwd=cwd, check=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    return " ".join(["dp", "--pt", *args])


def train(name: str, config: dict, tmp: str) -> tuple[str, str]:
    """Trains in tmp/name; copies the last checkpoint to OUT/<name>.ckpt.pt."""
    work = os.path.join(tmp, name)
    os.makedirs(work)
    with open(os.path.join(work, "input.json"), "w") as f:
        json.dump(config, f, indent=1)
    command = dp(["train", "input.json", "--skip-neighbor-stat"], work)
    ckpt = os.path.realpath(os.path.join(work, "model.ckpt.pt"))
    dst = os.path.join(OUT, f"{name}.ckpt.pt")
    shutil.copyfile(ckpt, dst)
    text = json.dumps(config, indent=1).replace(ROOT + os.sep, "").replace(tmp + os.sep, "")
    with open(os.path.join(OUT, f"{name}.input.json"), "w") as f:  # paths relative to the repo
        f.write(text + "\n")
    return dst, command


def geometries() -> dict[str, dict]:
    """name -> coords [1,nat,3], cells [1,3,3] or None, atom_types [nat] (in TYPE_MAP)."""
    water = os.path.join(SYSTEMS, "water", "data_0")
    mol = os.path.join(SYSTEMS, "cho_molecules", "C3H3O4")
    out = {}
    for name, path in (("water", water), ("molecule", mol)):
        local = open(os.path.join(path, "type_map.raw")).read().split()
        types = np.loadtxt(os.path.join(path, "type.raw"), dtype=int).reshape(-1)
        coords = np.load(os.path.join(path, "set.000", "coord.npy"))[:1].astype(np.float64)
        box = os.path.join(path, "set.000", "box.npy")
        pbc = not os.path.exists(os.path.join(path, "nopbc")) and os.path.exists(box)
        out[name] = {
            "coords": coords.reshape(1, -1, 3),
            "cells": np.load(box)[:1].reshape(1, 3, 3).astype(np.float64) if pbc else None,
            "symbols": [local[t] for t in types],
        }
    return out


def evaluate(ckpt: str, head: str | None, type_map: list[str], geometry: dict, fparam) -> dict:
    from deepmd.infer import DeepPot

    pot = DeepPot(ckpt, head=head) if head else DeepPot(ckpt)
    assert pot.get_type_map() == type_map, (pot.get_type_map(), type_map)
    types = np.array([type_map.index(s) for s in geometry["symbols"]])
    e, f, v, ae, _ = pot.eval(geometry["coords"], geometry["cells"], types, atomic=True,
                              fparam=fparam)  # fmt: skip
    nat = len(types)
    result = {
        "coords": geometry["coords"], "atom_types": types, "type_map": np.array(type_map),
        "energy": np.reshape(e, (1,)), "forces": np.reshape(f, (1, nat, 3)),
        "virial": np.reshape(v, (1, 3, 3)), "atom_energy": np.reshape(ae, (1, nat)),
        "pbc": geometry["cells"] is not None,
    }  # fmt: skip
    if geometry["cells"] is not None:
        result["cells"] = geometry["cells"]
    if fparam is not None:
        result["fparam"] = np.reshape(fparam, (1, -1))
    return result


def main() -> None:
    import deepmd
    import torch

    os.makedirs(OUT, exist_ok=True)
    rows, commands = [], []
    with tempfile.TemporaryDirectory() as tmp:
        multi, cmd = train("multitask_dpa2", multitask_input(), tmp)
        commands.append(cmd)
        single, cmd = train("se_e2_a", se_e2_a_input([water_with_fparam(tmp)]), tmp)
        commands.append(cmd)
        commands.append(dp(["freeze", "-c", os.path.basename(single), "-o", "se_e2_a.pth"],
                           OUT))  # fmt: skip
        commands.append(dp(["freeze", "-c", os.path.basename(multi), "--head", "cho", "-o",
                            "multitask_dpa2_cho.pth"], OUT))  # fmt: skip
    geoms = geometries()
    cases = [(multi, "water", TYPE_MAP, g, None) for g in geoms]
    cases += [(multi, "cho", TYPE_MAP, g, None) for g in geoms]
    cases += [(single, None, ["O", "H"], "water", np.array([[0.8]]))]
    for ckpt, head, type_map, gname, fparam in cases:
        res = evaluate(ckpt, head, type_map, geoms[gname], fparam)
        stem = os.path.basename(ckpt)[: -len(".ckpt.pt")]
        name = f"{stem}__{head or 'default'}__{gname}.npz"
        np.savez(os.path.join(OUT, name), **res)
        rows.append(f"| {name} | {len(res['atom_types'])} | {res['energy'][0]:.6f} |")
    write_readme(rows, commands, deepmd.__version__, torch.__version__)


def write_readme(rows: list[str], commands: list[str], dp_version: str, torch_version: str):
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sizes = "\n".join(
        f"* `{n}`: {os.path.getsize(os.path.join(OUT, n)) // 1024} KiB"
        for n in sorted(os.listdir(OUT)) if n.endswith((".pt", ".pth"))
    )  # fmt: skip
    text = f"""# DeePMD-kit PyTorch checkpoints and DeePMD-kit's numbers on them

Generated by `scripts/make_pt_checkpoint_reference.py` (do not edit by hand):

```
/work/torchenv/bin/python scripts/make_pt_checkpoint_reference.py   # repo root; needs dp --pt
```

* date: {date}
* DeePMD-kit {dp_version}, torch {torch_version}, numpy {np.__version__}, Python \
{platform.python_version()}, CPU
* training: {STEPS} steps of `dp --pt train` from random initialisation (seed 1), on
  `tests/systems/water/data_0` (head `water`; se_e2_a with a made-up fparam column
  `linspace(0.5, 1.5)` over its frames) and `tests/systems/cho_molecules/C3H3O4` (head `cho`);
  the inputs are kept as `<name>.input.json` (system paths relative to the repository root;
  `water_fparam` is the copy with fparam.npy, made in the build folder)
* commands (training in a temporary folder, freezing in tests/reference/pt_checkpoints/):
{chr(10).join(f"  * `{c}`" for c in commands)}
* numbers: `deepmd.infer.DeepPot(CHECKPOINT, head=HEAD).eval(coords, cells, atom_types,
  atomic=True, fparam=...)` on the first frame of each geometry, float64 models

{sizes}

Each `<checkpoint>__<head>__<geometry>.npz` holds `coords [1,nat,3]` (A), `cells [1,3,3]`
(rows = lattice vectors; absent without PBC), `atom_types [nat]` (indices into `type_map`),
`type_map`, `energy [1]` (eV), `forces [1,nat,3]` (eV/A), `virial [1,3,3]` (eV, DeePMD's
convention), `atom_energy [1,nat]`, `pbc`, and `fparam [1,1]` where the model takes one.
Geometries: `water` = tests/systems/water/data_0 frame 0 (192 atoms, periodic), `molecule` =
tests/systems/cho_molecules/C3H3O4 frame 0 (10 atoms, no PBC).

| file | atoms | energy (eV) |
| --- | --- | --- |
{chr(10).join(rows)}
"""
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
