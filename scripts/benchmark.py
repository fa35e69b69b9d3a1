"""Benchmarks of dpa2_jax; prints one JSON dict {case name: results} to stdout.

Usage: python scripts/benchmark.py [--cases neighbor_list_100k ...] [--repeats 3]
       python scripts/benchmark.py --suite device [--quick]   (a table; scripts/benchmark_device.py)

Reference figures: ../shared/BENCHMARKS.md. To add a case, write a function taking the parsed
arguments and returning a JSON-serialisable dict, and register it in CASES.
"""

import argparse
import contextlib
import importlib
import json
import pathlib
import statistics
import subprocess
import sys
import time
from typing import Callable

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import benchmark_device  # noqa: E402  (scripts/, beside this file)
from dpa2_jax.graph import neighbor_list  # noqa: E402

WATER = REPO / "tests" / "systems" / "water" / "data_0"


def tiled_water(n_target: int, at_least: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The bundled 192-atom water frame tiled k x k x k times, k chosen to reach ~n_target atoms;
    with ``at_least``, the fewest tiles (k, k, k), (k, k, k + 1), ... holding n_target atoms.

    Returns:
        positions [n_atom, 3] and cell [3, 3], Angstrom.
    """
    cell = np.load(WATER / "set.000" / "box.npy")[0].reshape(3, 3).astype(np.float64)
    coords = np.load(WATER / "set.000" / "coord.npy")[0].reshape(-1, 3).astype(np.float64)
    k = max(1, round((n_target / len(coords)) ** (1 / 3)))
    reps = [k, k, k]
    if at_least:
        reps = [max(1, int((n_target / len(coords)) ** (1 / 3) + 1e-9))] * 3
        while np.prod(reps) * len(coords) < n_target:
            reps[max(j for j in range(3) if reps[j] == min(reps))] += 1  # last smallest
    images = np.stack(np.meshgrid(*[np.arange(r) for r in reps], indexing="ij"), -1).reshape(-1, 3)
    positions = (coords[None] + (images @ cell)[:, None]).reshape(-1, 3)  # [prod(reps) * 192, 3]
    return positions, cell * np.asarray(reps, np.float64)[:, None]


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float], object]:
    """Median wall time of `repeats` calls of fn (seconds), all times, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def neighbor_list_100k(args: argparse.Namespace) -> dict:
    """neighbor_list(rcut 6, sel 120) on ~100,000 atoms of periodic water (8x8x8 tiles)."""
    positions, cell = tiled_water(100_000)
    median, times, nlist = timed(lambda: neighbor_list(positions, cell, 6.0, 120), args.repeats)
    return {
        "atoms": int(len(positions)),
        "rcut": 6.0,
        "sel": 120,
        "edges": nlist.n_edge,
        "max_neighbors": nlist.max_neighbors,
        "seconds_median": round(median, 4),
        "seconds_all": [round(t, 4) for t in times],
    }


def _model(name: str, precision: str):
    """(ModelConfig, params) of configs/<name>.py with random parameters."""
    import jax

    sys.path.insert(0, str(REPO))
    import importlib

    from dpa2_jax.io.deepmd_config import model_config
    from dpa2_jax.model import init

    section = importlib.import_module(f"configs.{name}").get_config().model
    section["descriptor"]["precision"] = precision
    section["fitting_net"]["precision"] = precision
    cfg = model_config(section)
    jax.config.update("jax_enable_x64", precision == "float64")
    return cfg, init(jax.random.key(0), cfg)


def init_time(model: str, repeats: int) -> dict:
    """``dpa2_jax.model.init`` of configs/<model>.py (float64): the first call in a fresh
    process and the median of later ones, seconds."""
    import jax

    from dpa2_jax.io.deepmd_config import model_config
    from dpa2_jax.model import init

    jax.config.update("jax_enable_x64", True)
    cfg = model_config(importlib.import_module(f"configs.{model}").get_config().model)
    start = time.perf_counter()
    params = jax.block_until_ready(init(jax.random.key(0), cfg))
    first = time.perf_counter() - start
    median, times, _ = timed(lambda: jax.block_until_ready(init(jax.random.key(1), cfg)), repeats)
    n = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    return {
        "parameters": n,
        "first_call_seconds": round(first, 3),
        "seconds_median": round(median, 3),
        "seconds_all": [round(t, 3) for t in times],
    }


FIRST_CALL_CHILD = """
import sys, time
start = time.perf_counter()
import numpy as np
import dpa2_jax
pot = dpa2_jax.load(sys.argv[1])
imported = time.perf_counter() - start
out = {"import_and_load_seconds": round(imported, 3)}
water = np.load(sys.argv[2])
for name, coord, cell, types in (
    ("molecule_3_atoms", [[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]], None, "OHH"),
    ("water_192_atoms", water["coord"], water["cell"], water["types"]),
):
    start = time.perf_counter()
    pot.evaluate(coord, cell, list(types) if isinstance(types, str) else types)
    out[name] = round(time.perf_counter() - start, 3)
print(out)
"""


def first_call(model: str, repeats: int) -> dict:
    """Seconds of a new process's first ``Potential.evaluate`` of a 3-atom molecule and of a
    192-atom water frame (configs/<model>.py, float64): with an empty persistent compilation
    cache (cold), then in a second process with the cache the first one wrote (warm)."""
    import ast
    import os
    import tempfile

    import jax

    from dpa2_jax.io.convert import model_def_script
    from dpa2_jax.io.deepmd_export import to_deepmd
    from dpa2_jax.io.dp_format import write_dp

    cfg, params = _model(model, "float64")
    positions, cell = tiled_water(192)
    types = np.loadtxt(WATER / "type.raw", dtype=int)
    with tempfile.TemporaryDirectory() as tmp:
        model_file, water = os.path.join(tmp, "model.dp"), os.path.join(tmp, "water.npz")
        write_dp(model_file, {"model": to_deepmd(cfg, jax.tree.map(np.asarray, params)),
                              "model_def_script": model_def_script(cfg)})  # fmt: skip
        np.savez(water, coord=positions[None], cell=cell[None], types=types)
        env = {**os.environ, "DPA2_JAX_CACHE_DIR": os.path.join(tmp, "xla")}
        runs = {}
        for name in ("cold", "warm"):
            done = subprocess.run(
                [sys.executable, "-c", FIRST_CALL_CHILD, model_file, water],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            runs[name] = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    return runs


def _peak_rss_gb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)


def _cost(compiled) -> dict:
    """XLA's cost analysis of a compiled program: bytes of memory traffic and flops per call
    (deterministic, unlike timings on a shared machine)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {"bytes_accessed": int(cost.get("bytes accessed", 0)),
            "flops": int(cost.get("flops", 0))}  # fmt: skip


def _peak_device_gb() -> float | None:
    """Peak bytes the default device held in this process (GPU, TPU), GB; None where the
    device does not count them (CPU: see peak_rss_gb)."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}  # None on CPU
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else round(peak / 1e9, 3)


def inference(model: str, precision: str, n_atoms: int, repeats: int, built=None) -> dict:
    """Energy + forces of tiled water with dpa2_jax: the jitted call on a prepared padded graph
    (what an MD step costs), and Potential.evaluate end to end (host neighbor list included).
    ``built``: (config, params) to time instead of configs/<model>.py's random model."""
    import jax

    from dpa2_jax.graph import batch_graphs, frame_to_graph
    from dpa2_jax.model.compiled import compiled_forces_fn
    from dpa2_jax.model.potential import Potential

    cfg, params = built or _model(model, precision)
    pot = Potential(cfg, params)
    positions, cell = tiled_water(n_atoms)
    types = np.tile(np.loadtxt(WATER / "type.raw", dtype=int), len(positions) // 192)
    unpadded = batch_graphs([frame_to_graph(positions, types, cell, cfg.descriptor.rcut,
                                            cfg.descriptor.sel, dtype=pot.dtype)])  # fmt: skip
    layout = pot.layout([unpadded])  # as Potential.evaluate lays them out
    graph = pot.padder(unpadded, n_graph=2)
    start = time.perf_counter()
    forces_fn = compiled_forces_fn(cfg, "default", layout).lower(pot.params, graph).compile()

    def step():
        return jax.block_until_ready(forces_fn(pot.params, graph))

    step()
    compile_s = time.perf_counter() - start
    device, times, _ = timed(step, repeats)
    end_to_end, _, _ = timed(lambda: pot.evaluate(positions[None], cell[None], types), repeats)
    return {
        "atoms": len(positions),
        "seconds_per_frame": round(device, 4),
        "seconds_all": [round(t, 4) for t in times],
        "us_per_atom": round(device / len(positions) * 1e6, 2),
        "slots_three_body_repformer_repinit": list(layout.slots or ()),
        "evaluate_seconds_per_frame": round(end_to_end, 4),
        "compile_seconds": round(compile_s, 2),
        **_cost(forces_fn),
        "peak_rss_gb": _peak_rss_gb(),
        "peak_device_gb": _peak_device_gb(),
    }


def student(precision: str, compressed: bool, repeats: int) -> dict:
    """``inference`` of the distillation student (configs/distill_water.py: se_e2_a [10, 20, 40]
    / axis 8, fitting [120] x 3) on 192-atom water: random nets with the water data's
    environment statistics, and with ``compressed`` its embedding nets tabulated as
    ``dp compress`` does (stride 0.01 / 0.1, extrapolate 5), plus the largest energy and force
    differences from the plain model on that frame."""
    import jax

    from dpa2_jax.data import read_npy_system
    from dpa2_jax.model.statistics import apply_statistics, compute_statistics
    from dpa2_jax.descriptor.se_e2_a.tabulate import compress
    from dpa2_jax.graph.neighbors import min_neighbor_distance
    from dpa2_jax.io.deepmd_config import model_config
    from dpa2_jax.model import init
    from dpa2_jax.model.potential import Potential

    section = importlib.import_module("configs.distill_water").get_config().student.model
    section["descriptor"]["precision"] = precision
    section["fitting_net"]["precision"] = precision
    cfg = model_config(section)
    jax.config.update("jax_enable_x64", precision == "float64")
    system = read_npy_system(WATER, type_map=list(cfg.type_map))
    params = apply_statistics(init(jax.random.key(0), cfg), cfg, compute_statistics(cfg, [system]))
    if not compressed:
        return inference("", precision, 192, repeats, built=(cfg, params))
    frames = [(system.coords[f], system.atom_types, system.cells[f]) for f in range(system.nframes)]
    min_dist = min_neighbor_distance(frames, cfg.descriptor.rcut)
    tabulated = {**params, "descriptor": compress(params["descriptor"], cfg.descriptor, min_dist)}
    result = inference("", precision, 192, repeats, built=(cfg, tabulated))
    args = (system.coords[:1], system.cells[:1], system.atom_types)
    plain, tab = Potential(cfg, params).evaluate(*args), Potential(cfg, tabulated).evaluate(*args)
    result["max_abs_energy_diff_ev"] = float(np.abs(tab["energy"] - plain["energy"]).max())
    result["max_abs_force_diff_ev_per_a"] = float(np.abs(tab["forces"] - plain["forces"]).max())
    result["table_intervals"] = [
        len(tb["coef"]) for tb in tabulated["descriptor"]["block"]["tables"]
    ]
    return result


def train_step(model: str, precision: str, repeats: int) -> dict:
    """One optimizer step (energy + forces loss, its gradient, Adam) of configs/<model>.py on one
    192-atom water frame (batch 1, DeePMD's water_small loss prefactors), after compilation,
    compiled with the options ``dpa2-jax train`` uses; with XLA's bytes and flops per step."""
    import jax

    from dpa2_jax.data.dataset import read_systems
    from dpa2_jax.graph.dataset import Dataset
    from dpa2_jax.model.jax_setup import compiler_options
    from dpa2_jax.train.loop import training_layout
    from dpa2_jax.train.loss import EnergyLossConfig
    from dpa2_jax.train.optimizer import make_optimizer
    from dpa2_jax.train.schedules import LearningRateConfig, make_schedule
    from dpa2_jax.train.state import create_state
    from dpa2_jax.train.step import make_train_step

    cfg, params = _model(model, precision)
    dtype = np.float64 if precision == "float64" else np.float32
    systems = read_systems([WATER], cfg.type_map)
    data = Dataset(systems, cfg.descriptor.rcut, cfg.descriptor.sel, 1, dtype=dtype)
    schedule = make_schedule(LearningRateConfig(start_lr=1e-3, stop_lr=3.51e-8), 1_000_000)
    optimizer = make_optimizer()
    loss = EnergyLossConfig(start_pref_e=0.02, limit_pref_e=1, start_pref_f=1000, limit_pref_f=1)
    state = create_state(params, optimizer)
    layout = training_layout(cfg, state.params, [data])  # as dpa2-jax train lays slots out
    rng = np.random.default_rng(0)
    batches = [data.sample(rng)[1] for _ in range(repeats + 1)]
    start = time.perf_counter()
    step = jax.jit(make_train_step(cfg, None, loss, optimizer, schedule, layout),
                   compiler_options=compiler_options())  # as dpa2-jax train compiles it
    step = step.lower(state, batches[0]).compile()
    state, _ = jax.block_until_ready(step(state, batches[0]))
    compile_s = time.perf_counter() - start
    times = []
    for batch in batches[1:]:
        start = time.perf_counter()
        state, _ = jax.block_until_ready(step(state, batch))
        times.append(time.perf_counter() - start)
    return {
        "seconds_per_step": round(statistics.median(times), 4),
        "seconds_all": [round(t, 4) for t in times],
        "compile_seconds": round(compile_s, 2),
        "slots_three_body_repformer_repinit": list(layout.slots or ()),
        **_cost(step),
        "peak_rss_gb": _peak_rss_gb(),
        "peak_device_gb": _peak_device_gb(),
        "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
    }


def parallel_train_step(model: str, precision: str, n_devices: int, repeats: int) -> dict:
    """Data-parallel training (train/parallel.py) of configs/<model>.py on ``n_devices`` forced
    CPU devices, one 192-atom water frame per device per step: frames/s and atoms/s after
    compilation. Must run in a fresh process (run_isolated): the device count is set before
    JAX starts. The devices share this machine's cores, so this measures the overhead of the
    data-parallel step, not a speed-up."""
    import jax

    jax.config.update("jax_num_cpu_devices", n_devices)
    from dpa2_jax.data.dataset import read_systems
    from dpa2_jax.graph.dataset import Dataset
    from dpa2_jax.train import parallel
    from dpa2_jax.train.loop import training_layout
    from dpa2_jax.train.loss import EnergyLossConfig
    from dpa2_jax.train.optimizer import make_optimizer
    from dpa2_jax.train.schedules import LearningRateConfig, make_schedule
    from dpa2_jax.train.state import create_state

    cfg, params = _model(model, precision)
    assert jax.device_count() == n_devices, jax.devices()
    dtype = np.float64 if precision == "float64" else np.float32
    data = Dataset(read_systems([WATER], cfg.type_map), cfg.descriptor.rcut, cfg.descriptor.sel,
                   1, dtype=dtype)  # fmt: skip
    schedule = make_schedule(LearningRateConfig(start_lr=1e-3, stop_lr=3.51e-8), 1_000_000)
    optimizer = make_optimizer()
    loss = EnergyLossConfig(start_pref_e=0.02, limit_pref_e=1, start_pref_f=1000, limit_pref_f=1)
    layout = training_layout(cfg, params, [data])
    mesh = parallel.make_mesh()
    step = parallel.make_parallel_train_step(mesh, cfg, None, loss, optimizer, schedule,
                                             layout)  # fmt: skip
    state = parallel.replicate(mesh, create_state(params, optimizer))
    rng = np.random.default_rng(0)
    batches = [parallel.shard_batch(mesh, parallel.sample_device_batches(data, rng, mesh)[1])
               for _ in range(repeats + 1)]  # fmt: skip
    start = time.perf_counter()
    state, _ = jax.block_until_ready(step(state, batches[0]))
    compile_s = time.perf_counter() - start
    times = []
    for batch in batches[1:]:
        start = time.perf_counter()
        state, _ = jax.block_until_ready(step(state, batch))
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "devices": n_devices,
        "seconds_per_step": round(seconds, 4),
        "frames_per_second": round(n_devices / seconds, 3),
        "atoms_per_second": round(192 * n_devices / seconds, 1),
        "compile_seconds": round(compile_s, 2),
    }


def parallel_train(model: str, precision: str, repeats: int) -> dict:
    """``parallel_train_step`` on 1, 2 and 4 CPU devices, each in its own process."""
    return {
        f"{n}_devices": run_isolated(f"parallel_train_{model}_{precision}_{n}dev", repeats)
        for n in (1, 2, 4)
    }


def reference_train_step(model: str, repeats: int) -> dict:
    """The same optimizer step in DeePMD-kit 3.2.0's PyTorch backend (float64): its model
    deserialised from ours, its EnergyStdLoss, torch Adam; one 192-atom water frame per step.
    Needs torch (see scripts/make_training_reference.py for the environment)."""
    import pathlib as _pathlib

    import deepmd.env

    deepmd.env.SHARED_LIB_DIR = _pathlib.Path("/nonexistent")  # the 3.2.0 wheel's op library
    import jax
    import torch
    from deepmd.pt.loss import EnergyStdLoss
    from deepmd.pt.model.model import BaseModel

    from dpa2_jax.data import read_npy_system
    from dpa2_jax.io.deepmd_export import to_deepmd

    cfg, params = _model(model, "float64")
    torch.set_default_dtype(torch.float64)
    pt_model = BaseModel.deserialize(to_deepmd(cfg, jax.tree.map(np.asarray, params)))
    loss_fn = EnergyStdLoss(starter_learning_rate=1e-3, start_pref_e=0.02, limit_pref_e=1,
                            start_pref_f=1000, limit_pref_f=1)  # fmt: skip
    opt = torch.optim.Adam(pt_model.parameters(), lr=1e-3)
    system = read_npy_system(WATER, cfg.type_map)

    def step(k):
        inputs = {
            "coord": torch.tensor(system.coords[k : k + 1]),
            "atype": torch.tensor(system.atom_types[None].astype(np.int64)),
            "box": torch.tensor(system.cells[k : k + 1].reshape(1, 9)),
        }
        label = {"energy": torch.tensor(system.energies[k : k + 1].reshape(1, 1)),
                 "force": torch.tensor(system.forces[k : k + 1]),
                 "find_energy": 1.0, "find_force": 1.0}  # fmt: skip
        opt.zero_grad()
        _, loss, _ = loss_fn(inputs, pt_model, label, system.natoms, 1e-3)
        loss.backward()
        opt.step()

    step(0)
    times = []
    for k in range(1, repeats + 1):
        start = time.perf_counter()
        step(k)
        times.append(time.perf_counter() - start)
    return {
        "seconds_per_step": round(statistics.median(times), 4),
        "seconds_all": [round(t, 4) for t in times],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_gb": _peak_rss_gb(),
    }


def reference_inference(model: str, n_atoms: int, repeats: int) -> dict:
    """The same model and frame in DeePMD-kit 3.2.0's JAX backend through its JAX-MD interface
    (jit of value_and_grad with a dense JAX-MD neighbor list), float64."""
    import deepmd.jax.model  # noqa: F401  (registers the model types)
    import jax
    import jax.numpy as jnp
    from deepmd.jax.jax_md import as_jax_md
    from deepmd.jax.model.base_model import BaseModel
    from jax_md import space

    from dpa2_jax.io.deepmd_export import to_deepmd

    cfg, params = _model(model, "float64")
    jax_model = BaseModel.deserialize(to_deepmd(cfg, jax.tree.map(np.asarray, params)))
    positions, cell = tiled_water(n_atoms)
    types = np.tile(np.loadtxt(WATER / "type.raw", dtype=int), len(positions) // 192)
    side = jnp.asarray(np.diag(cell))
    displacement, _ = space.periodic(side)
    neighbor_fn, energy_fn = as_jax_md(jax_model, displacement, side, types)
    R = jnp.asarray(positions)
    nbrs = neighbor_fn.allocate(R)
    step = jax.jit(jax.value_and_grad(lambda R, nbrs: energy_fn(R, neighbor=nbrs)))
    start = time.perf_counter()
    jax.block_until_ready(step(R, nbrs))
    compile_s = time.perf_counter() - start
    median, times, _ = timed(lambda: jax.block_until_ready(step(R, nbrs)), repeats)
    return {
        "atoms": len(positions),
        "seconds_per_frame": round(median, 4),
        "seconds_all": [round(t, 4) for t in times],
        "compile_seconds": round(compile_s, 2),
        "peak_rss_gb": _peak_rss_gb(),
    }


def compare(model: str, repeats: int) -> dict:
    """dpa2_jax and DeePMD-kit (JAX backend, JAX-MD interface) on the same 192-atom frame and
    model, float64, timed alternately in one process so that machine noise hits both alike."""
    import deepmd.jax.model  # noqa: F401  (registers the model types)
    import jax
    import jax.numpy as jnp
    from deepmd.jax.jax_md import as_jax_md
    from deepmd.jax.model.base_model import BaseModel
    from jax_md import space

    from dpa2_jax.graph import batch_graphs, frame_to_graph
    from dpa2_jax.io.deepmd_export import to_deepmd
    from dpa2_jax.model.compiled import compiled_forces_fn
    from dpa2_jax.model.potential import Potential

    cfg, params = _model(model, "float64")
    pot = Potential(cfg, params)
    positions, cell = tiled_water(192)
    types = np.loadtxt(WATER / "type.raw", dtype=int)
    unpadded = batch_graphs([frame_to_graph(positions, types, cell, cfg.descriptor.rcut,
                                            cfg.descriptor.sel)])  # fmt: skip
    graph = pot.padder(unpadded, n_graph=2)
    forces_fn = compiled_forces_fn(cfg, "default", pot.layout([unpadded]))
    jax_model = BaseModel.deserialize(to_deepmd(cfg, jax.tree.map(np.asarray, params)))
    side = jnp.asarray(np.diag(cell))
    neighbor_fn, energy_fn = as_jax_md(jax_model, space.periodic(side)[0], side, types)
    R = jnp.asarray(positions)
    nbrs = neighbor_fn.allocate(R)
    ref_step = jax.jit(jax.value_and_grad(lambda R, nbrs: energy_fn(R, neighbor=nbrs)))

    def ours():
        return jax.block_until_ready(forces_fn(pot.params, graph))

    def theirs():
        return jax.block_until_ready(ref_step(R, nbrs))

    e_ours, e_ref = float(ours()["energy"][0]), float(theirs()[0])
    t_ours, t_ref = [], []
    for _ in range(repeats):
        t_ours.append(timed(ours, 1)[0])
        t_ref.append(timed(theirs, 1)[0])
    m_ours, m_ref = statistics.median(t_ours), statistics.median(t_ref)
    return {
        "dpa2_jax_seconds_per_frame": round(m_ours, 4),
        "deepmd_jax_seconds_per_frame": round(m_ref, 4),
        "speedup": round(m_ref / m_ours, 2),
        "energy_difference_eV": abs(e_ours - e_ref),
        "dpa2_jax_all": [round(t, 4) for t in t_ours],
        "deepmd_jax_all": [round(t, 4) for t in t_ref],
    }


# MD neighbor-list skin, A: rcut 6 A + skin must stay under half of 192-atom water's 12.44 A box
MD_SKIN = 0.2


def _water_atoms(n_atoms: int, at_least: bool = False):
    """Tiled water (``tiled_water``) as periodic ase.Atoms, and its type indices (O 0, H 1)."""
    import ase

    positions, cell = tiled_water(n_atoms, at_least)
    types = np.tile(np.loadtxt(WATER / "type.raw", dtype=int), len(positions) // 192)
    return ase.Atoms(np.array(["O", "H"])[types], positions, cell=cell, pbc=True), types


def _chunk_timer(run, state, nbr, allocate, steps: int, relayout=lambda state: False):
    """A function running ``steps`` MD steps per call from the last state; a chunk whose neighbor
    list overflowed is redone with a reallocated list, one that turned non-finite with more
    descriptor slots (``relayout``; both recompile). A chunk that stays non-finite is an error,
    never a timing."""
    import jax

    def chunk():
        nonlocal state, nbr
        for _ in range(5):
            new_state, new_nbr = jax.block_until_ready(run(state, nbr, steps))
            if bool(new_nbr.did_buffer_overflow):
                nbr = allocate(state)
            elif not np.isfinite(np.asarray(new_state.position)).all():
                if not relayout(state):
                    raise RuntimeError("the MD state turned non-finite")
            else:
                state, nbr = new_state, new_nbr
                return float(new_state.position[0, 0])
        raise RuntimeError("the neighbor list or the descriptor slots kept overflowing")

    return chunk


def _reference_md(model: str, n_atoms: int, steps: int):
    """DeePMD-kit 3.2.0's JAX backend as JAX-MD NVE (``deepmd.jax.jax_md.as_jax_md``, real
    coordinates in ``space.periodic``, dense list, skin MD_SKIN): (chunk function, compile s)."""
    import ase.units
    import deepmd.jax.model  # noqa: F401  (registers the model types)
    import jax
    import jax.numpy as jnp
    from deepmd.jax.jax_md import as_jax_md
    from deepmd.jax.model.base_model import BaseModel
    from jax_md import simulate, space

    from dpa2_jax.io.deepmd_export import to_deepmd

    cfg, params = _model(model, "float64")
    jax_model = BaseModel.deserialize(to_deepmd(cfg, jax.tree.map(np.asarray, params)))
    atoms, types = _water_atoms(n_atoms)
    side = jnp.asarray(np.diag(atoms.cell.array))
    displacement, shift = space.periodic(side)
    nbr_fn, energy = as_jax_md(jax_model, displacement, side, types, dr_threshold=MD_SKIN)
    init_fn, apply_fn = simulate.nve(energy, shift, 0.5 * ase.units.fs)
    R = jnp.asarray(atoms.positions)
    nbr = nbr_fn.allocate(R)
    state = init_fn(jax.random.PRNGKey(0), R, ase.units.kB * 300.0,
                    mass=jnp.asarray(atoms.get_masses()), neighbor=nbr)  # fmt: skip

    @jax.jit
    def run(state, nbr, n):
        def step(_, carry):
            state, nbr = carry
            nbr = nbr.update(state.position)
            return apply_fn(state, neighbor=nbr), nbr

        return jax.lax.fori_loop(0, n, step, (state, nbr))

    chunk = _chunk_timer(run, state, nbr, lambda s: nbr_fn.allocate(s.position), steps)
    start = time.perf_counter()
    chunk()
    return chunk, time.perf_counter() - start


def _our_md(model: str, precision: str, n_atoms: int, steps: int):
    """dpa2_jax's NVE (md/simulate.py, as ``dpa2-jax md`` runs it: JAX-MD velocity Verlet,
    fractional coordinates, dense list, skin MD_SKIN, 0.5 fs, 300 K): (chunk function, compile s)."""
    from dpa2_jax.md.simulate import MDConfig, build_simulation
    from dpa2_jax.model.potential import Potential

    cfg, params = _model(model, precision)
    atoms, _ = _water_atoms(n_atoms)
    sim = build_simulation(Potential(cfg, params), atoms, MDConfig(skin=MD_SKIN))
    state, nbr = sim.init(0)
    chunk = _chunk_timer(sim.run, state, nbr, sim.allocate, steps, sim.relayout)
    start = time.perf_counter()
    chunk()
    return chunk, time.perf_counter() - start


def _md_numbers(median: float, times: list[float], n_atoms: int, steps: int) -> dict:
    return {
        "seconds_per_step": round(median / steps, 5),
        "steps_per_second": round(steps / median, 2),
        "us_per_atom_step": round(median / steps / n_atoms * 1e6, 3),
        "seconds_per_chunk_all": [round(t, 4) for t in times],
    }


def md_nve(model: str, precision: str, n_atoms: int, repeats: int, steps: int = 10) -> dict:
    """NVE MD of tiled water, ``steps`` steps (neighbor-list update, energy, forces, velocity
    Verlet) per jitted ``fori_loop`` call, timed per call after compilation; peak host memory."""
    chunk, compile_s = _our_md(model, precision, n_atoms, steps)
    median, times, _ = timed(chunk, repeats)
    return {"atoms": n_atoms, "steps_per_call": steps, **_md_numbers(median, times, n_atoms, steps),
            "compile_seconds": round(compile_s, 2), "peak_rss_gb": _peak_rss_gb(),
            "peak_device_gb": _peak_device_gb()}  # fmt: skip


def _rss_peak_since_reset() -> float | None:
    """Peak resident memory (GB) since the last ``_reset_rss_peak`` (Linux: VmHWM); None
    elsewhere."""
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmHWM"))
    except (OSError, StopIteration):
        return None
    return round(int(line.split()[1]) / 1e6, 3)


def _reset_rss_peak() -> None:
    """Starts a new peak for ``_rss_peak_since_reset`` (Linux only; elsewhere nothing)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class _Phases:
    """Seconds and peak resident memory (GB, since the phase began) of a case's phases:
    ``with phases("compile"): ...``."""

    def __init__(self):
        self.out = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        _reset_rss_peak()
        start = time.perf_counter()
        yield
        self.out[f"{name}_seconds"] = round(time.perf_counter() - start, 1)
        self.out[f"{name}_peak_rss_gb"] = _rss_peak_since_reset()


def _memory_result(n_atoms: int, temp_bytes: int, phases: _Phases) -> dict:
    """A memory case's numbers: the process's peak resident memory over everything (and KB
    per atom: the issue's measure), XLA's temporary buffer of the compiled program, phases."""
    peak = _peak_rss_gb()
    return {
        "atoms": n_atoms,
        "peak_rss_gb": peak,
        "peak_rss_kb_per_atom": round(peak * 1e6 / n_atoms, 1),
        "xla_temp_gb": round(temp_bytes / 1e9, 3),
        "xla_temp_kb_per_atom": round(temp_bytes / 1e3 / n_atoms, 1),
        **phases.out,
        "peak_device_gb": _peak_device_gb(),
    }


def md_memory(model: str, precision: str, n_atoms: int) -> dict:
    """Memory of one NVE MD step of tiled water (at least ``n_atoms``; ``dpa2-jax md``'s
    simulation, as ``md_nve``), by phase: setup (model, neighbor list, first forces),
    compiling the step, two steps."""
    import jax

    from dpa2_jax.md.simulate import MDConfig, build_simulation
    from dpa2_jax.model.potential import Potential

    phases = _Phases()
    with phases("setup"):
        cfg, params = _model(model, precision)
        atoms, _ = _water_atoms(n_atoms, at_least=True)
        sim = build_simulation(Potential(cfg, params), atoms, MDConfig(skin=MD_SKIN))
        state, nbr = sim.init(0)
    with phases("compile"):
        step = jax.jit(lambda s, nb: sim.run(s, nb, 1)).lower(state, nbr).compile()
    with phases("two_steps"):
        for _ in range(2):
            state, nbr = jax.block_until_ready(step(state, nbr))
    if bool(nbr.did_buffer_overflow) or not np.isfinite(np.asarray(state.position)).all():
        raise RuntimeError("the step overflowed its neighbor list or turned non-finite")
    return _memory_result(len(atoms), step.memory_analysis().temp_size_in_bytes, phases)


def evaluate_memory(model: str, precision: str, n_atoms: int) -> dict:
    """Memory of energy + forces + virial of tiled water (at least ``n_atoms``), as
    ``Potential.evaluate`` computes them (``inference``'s compiled call), by phase: graph
    (host neighbor list, padding), compiling, one evaluation."""
    import jax

    from dpa2_jax.graph import batch_graphs, frame_to_graph
    from dpa2_jax.model.compiled import compiled_forces_fn
    from dpa2_jax.model.potential import Potential

    phases = _Phases()
    with phases("graph"):
        cfg, params = _model(model, precision)
        pot = Potential(cfg, params)
        positions, cell = tiled_water(n_atoms, at_least=True)
        types = np.tile(np.loadtxt(WATER / "type.raw", dtype=int), len(positions) // 192)
        unpadded = batch_graphs([frame_to_graph(positions, types, cell, cfg.descriptor.rcut,
                                                cfg.descriptor.sel, dtype=pot.dtype)])  # fmt: skip
        layout = pot.layout([unpadded])
        graph = pot.padder(unpadded, n_graph=2)
    with phases("compile"):
        forces_fn = compiled_forces_fn(cfg, "default", layout).lower(pot.params, graph).compile()
    with phases("evaluate"):
        out = jax.block_until_ready(forces_fn(pot.params, graph))
    if not np.isfinite(np.asarray(out["forces"])).all():
        raise RuntimeError("non-finite forces")
    return _memory_result(len(positions), forces_fn.memory_analysis().temp_size_in_bytes, phases)


def reference_md_nve(model: str, n_atoms: int, repeats: int, steps: int = 10) -> dict:
    """``md_nve`` with DeePMD-kit 3.2.0's JAX backend (needs deepmd-kit and jax-md)."""
    chunk, compile_s = _reference_md(model, n_atoms, steps)
    median, times, _ = timed(chunk, repeats)
    return {"atoms": n_atoms, "steps_per_call": steps, **_md_numbers(median, times, n_atoms, steps),
            "compile_seconds": round(compile_s, 2), "peak_rss_gb": _peak_rss_gb()}  # fmt: skip


def compare_md(model: str, n_atoms: int, repeats: int, steps: int = 10) -> dict:
    """``md_nve`` of dpa2_jax and of DeePMD-kit's JAX backend in one process, float64, chunks
    timed alternately so that machine noise hits both alike."""
    # DeePMD-kit first: importing deepmd.jax changes JAX's default matmul precision, which would
    # make our step recompile inside the timed loop
    theirs, theirs_compile = _reference_md(model, n_atoms, steps)
    ours, ours_compile = _our_md(model, "float64", n_atoms, steps)
    t_ours, t_ref = [], []
    for _ in range(repeats):
        t_ours.append(timed(ours, 1)[0])
        t_ref.append(timed(theirs, 1)[0])
    m_ours, m_ref = statistics.median(t_ours), statistics.median(t_ref)
    compile_s = {"dpa2_jax": round(ours_compile, 2), "deepmd_jax": round(theirs_compile, 2)}
    return {
        "atoms": n_atoms,
        "steps_per_call": steps,
        "dpa2_jax": _md_numbers(m_ours, t_ours, n_atoms, steps),
        "deepmd_jax": _md_numbers(m_ref, t_ref, n_atoms, steps),
        "speedup": round(m_ref / m_ours, 2),
        "compile_seconds": compile_s,
    }


DATA_ROOT = pathlib.Path("/tmp/dpa2_jax_benchmark_data")  # make_large_dataset.py's output


def _water_input(frames: int, steps: int, workdir: pathlib.Path) -> pathlib.Path:
    """input.json of configs/water_small.py training on ``frames`` perturbed water frames
    (scripts/make_large_dataset.py, written once under DATA_ROOT), no validation."""
    sys.path.insert(0, str(REPO / "scripts"))
    from make_large_dataset import write_dataset

    from configs import water_small

    data = DATA_ROOT / f"water_{frames}"
    if not (data / "type.raw").exists():
        write_dataset(data, frames)
    config = water_small.get_config().to_dict()
    training = config["training"]
    training.pop("validation_data")
    training["training_data"]["systems"] = [str(data)]
    training.update(numb_steps=steps, disp_freq=steps, save_freq=steps)
    path = workdir / "input.json"
    path.write_text(json.dumps(config))
    return path


def data_pipeline(frames: int, repeats: int, steps: int = 8) -> dict:
    """``dpa2-jax train`` of configs/water_small.py on ``frames`` perturbed water frames: the
    seconds from the command's start to its first train step (reading, statistics, parameters,
    first batch; the step's compilation excluded), the peak memory, the train step's
    consumption (frames/s, steady state) and the input pipeline's production (frames/s, one
    thread, ``Dataset.sample``: read, graph, pad)."""
    import contextlib
    import logging
    import tempfile

    from dpa2_jax.cli.main import main as cli
    from dpa2_jax.data.dataset import open_systems
    from dpa2_jax.graph.dataset import Dataset
    from dpa2_jax.train.tasks import TaskSteps

    tmp = pathlib.Path(tempfile.mkdtemp())
    path = _water_input(frames, steps, tmp)
    calls, real_train = [], TaskSteps.train

    def timed_train(self, name, state, batch):
        calls.append(time.perf_counter())
        return real_train(self, name, state, batch)

    TaskSteps.train = timed_train
    logging.getLogger("dpa2_jax").setLevel(logging.WARNING)
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the case's JSON
        assert cli(["train", str(path), "--workdir", str(tmp / "run")]) == 0
    train_fps = (len(calls) - 2) / (calls[-1] - calls[1])  # batch_size 1: frames = steps
    config = json.loads(path.read_text())
    from dpa2_jax.io.deepmd_config import model_config

    cfg = model_config(config["model"])
    systems = open_systems(config["training"]["training_data"]["systems"], cfg.type_map)
    data = Dataset(systems, cfg.descriptor.rcut, cfg.descriptor.sel, 1)
    rng = np.random.default_rng(0)
    median, _, _ = timed(lambda: [data.sample(rng) for _ in range(20)], repeats)
    return {
        "frames": frames,
        "streamed": bool(data.systems[0].streamed),
        "seconds_to_first_step": round(calls[0] - start, 2),
        "peak_rss_gb": _peak_rss_gb(),
        "train_step_frames_per_s": round(train_fps, 2),
        "pipeline_frames_per_s": round(20 / median, 1),
        "pipeline_over_train": round(20 / median / train_fps, 1),
    }


CASES: dict[str, Callable[[argparse.Namespace], dict]] = {
    "neighbor_list_100k": neighbor_list_100k,
    "init_small": lambda a: init_time("small", a.repeats),
    "first_call_small": lambda a: first_call("small", a.repeats),
    "train_step_small_float64": lambda a: train_step("small", "float64", a.repeats),
    "train_step_small_float32": lambda a: train_step("small", "float32", a.repeats),
    "reference_train_step_small_float64": lambda a: reference_train_step("small", a.repeats),
    "parallel_train_tiny_float64": lambda a: parallel_train("tiny", "float64", a.repeats),
    **{
        f"parallel_train_tiny_float64_{n}dev": lambda a, n=n: parallel_train_step(
            "tiny", "float64", n, a.repeats
        )
        for n in (1, 2, 4)
    },  # fmt: skip
}
for _m in ("small", "medium"):
    for _p in ("float64", "float32"):
        CASES[f"{_m}_{_p}_192"] = lambda a, m=_m, p=_p: inference(m, p, 192, a.repeats)
    CASES[f"reference_{_m}_float64_192"] = lambda a, m=_m: reference_inference(m, 192, a.repeats)
    CASES[f"compare_{_m}_float64_192"] = lambda a, m=_m: compare(m, a.repeats)
for _p in ("float64", "float32"):  # the se_e2_a student (configs/se_e2_a_water.py)
    CASES[f"se_e2_a_water_{_p}_192"] = lambda a, p=_p: inference("se_e2_a_water", p, 192, a.repeats)
for _p in ("float64", "float32"):  # the distillation student, plain and tabulated
    CASES[f"se_e2_a_student_{_p}_192"] = lambda a, p=_p: student(p, False, a.repeats)
    CASES[f"se_e2_a_student_compressed_{_p}_192"] = lambda a, p=_p: student(p, True, a.repeats)
for _n in (1536, 5184, 12288):
    CASES[f"small_float64_{_n}"] = lambda a, n=_n: inference("small", "float64", n, a.repeats)
for _p in ("float64", "float32"):  # MD: 10 NVE steps per jitted call
    for _n in (192, 1536, 12288, 98304):
        CASES[f"md_small_{_p}_{_n}"] = lambda a, p=_p, n=_n: md_nve(
            "small", p, n, a.repeats, a.md_steps
        )
for _n in (1536, 12288, 98304, 200000):  # memory of one MD step, one evaluation (issue 32)
    CASES[f"md_memory_small_float64_{_n}"] = lambda a, n=_n: md_memory("small", "float64", n)
    CASES[f"evaluate_memory_small_float64_{_n}"] = lambda a, n=_n: evaluate_memory(
        "small", "float64", n
    )
CASES["data_pipeline_200"] = lambda a: data_pipeline(200, a.repeats)
CASES["data_pipeline_100000"] = lambda a: data_pipeline(100_000, a.repeats)
CASES.update(benchmark_device.cases(train_step, inference, md_nve))
CASES["reference_md_small_float64_192"] = lambda a: reference_md_nve("small", 192, a.repeats)
CASES["compare_md_small_float64_192"] = lambda a: compare_md("small", 192, a.repeats)
DEFAULT = ["neighbor_list_100k", "init_small", "first_call_small", "train_step_small_float64",
           "train_step_small_float32", "small_float64_192", "small_float32_192",
           "medium_float64_192", "medium_float32_192", "small_float64_1536",
           "small_float64_5184", "small_float64_12288"]  # fmt: skip


def run_isolated(name: str, repeats: int, md_steps: int = 10, quick: bool = False) -> dict:
    """Runs one case in a fresh process, so that its peak memory is its own."""
    out = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--repeats", str(repeats),
         "--md-steps", str(md_steps)] + (["--quick"] if quick else []),
        capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout)


def device_suite(quick: bool) -> None:
    """Prints the device suite's table (scripts/benchmark_device.py), then its results as JSON."""
    start = time.perf_counter()
    names = benchmark_device.case_names(quick)
    repeats = benchmark_device.SETTINGS[quick]["repeats"]
    results = {name: run_isolated(name, repeats, quick=quick) for name in names}
    # JAX is started in the workers only: here it would hold device memory they need
    device = next((r["device"] for r in results.values() if "device" in r), "unknown device")
    print(benchmark_device.table(results, quick, device))
    print(f"\n{time.perf_counter() - start:.0f} s in all\n")
    print(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases", nargs="+", choices=sorted(CASES), default=DEFAULT,
        help="cases to run (default: all dpa2_jax cases; add reference_* for DeePMD-kit)",
    )  # fmt: skip
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also time DeePMD-kit 3.2.0 (JAX backend) on the 192-atom cases",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    parser.add_argument(
        "--md-steps", type=int, default=10,
        help="MD steps per jitted call in the md_* cases (1 for the largest boxes)",
    )  # fmt: skip
    parser.add_argument(
        "--suite", choices=["device"],
        help="device: the table of scripts/benchmark_device.py (train step, energy + forces, MD, "
        "atoms per GB; float32 and float64) instead of --cases",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true", help="with --suite device: its CPU-sized form"
    )  # fmt: skip
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(CASES[args.worker](args)))
        return
    if args.suite == "device":
        device_suite(args.quick)
        return
    cases = list(args.cases)
    if args.reference:
        cases += [c for c in ("compare_small_float64_192", "compare_medium_float64_192",
                              "reference_small_float64_192") if c not in cases]  # fmt: skip
    results = {name: run_isolated(name, args.repeats, args.md_steps) for name in cases}
    for model in ("small", "medium"):
        ours, ref = (
            results.get(f"{model}_float64_192"),
            results.get(f"reference_{model}_float64_192"),
        )
        if ours and ref and "error" not in ours and "error" not in ref:
            results[f"speedup_{model}_float64_192"] = round(
                ref["seconds_per_frame"] / ours["seconds_per_frame"], 2
            )
    for _p in ("float64", "float32"):  # how much cheaper the se_e2_a student is than small DPA-2
        se, dpa2 = results.get(f"se_e2_a_water_{_p}_192"), results.get(f"small_{_p}_192")
        if se and dpa2 and "error" not in se and "error" not in dpa2:
            results[f"small_over_se_e2_a_{_p}_192"] = round(
                dpa2["seconds_per_frame"] / se["seconds_per_frame"], 2
            )
    small, big = results.get("small_float64_192"), results.get("small_float64_12288")
    if small and big and "error" not in small and "error" not in big:
        results["per_atom_ratio_12288_vs_192"] = round(big["us_per_atom"] / small["us_per_atom"], 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
