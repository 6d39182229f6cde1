"""Corpus sources: the embedded synthetic benchmark, local text files, a hub dataset.

Each source yields documents (str) in a fixed order and has a content fingerprint, so
caches built from it are reused exactly when the text is the same. Local files are decoded
by `pretrainer.data.text.decoded_lines` (`data.decode_errors`); the setting is not part of
the fingerprint: strict either fails or reads the same text as replace.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from pretrainer.config import DataConfig
from pretrainer.data.text import decoded_lines
from pretrainer.errors import ConfigError
from pretrainer.hashing import file_sha256, fingerprint

SYNTHETIC_GENERATOR_VERSION = 1  # bump when the generator's output changes


class CorpusFormatError(ConfigError):
    """A corpus file cannot be read; the message names the file and line. A ConfigError (and so
    a ValueError), so the CLI reports it in one line without a traceback."""


@dataclass
class Corpus:
    """A re-iterable stream of documents and the hash of their content."""

    fingerprint: str
    _iterate: Callable[[], Iterator[str]]
    max_documents: int | None = None
    size: int | None = None  # documents the source holds, where known without reading it

    def documents(self) -> Iterator[str]:
        return islice(self._iterate(), self.max_documents)

    @property
    def expected_documents(self) -> int | None:
        """How many documents `documents()` yields, where known in advance (packing's ETA): at
        most this many for a hub table, whose empty texts are skipped; None for a stream."""
        known = [count for count in (self.size, self.max_documents) if count is not None]
        return min(known) if known else None


def open_corpus(cfg: DataConfig) -> Corpus:
    builders = {"synthetic": _synthetic, "text_files": _text_files, "hub": _hub}
    corpus = builders[cfg.source](cfg)
    corpus.max_documents = cfg.max_documents
    corpus.fingerprint = fingerprint(corpus.fingerprint, cfg.max_documents)
    return corpus


def _synthetic(cfg: DataConfig) -> Corpus:
    from pretrainer.data.synthetic import generate_corpus

    key = fingerprint("synthetic", SYNTHETIC_GENERATOR_VERSION, cfg.seed, cfg.num_documents)
    return Corpus(key, lambda: iter(generate_corpus(cfg.seed, cfg.num_documents)), size=cfg.num_documents)


def _text_files(cfg: DataConfig) -> Corpus:
    paths = [Path(p).expanduser() for p in cfg.paths]
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"data.paths: {path} is not a file")
        if path.suffix not in (".txt", ".jsonl"):
            raise ConfigError(f"data.paths: {path} must end in .txt or .jsonl")
    key = fingerprint("text_files", [file_sha256(p) for p in paths], cfg.text_column)

    def iterate() -> Iterator[str]:
        for path in paths:
            yield from _read_text_file(path, cfg.text_column, cfg.decode_errors)

    return Corpus(key, iterate)


def _read_text_file(path: Path, text_column: str, decode_errors: str = "strict") -> Iterator[str]:
    """Stream one file: `.txt` has a document per non-empty line, `.jsonl` an object per line."""
    for line_number, line in decoded_lines(path, decode_errors, "data.decode_errors", CorpusFormatError):
        if not line.strip():
            continue
        if path.suffix == ".txt":
            yield line.rstrip("\r\n")
            continue
        yield _jsonl_text(line, text_column, path, line_number)


def _jsonl_text(line: str, text_column: str, path: Path, line_number: int) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise CorpusFormatError(f"{path}:{line_number}: invalid JSON ({error.msg})") from None
    if not isinstance(record, dict) or text_column not in record:
        found = ", ".join(record) if isinstance(record, dict) else type(record).__name__
        raise CorpusFormatError(f"{path}:{line_number}: no field {text_column!r} (found: {found})")
    text = record[text_column]
    if not isinstance(text, str):
        raise CorpusFormatError(f"{path}:{line_number}: field {text_column!r} is not a string")
    return text


def _hub(cfg: DataConfig) -> Corpus:
    """`datasets.load_dataset`: a hub name, or a local directory of the same files offline. With
    `data.streaming` the files are read as a stream, never downloaded or converted first."""
    import datasets

    if cfg.streaming:  # what load_dataset(..., streaming=True) does, keeping the builder for its hash
        builder = datasets.load_dataset_builder(cfg.name, cfg.config, revision=cfg.revision)
        dataset = builder.as_streaming_dataset(split=cfg.split)
        # The builder's hash covers its data files (the repo's commit on the hub, each local file's
        # mtime), as datasets' own cache does: nothing is read to compute it.
        key = fingerprint("hub-streaming", builder.hash, builder.config_id, cfg.split, cfg.text_column)
    else:
        dataset = datasets.load_dataset(cfg.name, cfg.config, split=cfg.split, revision=cfg.revision)
        # datasets hashes the files and processing that produced this table.
        key = fingerprint("hub", dataset._fingerprint, cfg.text_column)
    columns = dataset.column_names or list(next(iter(dataset), {}))  # a stream may know them only from a row
    if cfg.text_column not in columns:
        raise ConfigError(
            f"data.text_column={cfg.text_column!r} is not a column of {cfg.name}; columns: {', '.join(columns)}"
        )

    def iterate() -> Iterator[str]:
        # Arrow batches are memory-mapped, or (streaming) read batch by batch: a corpus larger than
        # RAM, or than the disk, streams through here.
        for batch in dataset.select_columns([cfg.text_column]).iter(batch_size=1000):
            yield from (text for text in batch[cfg.text_column] if text)

    return Corpus(key, iterate, size=None if cfg.streaming else dataset.num_rows)
