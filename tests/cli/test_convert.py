"""``dpa2-jax convert SRC DST --overwrite`` (cli/convert.py, io/convert.py): DST is replaced only
if it is a previous dpa2_jax model directory; everything else is refused and left untouched."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from dpa2_jax.cli.main import main
from dpa2_jax.io.checkpoints import load_model


def snapshot(root: pathlib.Path) -> dict[str, bytes]:
    """Every file below `root` (relative path -> content), to show nothing was touched."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def workdir(tiny_dp, tmp_path, monkeypatch) -> pathlib.Path:
    """A working directory holding the source model, a notes folder and a model directory."""
    shutil.copy(tiny_dp, tmp_path / "src.dp")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("years of work")
    (tmp_path / "plain.txt").write_text("a file")
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "src.dp", "model"]) == 0
    return tmp_path


@pytest.mark.parametrize(
    "dst, message",
    [
        (".", "is the working directory or an ancestor of it"),
        ("..", "is the working directory or an ancestor of it"),
        ("notes", "notes: not a dpa2_jax model directory, so it is not replaced"),
        ("plain.txt", "plain.txt: is a file, not a dpa2_jax model directory"),
    ],
)
def test_overwrite_refuses_what_is_not_a_model(workdir, dst, message, capsys):
    before = snapshot(workdir)
    assert main(["convert", "src.dp", dst, "--overwrite"]) == 2
    assert message in capsys.readouterr().err
    assert snapshot(workdir) == before


def test_overwrite_refuses_a_folder_holding_the_source(workdir, capsys):
    (workdir / "holder").mkdir()
    shutil.copy(workdir / "src.dp", workdir / "holder" / "src.dp")
    before = snapshot(workdir)
    assert main(["convert", "holder/src.dp", "holder", "--overwrite"]) == 2
    assert "holds the source model holder/src.dp" in capsys.readouterr().err
    # a model directory read as the source is not replaced by its own conversion either
    assert main(["convert", "model", "model", "--overwrite"]) == 2
    assert "holds the source model model" in capsys.readouterr().err
    assert snapshot(workdir) == before


def test_overwrite_refuses_a_model_directory_with_extra_files(workdir, capsys):
    (workdir / "model" / "notes.txt").write_text("mine")
    before = snapshot(workdir)
    assert main(["convert", "src.dp", "model", "--overwrite"]) == 2
    assert "holds ['notes.txt'] besides model.json and params/" in capsys.readouterr().err
    assert snapshot(workdir) == before


def test_overwrite_replaces_a_model_directory(workdir):
    (workdir / "model" / "model.json").write_text(
        (workdir / "model" / "model.json").read_text().replace('"converted_from"', '"old"')
    )
    assert main(["convert", "src.dp", "model", "--overwrite", "--head-names", "water"]) == 0
    cfg, _, meta = load_model(workdir / "model")
    assert cfg.head_names == ("water",) and "converted_from" in meta and "old" not in meta
    assert sorted(p.name for p in workdir.iterdir()) == [
        "model", "notes", "plain.txt", "src.dp",
    ]  # fmt: skip
