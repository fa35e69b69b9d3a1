"""``dpa2-jax md``: molecular dynamics with JAX-MD's integrators (``md/simulate.py``)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

from tqdm import tqdm

from dpa2_jax.errors import ConfigError

DESCRIPTION = """\
Runs molecular dynamics of STRUCTURE with MODEL (a DeePMD-kit .dp file or a dpa2_jax model
directory) using JAX-MD's integrators: velocity Verlet (nve), a Nose-Hoover chain or BAOAB
Langevin thermostat (nvt), or Nose-Hoover chains on particles and isotropic box (npt, periodic
structures only). Needs JAX-MD: pip install "dpa2_jax[md]".

STRUCTURE: a file ase.io.read understands (extxyz, POSCAR, cif, ...; its last image) or a DeePMD
npy system folder (its first frame). Periodic structures (pbc all True) need a cell wider than
twice the model's cutoff in every direction (the 0.5 A neighbor-list skin shrinks to fit);
non-periodic ones (molecules) run in free space.

Units: --timestep in fs, --temperature in K, --pressure in bar, --tau-t/--tau-p in fs. Masses
are ASE's atomic masses (amu); velocities start from a Maxwell-Boltzmann draw (--seed) with zero
total momentum, scaled to exactly --temperature.

Outputs in --output-dir: thermo.log (columns: step time_fs potential_eV kinetic_eV total_eV
temperature_K, plus pressure_bar volume_A3 for periodic systems; every --log-every steps),
traj.extxyz (every --traj-every steps: positions A, cell, momenta (ase.io.read gives velocities
with get_velocities()), energy eV, forces eV/A, stress eV/A^3), and a one-line summary on
stdout. Steps run in chunks of gcd(--log-every, --traj-every) inside one compiled loop; after
each chunk an overflowing neighbor list is reallocated and the chunk redone.
"""


NAME = "md"
HELP = "molecular dynamics (NVE/NVT/NPT; fs, K, bar) with JAX-MD"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dpa2-jax md``."""
    add = parser.add_argument
    # fmt: off
    add("model", metavar="MODEL", help=".dp/.pt/.pth file or dpa2_jax model directory")
    add("structure", metavar="STRUCTURE", help="ASE-readable file or DeePMD npy system folder")
    add("--ensemble", choices=["nve", "nvt", "npt"], default="nve", help="nve (default), nvt or npt")
    add("--thermostat", choices=["nose-hoover", "langevin"], default="nose-hoover",
        help="NVT thermostat (default nose-hoover; NPT always uses Nose-Hoover chains)")
    add("--temperature", type=float, default=300.0, metavar="K",
        help="initial and target temperature, K (default 300)")
    add("--timestep", type=float, default=0.5, metavar="FS", help="fs (default 0.5)")
    add("--steps", type=int, default=1000, metavar="N", help="number of steps (default 1000)")
    add("--pressure", type=float, default=1.01325, metavar="BAR",
        help="NPT target pressure, bar (default 1.01325)")
    add("--tau-t", type=float, default=100.0, metavar="FS",
        help="thermostat time scale, fs; Langevin friction is 1/tau_t (default 100)")
    add("--tau-p", type=float, default=1000.0, metavar="FS",
        help="barostat time scale, fs (default 1000)")
    add("--traj-every", type=int, default=10, metavar="K",
        help="write a trajectory frame every K steps (default 10; 0: none)")
    add("--log-every", type=int, default=10, metavar="K", help="thermo.log row every K steps (default 10)")
    add("--output-dir", default=".", metavar="DIR", help="where to write (default: .)")
    add("--head", default=None, help="head of a multi-head model")
    add("--seed", type=int, default=0, help="seed of the initial velocities (default 0)")
    # fmt: on


def _check_args(args: argparse.Namespace) -> None:
    """Raises ConfigError for bad step counts or a missing model."""
    if args.steps < 0 or args.log_every < 1 or args.traj_every < 0:
        raise ConfigError("--steps must be >= 0, --log-every >= 1 and --traj-every >= 0")
    if not os.path.exists(args.model):
        raise ConfigError(f"{args.model}: no such model file or directory")


def _output_paths(output_dir: str) -> tuple[str, str]:
    """(thermo.log, traj.extxyz) in ``output_dir``, created; an old trajectory is removed
    (frames are appended)."""
    os.makedirs(output_dir, exist_ok=True)
    thermo_path = os.path.join(output_dir, "thermo.log")
    traj_path = os.path.join(output_dir, "traj.extxyz")
    if os.path.exists(traj_path):
        os.remove(traj_path)
    return thermo_path, traj_path


def _simulate(args, sim, state0, nbr0, thermo_path: str, traj_path: str) -> tuple[dict, dict]:
    """Runs the steps from (state0, nbr0), writing thermo.log rows and trajectory frames;
    returns the first and the last step's observables."""
    from dpa2_jax.md import output, simulate

    chunk = math.gcd(args.log_every, args.traj_every) if args.traj_every else args.log_every
    first = None
    with (
        open(thermo_path, "w") as log,
        tqdm(total=args.steps, unit="step", file=sys.stderr, disable=None) as bar,
    ):
        print(output.thermo_header(sim.periodic), file=log)
        for step, state, _, obs in simulate.run_chunks(sim, state0, nbr0, args.steps, chunk):
            first = obs if first is None else first
            if step % args.log_every == 0 or step == args.steps:
                print(output.thermo_row(step, args.timestep, obs, sim.periodic), file=log,
                      flush=True)  # fmt: skip
            if args.traj_every and (step % args.traj_every == 0 or step == args.steps):
                output.append_frame(traj_path, simulate.frame_atoms(sim, state, obs))
            bar.update(step - bar.n)
            bar.set_postfix(T=f"{float(obs['temperature']):.0f}K")
    return first, obs


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    try:
        from dpa2_jax.md import output, simulate
    except ImportError as err:
        raise ConfigError(f'dpa2-jax md needs JAX-MD: pip install "dpa2_jax[md]" ({err})') from err
    from dpa2_jax import load
    from dpa2_jax.model.jax_setup import enable_compilation_cache

    atoms = output.read_structure(args.structure)
    # JAX-MD 0.2.29's neighbor lists scatter int64 into int32 under x64: harmless, but noisy
    warnings.filterwarnings("ignore", "scatter inputs have incompatible types", FutureWarning)
    enable_compilation_cache()
    pot = load(args.model)
    cfg = simulate.MDConfig(
        ensemble=args.ensemble, temperature=args.temperature, timestep=args.timestep,
        thermostat=args.thermostat, pressure=args.pressure, tau_t=args.tau_t, tau_p=args.tau_p,
    )  # fmt: skip
    sim = simulate.build_simulation(pot, atoms, cfg, head=args.head)
    thermo_path, traj_path = _output_paths(args.output_dir)
    state0, nbr0 = sim.init(args.seed)
    start = time.perf_counter()
    first, obs = _simulate(args, sim, state0, nbr0, thermo_path, traj_path)
    wall = time.perf_counter() - start
    n = len(sim.symbols)
    drift = (float(obs["energy"] + obs["kinetic"]) - float(first["energy"] + first["kinetic"])) / n
    print(
        f"md: {args.steps} {args.ensemble.upper()} steps ({args.steps * args.timestep:g} fs) of "
        f"{n} atoms in {wall:.1f} s ({args.steps / max(wall, 1e-9):.1f} steps/s); final "
        f"T {float(obs['temperature']):.1f} K, E_pot {float(obs['energy']):.6f} eV, total-energy "
        f"change {drift:.3e} eV/atom; wrote {thermo_path}"
        + (f", {traj_path}" if args.traj_every else "")
    )
    return 0
