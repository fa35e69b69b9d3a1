"""LAMMPS (``pair_style deepmd`` on our export, converted by DeePMD-kit) against ``dpa2-jax md``'s
energy function on the bundled 192-atom water: ``scripts/check_lammps.py``, the path of
docs/lammps.md. LAMMPS needs its own environment (torch 2.11 with 4 GB of CUDA libraries), so
this runs only where ``DPA2_JAX_LAMMPS_PYTHON`` names that environment's python."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAMMPS_PYTHON = os.environ.get("DPA2_JAX_LAMMPS_PYTHON")


@pytest.mark.slow
@pytest.mark.skipif(
    not LAMMPS_PYTHON, reason="DPA2_JAX_LAMMPS_PYTHON (docs/lammps.md's environment) not set"
)
def test_lammps_gives_the_md_energy_and_forces(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/check_lammps.py"), "--lammps-python",
         LAMMPS_PYTHON, "--workdir", str(tmp_path), "--tol", "1e-8"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    report = json.loads(out.stdout[out.stdout.index("{") :])
    assert report["atoms"] == 192 and report["lammps_version"] == 20250722
    assert report["energy_diff_eV"] <= 1e-8 and report["max_force_diff_eV_per_A"] <= 1e-8
    assert report["max_force_eV_per_A"] > 0.1  # real forces, not an empty comparison
