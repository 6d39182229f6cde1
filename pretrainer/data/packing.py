"""Packing a corpus into a block cache entry, and verifying an entry before it is used.

An entry holds, per split, a token stream (`train.bin`, `eval.bin`) and a word-start stream
(`*.words.bin`), plus `meta.json` recording each file's size and sha256. It is written to a
staging directory and renamed into place, so a crash never leaves a half-written entry; a
failed pack removes its staging directory, and one left by a killed process is removed by the
next pack on its host. An entry that fails verification is set aside and rebuilt, never used.

A document longer than `max_document_chars` is encoded piecewise (cut at whitespace, see
`pretrainer.data.text.split_long_text`): the same ids as encoding it whole, in bounded memory.

Packing streams the documents in batches (`ENCODE_BATCH_DOCUMENTS`): one `encode_batch` call, one
conversion to arrays and one write per file for each batch, so the Python work per document is
small next to the tokenizer's. With `data.num_proc` > 1 worker processes pack the batches and the
parent writes them in document order: the entry's bytes are the same for every `num_proc`, which
is why it is not part of the cache key. Memory holds a few batches, whatever the corpus size.

Progress is counted in the parent as it writes each batch (documents, tokens, tokens/s), so it is
the same whichever process packed the batch: a bar on a terminal, a line every `LINE_EVERY_S` in a
log (`pretrainer.loggers.ProgressBar`); with an ETA when the number of documents is known.
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
from collections.abc import Iterable, Iterator, Sized
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from pretrainer.data.pack_workers import pool_packed, worker_count
from pretrainer.data.text import split_long_text
from pretrainer.hashing import file_sha256, publish_dir_atomic
from pretrainer.loggers import ProgressBar, Stopwatch, info

ENCODE_BATCH_DOCUMENTS = 1000  # documents per batch: what one encode_batch call, worker task and write cover
ENCODE_BATCH_CHARS = 1_000_000  # a batch ends before this many characters (long documents: bounded memory)
AUTO_POOL_MIN_CHARS = 8_000_000  # num_proc=null packs this much in-process before it starts workers
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
                  max_document_chars: int = 100_000, num_proc: int | None = None,
                  total_documents: int | None = None) -> dict:
    """Pack into a staging directory and publish it as `entry`; returns its meta. The staging
    directory is removed on any failure (a full disk, Ctrl-C), so a failure never keeps disk space.
    `num_proc` (data.num_proc) processes encode; the entry's bytes do not depend on it.
    `total_documents` (default: `len(documents)` when it has one) gives the progress an ETA."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_leftovers(entry.parent)
    staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.staging-{_owner_tag()}-"))
    if total_documents is None and isinstance(documents, Sized):
        total_documents = len(documents)
    info(f"packing the corpus into {entry}")
    clock = Stopwatch()
    try:
        packer = BatchPacker(tokenizer, eval_fraction, max_document_chars)
        with ProgressBar("pack", total_documents, unit="documents") as bar:
            meta = _write_streams(packed_batches(documents, packer, num_proc), packer.dtype, staging, bar)
            bar.finish()
        (staging / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        publish_dir_atomic(staging, entry)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    info(f"packed {meta['documents']:,} documents: {meta['train_tokens']:,} train + {meta['eval_tokens']:,} eval "
         f"tokens in {clock.elapsed():.1f}s")
    return meta


def _write_streams(batches: Iterable[PackedBatch], dtype: np.dtype, staging: Path, bar: ProgressBar) -> dict:
    """The token and word-start files of both splits in `staging`, one write per file and batch;
    returns their meta (each file's sha256 is computed as it is written, not read back). Each batch
    written advances `bar` by its documents."""
    counts = {"train": 0, "eval": 0, "documents": 0}
    names = [name for split in SPLITS for name in _file_names(split)]
    digests = {name: hashlib.sha256() for name in names}
    with ExitStack() as stack:
        files = {name: stack.enter_context(open(staging / name, "wb")) for name in names}
        for batch in batches:
            for split in SPLITS:
                for name, array in zip(_file_names(split), batch.streams[split], strict=True):
                    data = memoryview(array)  # (n,) contiguous: written and hashed without a copy
                    files[name].write(data)
                    digests[name].update(data)
                counts[split] += len(batch.streams[split][0])
            counts["documents"] += batch.documents
            tokens = counts["train"] + counts["eval"]
            bar.update(counts["documents"], tokens=tokens, **{"tok/s": tokens / max(bar.elapsed(), 1e-9)})
    return {"format": BLOCKS_FORMAT, "dtype": dtype.name, "train_tokens": counts["train"],
            "eval_tokens": counts["eval"], "documents": counts["documents"],
            "files": {name: {"bytes": (staging / name).stat().st_size, "sha256": digests[name].hexdigest()}
                      for name in names}}


# Encoding a batch of documents ----------------------------------------------------------------


@dataclass
class PackedBatch:
    """One batch of documents as it goes into the entry: per split, (token ids, word starts), each
    (n,) with a [SEP] after every document."""

    streams: dict[str, tuple[np.ndarray, np.ndarray]]
    documents: int


@dataclass
class EncodedDocuments:
    """Documents encoded, as flat streams in document order, no [SEP]: `ids` (N,) in the entry's
    token dtype, `word_starts` (N,) uint8, `lengths` (D,) tokens of each document."""

    ids: np.ndarray
    word_starts: np.ndarray
    lengths: np.ndarray

    def __iter__(self) -> Iterator[tuple[list[int], np.ndarray]]:
        """Each document's (ids, word starts)."""
        ends = np.cumsum(self.lengths)
        for start, end in zip((ends - self.lengths).tolist(), ends.tolist(), strict=True):
            yield self.ids[start:end].tolist(), self.word_starts[start:end]


@dataclass
class BatchPacker:
    """Turns a batch of documents into a `PackedBatch`; pickled into each worker process."""

    tokenizer: Tokenizer
    eval_fraction: float
    max_document_chars: int

    @property
    def dtype(self) -> np.dtype:
        return token_dtype(self.tokenizer.get_vocab_size())

    def pack(self, first_index: int, documents: list[str]) -> PackedBatch:
        """`documents`, the first being document `first_index` of the corpus, each followed by
        [SEP] and put in the split `is_eval_document` gives it."""
        encoded = encode_documents(self.tokenizer, documents, self.max_document_chars)
        ends = np.cumsum(encoded.lengths)
        ids = np.insert(encoded.ids, ends, self.tokenizer.token_to_id("[SEP]"))
        starts = np.insert(encoded.word_starts, ends, 1)  # [SEP] is a word of its own
        is_eval = np.array([is_eval_document(first_index + i, self.eval_fraction) for i in range(len(documents))],
                           dtype=bool)
        in_eval = np.repeat(is_eval, encoded.lengths + 1)  # (N + D,) the split of each token, [SEP]s included
        return PackedBatch({"train": (ids[~in_eval], starts[~in_eval]), "eval": (ids[in_eval], starts[in_eval])},
                           len(documents))


def encode_documents(tokenizer: Tokenizer, documents: list[str], max_document_chars: int) -> EncodedDocuments:
    """The documents' ids and word starts, no special tokens, from one `encode_batch` call.

    A document longer than `max_document_chars` is encoded as its pieces (`split_long_text`),
    concatenated; a piece cut at whitespace begins a word, so with cuts at spaces the ids and
    word starts are those of the whole document (tests/faults/test_bad_data.py).
    """
    pieces, owners = _pieces(documents, max_document_chars)
    encodings = tokenizer.encode_batch(pieces, add_special_tokens=False)
    piece_lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
    dtype = token_dtype(tokenizer.get_vocab_size())
    # One conversion per batch, not one per document: the per-call overhead is what made packing slow.
    ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=dtype, count=int(piece_lengths.sum()))
    starts = _word_starts(list(chain.from_iterable(e.word_ids for e in encodings)))
    starts[(np.cumsum(piece_lengths) - piece_lengths)[piece_lengths > 0]] = 1  # each piece begins a word
    lengths = piece_lengths
    if owners is not None:  # a document's tokens are those of its pieces
        lengths = np.bincount(owners, weights=piece_lengths, minlength=len(documents)).astype(np.int64)
    return EncodedDocuments(ids, starts, lengths)


def _pieces(documents: list[str], max_document_chars: int) -> tuple[list[str], np.ndarray | None]:
    """The texts to encode and, when some document was cut, the document each piece belongs to."""
    if all(len(document) <= max_document_chars for document in documents):
        return documents, None
    split = [split_long_text(document, max_document_chars) for document in documents]
    owners = np.repeat(np.arange(len(documents)), [len(pieces) for pieces in split])
    return [piece for pieces in split for piece in pieces], owners


def _word_starts(word_ids: list[int | None]) -> np.ndarray:
    """(n,) uint8: 1 where a token begins a new pre-tokenized word. The first token always does, and
    so does a token of no word (an added token): as floats, None is NaN, unequal to everything."""
    words = np.array(word_ids, dtype=np.float64)
    starts = np.ones(len(words), dtype=np.uint8)
    starts[1:] = words[1:] != words[:-1]
    return starts


def is_eval_document(index: int, eval_fraction: float) -> bool:
    """Spread held-out documents evenly: document i is eval when the running quota ticks."""
    return math.floor((index + 1) * eval_fraction) > math.floor(index * eval_fraction)


# Batches, in this process or in worker processes ------------------------------------------------


def packed_batches(documents: Iterable[str], packer: BatchPacker, num_proc: int | None) -> Iterator[PackedBatch]:
    """The corpus packed batch by batch, in document order, by `num_proc` processes (None: one per
    core). Auto packs the first `AUTO_POOL_MIN_CHARS` here: a corpus that small is done before
    workers would have started. The output is the same whichever process packs a batch."""
    workers = worker_count(num_proc)
    batches = document_batches(documents)
    in_process_chars = math.inf if workers == 1 else AUTO_POOL_MIN_CHARS if num_proc is None else 0
    packed_chars = 0
    while packed_chars < in_process_chars:
        batch = next(batches, None)
        if batch is None:
            return
        yield packer.pack(*batch)
        packed_chars += sum(map(len, batch[1]))
    yield from pool_packed(batches, packer, workers)


def document_batches(documents: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """(index of the first document, documents): at most `ENCODE_BATCH_DOCUMENTS` documents and, unless
    one document is longer, `ENCODE_BATCH_CHARS` characters, so a batch of long documents stays small."""
    batch: list[str] = []
    start = chars = 0
    for document in documents:
        if batch and (len(batch) == ENCODE_BATCH_DOCUMENTS or chars + len(document) > ENCODE_BATCH_CHARS):
            yield start, batch
            start, batch, chars = start + len(batch), [], 0
        batch.append(document)
        chars += len(document)
    if batch:
        yield start, batch
