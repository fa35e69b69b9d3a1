"""dpa2-jax plot lcurve (cli/plot.py): a PNG from an lcurve.out, ours or DeePMD-kit's."""

from __future__ import annotations

import math
import sys

import pytest

from dpa2_jax.cli import plot
from dpa2_jax.cli.main import main
from dpa2_jax.train.lcurve import LCurve

pytest.importorskip("matplotlib")

# The first rows of a `dp train` lcurve.out (DeePMD-kit 3, PyTorch backend), no virial labels.
DEEPMD_LCURVE = """\
#  step      rmse_val    rmse_trn    rmse_e_val  rmse_e_trn    rmse_f_val  rmse_f_trn         lr
# If there is no available reference data, rmse_*_{val,trn} will print nan
      0      1.87e+01    1.92e+01      4.41e-01    4.53e-01      5.93e-01    6.07e-01    1.0e-03
    100      5.11e+00    4.98e+00      9.02e-02    8.84e-02      1.62e-01    1.58e-01    9.4e-04
    200      3.20e+00    3.35e+00      3.71e-02    4.05e-02      1.01e-01    1.06e-01    8.9e-04
"""


def _write_lcurve(path, steps=50, virial=True):
    lcurve = LCurve(str(path))
    for k in range(1, steps + 1):
        lr = 1e-3 * 0.95**k
        train = {"rmse": 20 / k**0.5, "rmse_e": 0.5 / k, "rmse_f": 0.6 / k**0.5,
                 "rmse_v": 0.2 / k if virial else None}  # fmt: skip
        valid = {key: 1.1 * v if v is not None else None for key, v in train.items()}
        lcurve.write(10 * k, train, valid, lr)
    lcurve.close()
    return path


def _assert_png(path):
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_plot_workdir_writes_png(tmp_path, capsys):
    _write_lcurve(tmp_path / "lcurve.out")
    assert main(["plot", "lcurve", str(tmp_path)]) == 0
    _assert_png(tmp_path / "lcurve.png")
    assert "lcurve.png" in capsys.readouterr().out


def test_plot_deepmd_lcurve_with_output(tmp_path):
    path = tmp_path / "dp_lcurve.out"
    path.write_text(DEEPMD_LCURVE)
    out = tmp_path / "figs" / "curve.png"
    out.parent.mkdir()
    assert main(["plot", "lcurve", str(path), "-o", str(out)]) == 0
    _assert_png(out)


def test_panels_in_deepmd_order_skipping_nan_columns(tmp_path):
    from dpa2_jax.train.lcurve import read_lcurve

    columns = read_lcurve(str(_write_lcurve(tmp_path / "lcurve.out", steps=3, virial=False)))
    assert all(math.isnan(v) for v in columns["rmse_v_val"])
    assert list(plot._panels(columns)) == [("rmse", ""), ("rmse", "e"), ("rmse", "f")]
    heads = {"step": [1.0], "rmse_e_val_water": [1.0], "rmse_e_trn_water": [2.0], "lr": [1.0]}
    assert plot._panels(heads) == {
        ("rmse", "e"): [("rmse_e_val_water", "validation (water)"),
                        ("rmse_e_trn_water", "training (water)")],
    }  # fmt: skip


def test_missing_file_and_empty_lcurve_name_the_file(tmp_path, capsys):
    assert main(["plot", "lcurve", str(tmp_path)]) == 2
    assert str(tmp_path / "lcurve.out") in capsys.readouterr().err
    empty = tmp_path / "empty.out"
    empty.write_text(DEEPMD_LCURVE.splitlines(keepends=True)[0])
    assert main(["plot", "lcurve", str(empty)]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "no data rows" in err


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch, capsys):
    _write_lcurve(tmp_path / "lcurve.out", steps=2)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["plot", "lcurve", str(tmp_path)]) == 2
    assert 'pip install "dpa2_jax[plot]"' in capsys.readouterr().err


def test_help_names_units_and_formats(capsys):
    with pytest.raises(SystemExit):
        main(["plot", "--help"])
    text = capsys.readouterr().out
    assert "eV/Angstrom" in text and "lcurve.out" in text and "PNG" in text
