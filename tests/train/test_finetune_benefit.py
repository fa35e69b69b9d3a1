"""scripts/finetune_benefit.py end to end in miniature: pretraining, fine-tuning, training from
scratch and zero-shot on both held-out targets, with its table and plot (a few steps each)."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_tiny_benefit_pipeline_writes_table_and_plot(tmp_path):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    cmd = [sys.executable, str(ROOT / "scripts" / "finetune_benefit.py"), "--workdir",
           str(tmp_path), "--tiny"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["targets"]) == {"chno", "gete"}
    for rows in results["targets"].values():
        assert set(rows) == {"2", "4"}
        for row in rows.values():
            assert set(row) == {"zero_shot", "finetuned", "scratch"}
            assert all(v["rmse_f"] > 0 for v in row.values())
    assert "| chno | 2 |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "benefit.png").stat().st_size > 10_000


def test_deepmd_pretraining_input_is_our_pretraining(tmp_path):
    """The DeePMD-kit twin of configs/pretrain_mini.py: same model, losses, tasks and schedule."""
    from dpa2_jax.train.config import config_dict

    path = tmp_path / "dp_pre.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "finetune_benefit.py"), "--workdir",
           str(tmp_path), "--pretrain-steps", "3000", "--deepmd-pretrain-input", str(path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ours = config_dict(ROOT / "configs" / "pretrain_mini.py")
    theirs = json.loads(path.read_text())
    assert theirs["model"] == ours["model"] and theirs["loss_dict"] == ours["loss_dict"]
    assert theirs["training"]["model_prob"] == ours["training"]["model_prob"]
    assert theirs["training"]["numb_steps"] == 3000
    assert theirs["learning_rate"] == {**ours["learning_rate"], "decay_steps": 100}
    systems = [p for task in theirs["training"]["data_dict"].values() for part in task.values()
               for p in part["systems"]]  # fmt: skip
    assert len(systems) == 8 and all(os.path.isabs(p) and os.path.isdir(p) for p in systems)
