"""Packing a corpus into a block cache entry, and verifying an entry before it is used.

An entry holds, per split, a token stream (`train.bin`, `eval.bin`) and a word-start stream
(`*.words.bin`), plus `meta.json` recording each file's size and sha256. It is written to a
staging directory and renamed into place, so a crash never leaves a half-written entry; a
failed pack removes its staging directory, and one left by a killed process is removed by the
next pack on its host. An entry that fails verification is set aside and rebuilt, never used.

A document longer than `max_document_chars` is encoded piecewise (cut at whitespace, see
`pretrainer.data.text.split_long_text`): the same ids as encoding it whole, in bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from pretrainer.data.text import split_long_text
from pretrainer.hashing import file_sha256, publish_dir_atomic

ENCODE_BATCH_DOCUMENTS = 1000
BLOCKS_FORMAT = "blocks-v3"  # the cache key's version and meta.json's format tag
SPLITS = ("train", "eval")
FULL_VERIFY_MAX_BYTES = 1 << 30  # verify_cache=auto hashes entries up to this size
LEFTOVER_QUIET_S = 600  # a dead writer's leftover is removed once nothing in it changed for this long
# `.{key}.staging-{host}-{pid}-{random}` (a pack in progress) or `.{key}.discarded-...` (an
# entry set aside to be deleted): the host and pid tell whether the writer is still alive.
_LEFTOVER = re.compile(r"\.\w+\.(?:staging|discarded)-(?P<host>.+)-(?P<pid>\d+)-\w+")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)


# Verification ----------------------------------------------------------------------------------


def _file_names(split: str) -> tuple[str, str]:
    return f"{split}.bin", f"{split}.words.bin"


def verified_meta(entry: Path, dtype: np.dtype, verify: str) -> tuple[dict | None, str | None]:
    """(meta, None) for an entry that passes, (None, None) when there is none, (None, reason) when
    it fails: meta.json unreadable or incomplete, a file missing or of the wrong size, sizes that
    disagree with the token counts, or (full) a sha256 that differs."""
    if not entry.exists():
        return None, None
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "meta.json missing"
    except (OSError, ValueError) as error:
        return None, f"meta.json unreadable: {error}"
    problem = _meta_problem(meta, dtype) or _size_problem(entry, meta)
    if problem is None and _hashes_checked(meta, verify):
        problem = _hash_problem(entry, meta)
    return (None, problem) if problem else (meta, None)


def _meta_problem(meta: object, dtype: np.dtype) -> str | None:
    if not isinstance(meta, dict) or meta.get("format") != BLOCKS_FORMAT:
        return f"meta.json is not a {BLOCKS_FORMAT} entry"
    counts = [meta.get(f"{split}_tokens") for split in SPLITS] + [meta.get("documents")]
    files = meta.get("files")
    names = [name for split in SPLITS for name in _file_names(split)]
    if not all(isinstance(n, int) and n >= 0 for n in counts) or not isinstance(files, dict) \
            or sorted(files) != sorted(names):
        return "meta.json lacks the token counts or the file list"
    if not all(isinstance(f, dict) and isinstance(f.get("bytes"), int) and isinstance(f.get("sha256"), str)
               for f in files.values()):
        return "meta.json lacks a file's size or sha256"
    if meta.get("dtype") != dtype.name:
        return f"token dtype {meta.get('dtype')}, the tokenizer needs {dtype.name}"
    return None


def _size_problem(entry: Path, meta: dict) -> str | None:
    """Each file as large as recorded, and the records as large as the token counts say."""
    itemsize = np.dtype(meta["dtype"]).itemsize
    for split in SPLITS:
        tokens, words = _file_names(split)
        expected = {tokens: meta[f"{split}_tokens"] * itemsize, words: meta[f"{split}_tokens"]}
        for name, size in expected.items():
            recorded = meta["files"][name]["bytes"]
            if recorded != size:
                return f"meta.json records {recorded} bytes for {name}, {size} for its tokens"
            try:
                actual = (entry / name).stat().st_size
            except OSError:
                return f"{name} missing"
            if actual != recorded:
                return f"{name}: {actual} bytes, expected {recorded}"
    return None


def _hashes_checked(meta: dict, verify: str) -> bool:
    total = sum(f["bytes"] for f in meta["files"].values())
    return verify == "full" or (verify == "auto" and total <= FULL_VERIFY_MAX_BYTES)


def _hash_problem(entry: Path, meta: dict) -> str | None:
    for name, recorded in sorted(meta["files"].items()):
        if file_sha256(entry / name) != recorded["sha256"]:
            return f"{name}: sha256 differs from the one recorded"
    return None


def discard(entry: Path) -> None:
    """Remove a bad entry: renamed aside first (atomic), so no reader or writer ever sees it
    half-deleted; a process that has it memory-mapped keeps reading its own inodes (Linux)."""
    aside = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.discarded-{_owner_tag()}-"))
    try:
        os.replace(entry, aside / entry.name)
    except FileNotFoundError:  # another process set it aside first
        pass
    finally:
        shutil.rmtree(aside, ignore_errors=True)


# Packing ---------------------------------------------------------------------------------------


def _owner_tag() -> str:
    """`{host}-{pid}`: names the staging and discarded directories of this process."""
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def _remove_dead_leftovers(directory: Path) -> list[Path]:
    """Remove staging and discarded directories left by killed processes of this host: their pid
    no longer runs and nothing in them changed for `LEFTOVER_QUIET_S` (a container with the same
    host name but its own pids may still be writing one). Returns them. Others are kept."""
    host = _owner_tag().rsplit("-", 1)[0]
    removed = []
    for path in directory.iterdir() if directory.is_dir() else ():
        match = _LEFTOVER.fullmatch(path.name)
        if match and match["host"] == host and not _pid_alive(int(match["pid"])) and _quiet(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _quiet(path: Path) -> bool:
    """Nothing in `path` (itself included) was modified in the last `LEFTOVER_QUIET_S` seconds."""
    try:
        newest = max(p.stat().st_mtime for p in [path, *path.iterdir()])
    except OSError:  # removed meanwhile
        return False
    return time.time() - newest > LEFTOVER_QUIET_S


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by another user
        return True
    return True


def pack_to_cache(documents: Iterable[str], tokenizer: Tokenizer, eval_fraction: float, entry: Path,
                   max_document_chars: int = 100_000) -> dict:
    """Pack into a staging directory and publish it as `entry`; returns its meta. The staging
    directory is removed on any failure (a full disk, Ctrl-C), so a failure never keeps disk space."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_leftovers(entry.parent)
    staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.staging-{_owner_tag()}-"))
    try:
        meta = _write_streams(documents, tokenizer, eval_fraction, staging, max_document_chars)
        (staging / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        publish_dir_atomic(staging, entry)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return meta


def _write_streams(documents: Iterable[str], tokenizer: Tokenizer, eval_fraction: float, staging: Path,
                   max_document_chars: int) -> dict:
    """The token and word-start files of both splits in `staging`; returns their meta (each
    file's sha256 is computed as it is written, not read back)."""
    dtype = token_dtype(tokenizer.get_vocab_size())
    sep_id = tokenizer.token_to_id("[SEP]")
    counts = {"train": 0, "eval": 0, "documents": 0}
    names = [name for split in SPLITS for name in _file_names(split)]
    digests = {name: hashlib.sha256() for name in names}
    files = {name: open(staging / name, "wb") for name in names}

    def write(name: str, array: np.ndarray) -> None:
        data = array.tobytes()
        files[name].write(data)
        digests[name].update(data)

    try:
        for start, batch in _batches(documents, ENCODE_BATCH_DOCUMENTS):
            for offset, (ids, starts) in enumerate(encode_documents(tokenizer, batch, max_document_chars)):
                split = "eval" if is_eval_document(start + offset, eval_fraction) else "train"
                write(f"{split}.bin", np.asarray(ids + [sep_id], dtype=dtype))
                write(f"{split}.words.bin", np.append(starts, np.uint8(1)))  # [SEP] is a word of its own
                counts[split] += len(ids) + 1
            counts["documents"] += len(batch)
    finally:
        for file in files.values():
            file.close()
    return {"format": BLOCKS_FORMAT, "dtype": dtype.name, "train_tokens": counts["train"],
            "eval_tokens": counts["eval"], "documents": counts["documents"],
            "files": {name: {"bytes": (staging / name).stat().st_size, "sha256": digests[name].hexdigest()}
                      for name in names}}


def encode_documents(tokenizer: Tokenizer, documents: list[str],
                     max_document_chars: int) -> list[tuple[list[int], np.ndarray]]:
    """(ids, word starts) of each document, no special tokens; word starts are (len(ids),) uint8.

    A document longer than `max_document_chars` is encoded as its pieces (`split_long_text`),
    concatenated; a piece cut at whitespace begins a word, so with cuts at spaces the ids and
    word starts are those of the whole document (tests/faults/test_bad_data.py).
    """
    pieces, owners = [], []
    for index, document in enumerate(documents):
        for piece in split_long_text(document, max_document_chars):
            pieces.append(piece)
            owners.append(index)
    encoded: list[tuple[list[int], list[np.ndarray]]] = [([], []) for _ in documents]
    for owner, encoding in zip(owners, tokenizer.encode_batch(pieces, add_special_tokens=False), strict=True):
        encoded[owner][0].extend(encoding.ids)
        encoded[owner][1].append(_word_starts(encoding.word_ids))
    return [(ids, np.concatenate(starts)) for ids, starts in encoded]


def _word_starts(word_ids: list[int | None]) -> np.ndarray:
    """(n,) uint8: 1 where a token begins a new pre-tokenized word (the first token always does)."""
    words = np.array([-1 if w is None else w for w in word_ids], dtype=np.int64)
    starts = np.ones(len(words), dtype=np.uint8)
    starts[1:] = (words[1:] != words[:-1]) | (words[1:] == -1)
    return starts


def _batches(documents: Iterable[str], size: int) -> Iterator[tuple[int, list[str]]]:
    iterator = iter(documents)
    start = 0
    while batch := list(islice(iterator, size)):
        yield start, batch
        start += len(batch)


def is_eval_document(index: int, eval_fraction: float) -> bool:
    """Spread held-out documents evenly: document i is eval when the running quota ticks."""
    return math.floor((index + 1) * eval_fraction) > math.floor(index * eval_fraction)


