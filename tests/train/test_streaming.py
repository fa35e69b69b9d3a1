"""Training on streamed systems (frames read per batch, data/npy_stream.py) with the batches
prepared ahead by a thread (train/pipeline.py): a restart continues the same stream exactly."""

import shutil

import jax
import numpy as np
import pytest

import dpa2_jax
import dpa2_jax.data.dataset
from dpa2_jax.cli.main import main
from dpa2_jax.train.lcurve import read_lcurve
from tests.train.test_loop import SHORT, TINY


@pytest.mark.slow  # 100 s on 2 cores: three short trainings
def test_streamed_run_restarts_to_the_uninterrupted_numbers(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dpa2_jax.data.dataset, "STREAM_FRAMES", 0)  # stream the 240 frames
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train", TINY, "--workdir", str(full), *SHORT]) == 0
    assert "data_1: 160 frames, streamed from disk (read per batch)" in capsys.readouterr().err
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoints" / "6")
    shutil.rmtree(cut / "model")
    lines = (cut / "lcurve.out").read_text().splitlines(keepends=True)
    (cut / "lcurve.out").write_text("".join(lines[:4]))  # header (2 lines), steps 1 and 2
    assert main(["train", TINY, "--workdir", str(cut), *SHORT, "--restart"]) == 0
    a, b = dpa2_jax.load(full), dpa2_jax.load(cut)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert read_lcurve(str(cut / "lcurve.out")) == read_lcurve(str(full / "lcurve.out"))
