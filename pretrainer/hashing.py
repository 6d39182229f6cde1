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
    """Write through a temporary file in the same directory, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def publish_dir_atomic(staging: Path, final: Path) -> None:
    """Move a fully written staging directory into place; a concurrent winner is kept."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staging, final)
    except OSError:  # another process published the same content first
        shutil.rmtree(staging, ignore_errors=True)
