"""A run dir used by one process at a time, and its metrics log cut back to a resumed step."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pretrainer.errors import RunDirError
from pretrainer.hashing import write_text_atomic

LOCK_FILE = ".lock"
ZERO_SHOT_PHASE = "zero_shot"  # the minimal pairs scored during pretraining (zero_shot.every)
PRETRAIN_PHASES = ("pretrain", "pretrain_eval", ZERO_SHOT_PHASE)


@contextmanager
def hold_run_dir(run_dir: Path) -> Iterator[None]:
    """An exclusive lock on `run_dir` while the block runs: a second process (a second
    `resume=true`, a sweep job started twice) is refused instead of interleaving its
    writes. `flock` is released by the kernel when the process dies, so `kill -9` leaves no stale lock."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunDirError(f"{run_dir} is in use by {holder}; wait for it to finish or use another run dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pretrainer pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def truncate_metrics(path: Path, step: int) -> int:
    """Keep the pretraining lines of `metrics.jsonl` up to `step` (what the resumed
    checkpoint had logged) and drop the rest, so that a resumed run's log holds each step
    once. Stops at the first line past `step`, of another phase, or unreadable (a line cut
    by `kill -9`). Returns the number of lines dropped."""
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if not isinstance(record, dict) or record.get("phase") not in PRETRAIN_PHASES or record.get("step", 0) > step:
            break
        kept.append(line)
    if len(kept) < len(lines):
        write_text_atomic(path, "".join(f"{line}\n" for line in kept))
    return len(lines) - len(kept)


def remove_if_nothing_ran(run_dir: Path) -> None:
    """A run refused before any work (bad config or input) leaves no directory behind: one that
    holds only Hydra's record, the log and this command's lock is removed, and so are the
    default layout's `runs/<date>/` and `runs/` when nothing else is in them."""
    if not run_dir.is_dir() or any(p.name not in (".hydra", "cli.log", LOCK_FILE) for p in run_dir.iterdir()):
        return
    with open(run_dir / LOCK_FILE, "a") as lock:  # a process that holds the dir keeps it
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return
        shutil.rmtree(run_dir, ignore_errors=True)
    for parent in run_dir.parents:
        if not (re.fullmatch(r"\d{4}-\d{2}-\d{2}", parent.name) or parent.name == "runs"):
            break
        with contextlib.suppress(OSError):  # only when empty
            parent.rmdir()
