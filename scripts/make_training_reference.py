#!/usr/bin/env python
"""Reference values for training parity with DeePMD-kit 3.2.0's PyTorch backend.

The tiny model (configs/tiny.py; float64, or float32 with ``--precision float32``) with
dpa2_jax's initial parameters and DeePMD-style statistics from water_virial_384, converted to
DeePMD-kit's serialized form and loaded into its PyTorch backend; on frames 0..9 of
tests/systems/water_virial_384 (one frame per batch, energy, force and virial labels) it records

    loss0, metrics0/*   DeePMD's EnergyStdLoss of frame 0 at the first learning rate
    grad/*              its gradient with respect to every trainable parameter
    losses              the loss of each of 10 torch Adam steps (one frame each, in order)
    params10/*          the parameters after those 10 steps
    params0/*, lrs      the starting parameters and the learning rate of each step

Gradients and parameters are mapped back to dpa2_jax's tree by writing them into the torch
model and reading its ``serialize()`` with dpa2_jax's own reader. Run it where deepmd-kit 3.2.0
and torch are installed (torch is not a dependency of dpa2_jax, not even for tests):

    python -m venv /tmp/ptvenv && /tmp/ptvenv/bin/pip install torch==2.13.0 deepmd-kit==3.2.0 \
        mpich e3nn -e .
    /tmp/ptvenv/bin/python scripts/make_training_reference.py [--precision float32]

(training_tiny_float32.npz was made 2026-12-03 with torch 2.11.0 and deepmd-kit 3.2.0 in such a
venv, jax 0.10.2 taken from dpa2_jax's own venv through PYTHONPATH.)

The 3.2.0 wheel's operator library was built against torch 2.11 and refuses 2.13; DPA-2 needs
none of its operators, so this script hides the library (``SHARED_LIB_DIR``) before importing
``deepmd.pt``. Output: tests/reference/training_tiny.npz, or training_tiny_float32.npz for
``--precision float32`` (descriptor and fitting in float32 as DeePMD's ``"precision": "float32"``;
DeePMD-kit's inputs, labels and loss stay float64).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LOSS = {"start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_f": 1000.0, "limit_pref_f": 1.0,
        "start_pref_v": 0.02, "limit_pref_v": 1.0}  # fmt: skip
LEARNING_RATE = {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-5, "decay_steps": 3}
STEPS = 10


def flatten(tree, prefix: str) -> dict[str, np.ndarray]:
    import jax

    return {
        prefix + jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("float64", "float32"), default="float64")
    parser.add_argument("--out", help="default: tests/reference/training_tiny[_float32].npz")
    args = parser.parse_args()
    suffix = "" if args.precision == "float64" else "_float32"
    args.out = args.out or str(REPO / "tests" / "reference" / f"training_tiny{suffix}.npz")

    import jax

    jax.config.update("jax_enable_x64", True)
    from configs import tiny
    from dpa2_jax.data import read_npy_system
    from dpa2_jax.model.statistics import apply_statistics, compute_statistics
    from dpa2_jax.io.deepmd_config import model_config
    from dpa2_jax.io.deepmd_export import to_deepmd
    from dpa2_jax.io.deepmd_model import from_deepmd
    from dpa2_jax.model import init
    from dpa2_jax.train.schedules import LearningRateConfig, make_schedule

    model = tiny.get_config().model.to_dict()
    model["descriptor"]["precision"] = model["fitting_net"]["precision"] = args.precision
    cfg = model_config(model)
    system = read_npy_system(REPO / "tests" / "systems" / "water_virial_384", cfg.type_map)
    params = init(jax.random.key(0), cfg)
    params = apply_statistics(params, cfg, compute_statistics(cfg, [system], max_frames=5))
    params = jax.tree.map(np.asarray, params)
    lr_cfg = LearningRateConfig(**{k: v for k, v in LEARNING_RATE.items()})
    schedule = make_schedule(lr_cfg, STEPS)
    lrs = np.array([float(schedule(k)) for k in range(STEPS)])

    import deepmd.env

    deepmd.env.SHARED_LIB_DIR = pathlib.Path("/nonexistent")  # see the module docstring
    import torch
    from deepmd.pt.loss import EnergyStdLoss
    from deepmd.pt.model.model import BaseModel

    torch.set_default_dtype(torch.float64)
    model = BaseModel.deserialize(to_deepmd(cfg, params))
    loss_fn = EnergyStdLoss(starter_learning_rate=lrs[0], **LOSS)
    natoms = system.natoms

    def batch(k):
        inputs = {
            "coord": torch.tensor(system.coords[k : k + 1]),
            "atype": torch.tensor(system.atom_types[None].astype(np.int64)),
            "box": torch.tensor(system.cells[k : k + 1].reshape(1, 9)),
        }
        label = {
            "energy": torch.tensor(system.energies[k : k + 1].reshape(1, 1)),
            "force": torch.tensor(system.forces[k : k + 1]),
            "virial": torch.tensor(system.virials[k : k + 1].reshape(1, 9)),
            "find_energy": 1.0, "find_force": 1.0, "find_virial": 1.0,
        }  # fmt: skip
        return inputs, label

    def as_tree(m):
        return from_deepmd(m.serialize())[1]

    # 1. loss and gradient of frame 0
    probe = copy.deepcopy(model)
    _, loss0, more = loss_fn(*batch(0)[:1], probe, batch(0)[1], natoms, lrs[0])
    loss0.backward()
    with torch.no_grad():
        for p in probe.parameters():
            p.copy_(p.grad if p.grad is not None else torch.zeros_like(p))
    grads = as_tree(probe)

    # 2. ten Adam steps
    opt = torch.optim.Adam(model.parameters(), lr=lrs[0])
    losses = []
    for k in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = lrs[k]
        opt.zero_grad()
        inputs, label = batch(k)
        _, loss, _ = loss_fn(inputs, model, label, natoms, lrs[k])
        loss.backward()
        opt.step()
        losses.append(float(loss))

    out = {
        "loss0": np.array(float(loss0)),
        "losses": np.array(losses),
        "lrs": lrs,
        **{f"metrics0/{k}": np.array(float(v)) for k, v in more.items()},
        **flatten(params, "params0"),
        **flatten(grads, "grad"),
        **flatten(as_tree(model), "params10"),
    }
    np.savez(args.out, **out)
    stamp = datetime.date.today().isoformat()
    print(f"wrote {args.out} ({len(out)} arrays; torch {torch.__version__}, {stamp})")


if __name__ == "__main__":
    main()
