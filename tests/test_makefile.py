"""The README's set-up commands: `make install` works inside a virtual environment (the active
one, else ./.venv created on first use), never with a bare system `pip install`, which a
Debian/Ubuntu Python refuses (PEP 668). Checked with `make -n` (what would run), in a copy of
the Makefile, so nothing is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

MAKEFILE = Path(__file__).resolve().parent.parent / "Makefile"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(directory: Path, target: str, **env: str) -> str:
    shutil.copy(MAKEFILE, directory / "Makefile")
    clean = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    result = subprocess.run(["make", "-n", target], cwd=directory, env=clean | env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_without_an_active_environment_install_creates_and_uses_dot_venv(tmp_path):
    commands = dry_run(tmp_path, "install")
    assert "python3 -m venv .venv" in commands
    assert '.venv/bin/python -m pip install "torch==2.13.0"' in commands
    assert ".venv/bin/python -m pip install -e ." in commands
    assert "[dev" not in commands  # the lean set: test tools and extras only for `make test`


def test_an_active_virtual_environment_is_used_as_it_is(tmp_path):
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").touch()
    commands = dry_run(tmp_path / "env", "install", VIRTUAL_ENV=str(env))
    assert "-m venv" not in commands  # nothing created: it exists
    assert f'{env}/bin/python -m pip install "torch==2.13.0"' in commands
    assert not any(line.startswith(("python3 -m pip", "pip ")) for line in commands.splitlines())


def test_the_demo_and_the_tests_run_from_the_environment(tmp_path):
    assert ".venv/bin/pretrainer train" in dry_run(tmp_path, "demo")
    test = dry_run(tmp_path, "test")
    assert ".venv/bin/python -m pytest -q" in test
    assert '-e ".[dev,hf,slurm]"' in test  # installed once, when the check finds a test tool missing
