"""Content hashes and atomic writes used by every on-disk cache."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (dataclasses included)."""
    normalised = [asdict(p) if is_dataclass(p) else p for p in parts]
    text = json.dumps(normalised, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 through a temporary file in the same directory, flushed to disk, then rename
    over `path`: a reader sees the old file or the new one, never a part. On any failure (a
    full disk, an interrupt) the temporary file is removed and `path` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes it private; the file is as open() would make it
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def publish_dir_atomic(staging: Path, final: Path) -> None:
    """Move a fully written staging directory into place; a concurrent winner is kept."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes it private: a shared cache is read by others
    try:
        os.replace(staging, final)
    except OSError:  # another process published the same content first
        shutil.rmtree(staging, ignore_errors=True)
