"""Distillation on the bundled water: a DPA-2 teacher labels frames of its own NVT MD at 300 K
and 400 K from data_0 and data_1; a se_e2_a student (configs/se_e2_a_water.py's model, narrower
nets) trains on them. The default teacher, examples/water_md/model.dp, is a small model that is
stable in MD (examples/water_tiny, faster, fails the teacher check: its MD runs away within
0.5 ps at 400 K). Measured runs, with it and with small DPA-2 teachers: docs/distillation.md.

    dpa2-jax distill configs/distill_water.py --workdir runs/distill
    dpa2-jax distill configs/distill_water.py --workdir runs/distill_small --teacher teacher.dp

Paths are relative to this file. Stages and outputs: dpa2_jax/distill/pipeline.py.
"""

import ml_collections

from configs import se_e2_a_water

WATER = "../tests/systems/water"


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # teacher: a .dp file, model directory or training workdir; head of a multi-head model
    config.teacher = {"model": "../examples/water_md/model.dp", "head": ""}
    # check: before exploring, the teacher's NVE from each exploration structure, initial
    # velocities at the highest exploration temperature, `steps` of `timestep` fs observed every
    # `every` steps. It stops the run when the numbers are not finite, the total energy's drift
    # (mean over the last `window` steps against the first, eV/atom) exceeds max_drift, the
    # largest per-atom force exceeds max_force (eV/A) or the temperature exceeds
    # min(max_temperature K, max_temperature_factor x the initial temperature). Exploration keeps
    # only frames within the same force and temperature limits (its run's temperature as the
    # target). The bundled water's DFT forces: RMS 0.82 eV/A per component, largest |F_i| 5.3-6.5
    # eV/A per system; the earlier unstable teacher's MD made frames with 29-53 eV/A. 1,000
    # steps: examples/water_tiny stays within the limits for 700 steps at 400 K and runs away
    # by step 990; examples/water_md passes (docs/distillation.md). steps 0: no check.
    config.check = {
        "steps": 1000, "timestep": 0.5, "every": 10, "window": 100, "seed": 0,
        "max_drift": 1e-3, "max_force": 12.0, "max_temperature": 1e9,
        "max_temperature_factor": 1.5,
    }  # fmt: skip
    # explore: one MD run per structure and temperature, a frame every `every` steps
    config.explore = {
        "structures": [f"{WATER}/data_0", f"{WATER}/data_1"],  # npy folders (frame 0) or ASE files
        "temperatures": [300.0, 400.0],  # K
        "ensemble": "nvt", "thermostat": "langevin", "timestep": 0.5, "tau_t": 100.0,  # fs
        "steps": 800, "every": 8, "seed": 0,
        # random copies of each sampled frame: strain (max |eps|) and displacement (A); off,
        # since the target is MD frames: with one copy of these sizes the labels' force RMS
        # doubled (1.7-1.9 against 1.2-1.3 eV/A) and half the held-out frames were not MD frames
        "perturb": {"copies": 0, "strain": 0.02, "displacement": 0.05},
        # with two or more models: keep frames with lo <= max_devi_f < hi (eV/A)
        "committee": {"models": [], "head": "", "lo": 0.0, "hi": 1e9},
    }  # fmt: skip
    # label: held-out share of each run's frames
    config.label = {"validation_fraction": 0.2, "seed": 0}
    # student: DeePMD training input sections (training/validation data filled in); the
    # se_e2_a water model with narrower nets. Against small DPA-2 on 192-atom water (evaluate,
    # float64, 2-core CPU, same process, 2026-12-01): 4.4x faster in the report stage on a quiet
    # machine (5.0x and 5.1x on a loaded one); the water example's nets, [25, 50, 100] / 16 /
    # [240] x 3, 1.8x. Against examples/water_md in float32 (2026-12-03): 0.135 eV/A on 160
    # held-out MD frames after 30,000 steps (19.6 steps/s on one core), 17x faster than small
    # DPA-2 in float64; the water example's nets did no better and ran away in NVT
    # (docs/distillation.md).
    model = se_e2_a_water.get_config().model.to_dict()
    model["descriptor"].update({"neuron": [10, 20, 40], "axis_neuron": 8})
    model["fitting_net"]["neuron"] = [120, 120, 120]
    config.student = {
        "model": model,
        "learning_rate": {"type": "exp", "decay_steps": 400, "start_lr": 1e-3, "stop_lr": 3e-6},
        "loss": {
            "type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
            "limit_pref_f": 1, "start_pref_v": 0, "limit_pref_v": 0,
        },
        "training": {"numb_steps": 15000, "batch_size": 1, "seed": 1, "disp_freq": 500,
                     "save_freq": 1000, "max_ckpt_keep": 2},
    }  # fmt: skip
    # report: DFT-labelled systems to test both models on; the frame timed for the speedup;
    # rdf: the physics check. NVT MD (Langevin) of teacher and student from the same structure
    # (default: speed_structure) with the same seed: `equilibration` steps, then `steps` sampled
    # every `every`; g(r) of each pair of element symbols up to r_max (A, capped at half the
    # box's shortest height: 6.22 A for the bundled water) in bins of bin_width (A); the report
    # gives each pair's largest |g_student - g_teacher| over `compare` (A) and draws
    # WORKDIR/rdf.png. Each model's g(r) is saved in WORKDIR/rdf/ as its MD finishes and reused by
    # a later report with the same settings and model. steps 0: no RDF. noise_seeds: more teacher
    # runs with seeds seed + 1, ...: the teacher's difference from itself, the noise the student's
    # difference is to be read against (examples/water_md, 2 ps: 0.21 for O-O at 0.05 A bins,
    # docs/distillation.md). The structure's own frames (data_3: DFT MD) are drawn as reference.
    config.report = {
        "dft_systems": [f"{WATER}/data_3"], "speed_structure": f"{WATER}/data_3", "repeats": 5,
        "rdf": {
            "structure": f"{WATER}/data_3", "temperature": 300.0, "timestep": 0.5,
            "equilibration": 1000, "steps": 4000, "every": 10,  # 0.5 ps, then 2 ps
            "thermostat": "langevin", "tau_t": 100.0, "seed": 0,
            "pairs": [["O", "O"], ["O", "H"]], "r_max": 6.5, "bin_width": 0.05,
            "compare": [2.0, 6.0], "noise_seeds": 1,
        },
    }  # fmt: skip
    return config
