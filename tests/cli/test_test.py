"""``dpa2-jax test`` (cli/test.py) on systems without labels, and metrics.unlabelled_reason."""

from __future__ import annotations

import dataclasses
import pathlib

import ase
import ase.io
import numpy as np

from dpa2_jax.cli.main import main
from dpa2_jax.data import read_ase, read_npy_system
from dpa2_jax.metrics import unlabelled_reason


def write_unlabelled(root: pathlib.Path, pbc: bool = True) -> pathlib.Path:
    """A 3-atom O H H npy system of 2 frames with coordinates (and box) but no labels."""
    (root / "set.000").mkdir(parents=True)
    (root / "type.raw").write_text("0 1 1\n")
    (root / "type_map.raw").write_text("O\nH\n")
    coords = np.array([[0.0, 0.0, 0.0, 0.96, 0.0, 0.0, -0.24, 0.93, 0.0]] * 2)
    np.save(root / "set.000" / "coord.npy", coords)
    if pbc:
        np.save(root / "set.000" / "box.npy", np.tile(np.eye(3).ravel() * 8.0, (2, 1)))
    else:
        (root / "nopbc").write_text("")
    return root


def test_unlabelled_reason_names_the_missing_labels(tmp_path):
    periodic = read_npy_system(write_unlabelled(tmp_path / "periodic"))
    assert unlabelled_reason(periodic) == (
        f"{tmp_path / 'periodic'}: no labels to compare with (no energy.npy, force.npy, "
        "virial.npy in its set.* folders)"
    )
    molecule = read_npy_system(write_unlabelled(tmp_path / "molecule", pbc=False))
    assert "(no energy.npy, force.npy in its set.* folders)" in unlabelled_reason(molecule)
    atoms = ase.Atoms("OH2", positions=molecule.coords[0])
    ase.io.write(tmp_path / "bare.xyz", atoms)
    bare = read_ase(tmp_path / "bare.xyz")
    assert unlabelled_reason(bare).endswith("(no energy, forces in the file)")
    labelled = read_npy_system(write_unlabelled(tmp_path / "labelled"))
    labelled = dataclasses.replace(labelled, energies=np.zeros(2))
    assert unlabelled_reason(labelled) is None


def test_nothing_to_compare_fails(tiny_dp, tmp_path, capsys):
    system = write_unlabelled(tmp_path / "bare")
    assert main(["test", str(tiny_dp), str(system)]) == 2
    captured = capsys.readouterr()
    assert "nothing to compare" in captured.err
    assert f"{system}: no labels to compare with (no energy.npy, force.npy, virial.npy" in (
        captured.err
    )
    assert "# testing system" not in captured.out


def test_unlabelled_system_among_labelled_ones_is_skipped(tiny_dp, tmp_path, capsys):
    write_unlabelled(tmp_path / "data" / "bare")
    labelled = write_unlabelled(tmp_path / "data" / "labelled")
    np.save(labelled / "set.000" / "energy.npy", np.array([-1.0, -2.0]))
    assert main(["test", str(tiny_dp), str(tmp_path / "data")]) == 0
    captured = capsys.readouterr()
    assert f"{tmp_path / 'data' / 'bare'}: no labels to compare with" in captured.err
    assert "skipped" in captured.err
    assert captured.out.count("# testing system") == 1
    assert "# number of systems : 1" in captured.out
    assert "Energy RMSE" in captured.out and "Force" not in captured.out
