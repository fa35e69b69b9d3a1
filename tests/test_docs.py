"""Every fenced code block of README.md and docs/*.md runs as written.

One case per block, id ``FILE:LINE`` (the line of the opening fence). ```text blocks (layouts,
file contents, output samples) are not code and are not collected; every other fence is.

Where blocks run: a fresh temporary directory holding a symlink to each top-level entry of the
repository (``configs``, ``examples``, ``tests``, ``scripts``, ...). Paths the docs read relative
to the repository root resolve through the links, and what a block writes (``runs/...``,
``model.dp``, ``my_model/``) lands in the temporary directory, never in the repository. The
subprocesses get this checkout first on ``PYTHONPATH`` and the test's interpreter's folder first
on ``PATH`` (so ``dpa2-jax``, ``python`` and ``python3`` are this environment's).

- Python blocks run with ``python -c BLOCK``.
- Shell blocks: lines are joined at trailing backslashes and split at ``&&``; set-up commands
  (``python3 -m venv``, ``. .venv/bin/activate``, ``pip install``, ``git clone``) are dropped;
  the rest run in order with ``bash -e``. The set-up itself is what the CI's ``.ci/run`` does in
  a fresh virtual environment (README set-up command 2); ``test_setup_commands`` checks that the
  README's set-up command 2 equals ``.ci/run``'s install and pytest commands, and that set-up
  command 1 installs the ``[md]`` extra that the README's ``dpa2-jax md`` needs.

``KINDS`` names every block that does not run by default, with why; every other block runs by
default, and a new block runs by default until it is listed. Long jobs (training of hundreds
of steps, distillation, MD of thousands of steps) run as written under ``-m slow``.
docs/lammps.md's block needs LAMMPS in a separate environment and files the user writes; it is
skipped here, and tests/md/test_lammps.py runs that path (``scripts/check_lammps.py``) when
``DPA2_JAX_LAMMPS_PYTHON`` is set.
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SLOW = "slow"
LAMMPS = "needs LAMMPS"
CLUSTER = "needs several GPUs, hosts, SLURM or a TPU pod"
SETUP = "set-up: checked against .ci/run by test_setup_commands"
LAMMPS_REASON = (
    "needs LAMMPS in its own environment (and the user's in.lammps and water.lmp): "
    "tests/md/test_lammps.py runs this path (scripts/check_lammps.py) when "
    "DPA2_JAX_LAMMPS_PYTHON is set"
)

#: block id -> kind, for the blocks that do not run by default (with why, in a comment).
KINDS = {
    "README.md:18": SLOW,  # set-up 1: trains water_tiny, 1,000 steps
    "README.md:25": SETUP,  # set-up 2: the whole test suite
    "README.md:69": SLOW,  # trains water_tiny and water_small (2,000 steps)
    "README.md:86": SLOW,  # multi-task pretraining, then fine-tuning
    "README.md:102": SLOW,  # convert a .pt checkpoint, test a head, fine-tune 20 steps
    "README.md:116": SLOW,  # 2,000 MD steps
    "docs/distillation.md:3": SLOW,  # the whole distillation pipeline
    "docs/distributed.md:59": CLUSTER,
    "docs/distributed.md:66": CLUSTER,
    "docs/distributed.md:83": CLUSTER,
    "docs/distributed.md:101": CLUSTER,
    "docs/finetuning.md:3": SLOW,  # multi-task pretraining, then fine-tuning
    "docs/finetuning.md:95": SLOW,  # convert a .pt checkpoint, test a head, fine-tune 20 steps
    "docs/lammps.md:8": LAMMPS,
    "docs/training.md:9": SLOW,  # water_tiny and water_small trainings
    "docs/usage.md:57": SLOW,  # trains water_tiny, 1,000 steps
}

SETUP_COMMAND = re.compile(r"^(python3? -m venv|\. \S+/activate|source |pip install|git clone)")
SHELL = {"bash", "sh", "console", "shell", ""}


def collect_blocks() -> list[tuple[str, str, str]]:
    """(``FILE:LINE``, language, text) of every fenced block that is not ```text."""
    blocks = []
    for path in DOCS:
        lines = path.read_text().splitlines()
        start = None
        for i, line in enumerate(lines, 1):
            if not line.startswith("```"):
                continue
            if start is None:
                start, lang = i, line[3:].strip()
            else:
                if lang != "text":
                    name = path.relative_to(ROOT).as_posix()
                    blocks.append((f"{name}:{start}", lang, "\n".join(lines[start : i - 1])))
                start = None
        assert start is None, f"{path}: the fence on line {start} is never closed"
    return blocks


BLOCKS = collect_blocks()


def shell_commands(text: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, ``$ `` prompts removed,
    ``&&`` chains split, set-up commands dropped."""
    text = re.sub(r"\\\n\s*", " ", text)
    commands = []
    for line in text.splitlines():
        line = line.strip().removeprefix("$ ")
        if not line or line.startswith("#"):
            continue
        for part in line.split("&&"):
            part = part.strip()
            if part and not SETUP_COMMAND.match(part):
                commands.append(part)
    return commands


def workspace(tmp_path: pathlib.Path) -> pathlib.Path:
    """A temporary working directory with a symlink to each top-level entry of the repository."""
    for entry in ROOT.iterdir():
        if entry.name not in {".git", "runs", ".venv", ".ci-venv"}:
            (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def environment() -> dict:
    path = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PATH": path, "PYTHONPATH": pythonpath, "MPLBACKEND": "Agg"}


def params():
    for block_id, lang, text in BLOCKS:
        kind = KINDS.get(block_id)
        marks = []
        if kind == SLOW:
            marks.append(pytest.mark.slow)
        elif kind == LAMMPS:
            marks.append(pytest.mark.skip(reason=LAMMPS_REASON))
        elif kind in (CLUSTER, SETUP):
            marks.append(pytest.mark.skip(reason=kind))
        yield pytest.param(lang, text, id=block_id, marks=marks)


@pytest.mark.parametrize("lang, text", list(params()))
def test_block_runs(lang, text, tmp_path):
    cwd = workspace(tmp_path)
    if lang == "python":
        argv = [sys.executable, "-c", text]
    else:
        assert lang in SHELL, f"a ```{lang} block: fence it as python, bash or text"
        commands = shell_commands(text)
        assert commands, "a shell block with no command: fence it as text"
        argv = ["bash", "-e", "-c", "\n".join(commands)]
    before = repository_state()
    out = subprocess.run(argv, cwd=cwd, env=environment(), capture_output=True, text=True)
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    assert repository_state() <= before, "the block wrote into the repository"


def repository_state() -> set[str]:
    """The checkout's untracked files (``git status``), or none outside git."""
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                         capture_output=True, text=True)  # fmt: skip
    lines = out.stdout.splitlines() if out.returncode == 0 else []
    return {line for line in lines if line.startswith("??")}


def test_table_names_blocks():
    """Every block KINDS names exists (line numbers move when the docs change)."""
    stale = set(KINDS) - {block_id for block_id, _, _ in BLOCKS}
    assert not stale, f"KINDS names blocks that are not there: {sorted(stale)}"


def readme_setup_blocks() -> list[str]:
    return [text for block_id, _, text in BLOCKS if block_id.startswith("README.md:")][:2]


def test_setup_commands():
    """README set-up 2 is .ci/run's install and pytest commands; set-up 1 installs [md]."""
    setup1, setup2 = readme_setup_blocks()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    ci_install = next(line for line in ci if line.startswith("pip install -e"))
    ci_pytest = next(line for line in ci if line.startswith("python -m pytest"))
    ci_pytest = ci_pytest.split("||")[0].strip()
    parts = [p.strip() for p in setup2.split("&&")]
    assert parts[2] == ci_install and parts[3] == ci_pytest, (parts, ci_install, ci_pytest)
    install1 = next(p.strip() for p in setup1.split("&&") if p.strip().startswith("pip install"))
    extras = re.search(r"\[([^\]]*)\]", install1).group(1).split(",")
    assert "md" in extras, install1
    md_blocks = [t for b, _, t in BLOCKS if b.startswith("README.md:") and "dpa2-jax md" in t]
    assert md_blocks, "the README has a dpa2-jax md example"
    assert shlex.split(install1)[-1].startswith(".[")


def test_no_internal_issue_numbers():
    """A reader cannot see the project's issue tracker: the docs name no "issue N"."""
    found = [
        f"{path.relative_to(ROOT)}:{k + 1}"
        for path in DOCS
        for k, line in enumerate(path.read_text().splitlines())
        if re.search(r"\bissues? #?\d+", line, flags=re.IGNORECASE)
    ]
    assert not found, found
