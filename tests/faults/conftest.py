"""Fixtures of the fault matrix: tiny runs sharing one cache per module, the CLI run in-process
(exit code, stdout, stderr), a malicious pickle, and file corruptions."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from pretrainer import cli
from pretrainer.training.checkpoint import CHECKPOINT_FORMAT, digest_file
from tests.conftest import TINY

# A run that takes a second: 300 documents, 4-token blocks of 32, checkpoints every 2 steps.
RUN = [*TINY, "data.num_documents=300", "finetune=none", "trainer.max_steps=8", "trainer.eval_every=4",
       "trainer.checkpoint_every=2", "trainer.keep_checkpoints=3"]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One tokenizer and packed corpus for all the runs of a test module."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def run_config(compose_config, shared_cache) -> Callable:
    """run_config(*overrides) -> the typed config of a tiny run (RUN) on the module's cache."""

    def _config(*overrides: str):
        return compose_config(*RUN, f"cache_dir={shared_cache}", *overrides)

    return _config


def finished_run(tmp_path_factory, cache: Path, name: str, *overrides: str) -> Path:
    """`pretrainer train` of RUN (plus overrides) on `cache` into a new run dir, in this process,
    for a module-scoped fixture (so the run dir has its `.hydra/` record, as a user's would)."""
    run_dir = tmp_path_factory.mktemp(name) / "run"
    assert invoke_cli("train", *RUN, f"cache_dir={cache}", *overrides, f"hydra.run.dir={run_dir}") == 0
    return run_dir


def invoke_cli(*args: str) -> int:
    """`pretrainer *args` in this process; its exit code. The CLI keeps a sweep's jobs in module
    lists (one process, one command): they are emptied first."""
    for pending in (cli.FAILED_JOBS, cli.SWEEP_JOBS, cli.SWEEP_DIR):
        pending.clear()
    argv, sys.argv = sys.argv, ["pretrainer", *args]
    try:
        cli.main()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
    return 0


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


@pytest.fixture
def run_cli(capsys, monkeypatch, shared_cache) -> Callable[..., CliResult]:
    """run_cli(*args) runs `pretrainer *args` in this process and returns its exit code and output."""

    def _run(*args: str) -> CliResult:
        monkeypatch.setenv("PRETRAINER_CACHE", str(shared_cache))
        capsys.readouterr()
        code = invoke_cli(*args)
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return _run


def assert_one_line_error(result: CliResult, code: int, *fragments: str, warnings: int = 0) -> None:
    """A user error: the exit code, one error line on stderr holding each fragment (after
    `warnings` lines of handled problems, e.g. checkpoints skipped on the way), no traceback."""
    assert result.code == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert len(result.error_lines) == warnings + 1, result.error_lines
    assert all(line.startswith("warning: ") for line in result.error_lines[:warnings]), result.error_lines
    for fragment in fragments:
        assert fragment in result.error_lines[-1], (fragment, result.error_lines[-1])


# ---- a pickle that runs code when unpickled ------------------------------------------------------------------------


class RunsCode:
    """Unpickling this calls os.system, which creates `marker`: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_malicious_checkpoint(path: Path, marker: Path) -> None:
    """A checkpoint-shaped file whose pickle runs a command, with a matching sha256 beside it,
    so that only weights-only loading (not the hash check) stands between it and the command."""
    from pretrainer.hashing import file_sha256

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "model": RunsCode(marker), "config": {}}, path)
    digest_file(path).write_text(f"{file_sha256(path)}  {path.name}\n")


# ---- corruptions -----------------------------------------------------------------------------------------------


def flip_bytes(path: Path, count: int = 16, start: int | None = None) -> None:
    """XOR `count` bytes with 0xFF from `start` (default: the middle of the file)."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2 if start is None else start
    for i in range(count):
        data[start + i] ^= 0xFF
    path.write_bytes(bytes(data))


def flip_tensor_bytes(path: Path, count: int = 16) -> None:
    """Flip bytes inside the largest member's stored data, which its zip CRC covers. The middle
    of the file (`flip_bytes`) can fall in a header or in torch's alignment padding, which no
    CRC covers: where it lands moves with the payload's size (its paths, say)."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda info: info.compress_size)
    with path.open("rb") as file:  # the local header's name and extra-field lengths, at offset 26
        file.seek(member.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", file.read(4))
    data_start = member.header_offset + 30 + name_length + extra_length
    flip_bytes(path, count, start=data_start + member.compress_size // 2)


def truncate_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
