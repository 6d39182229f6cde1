"""Train a tokenizer on a bounded sample, or load it from the cache.

A tokenizer is cached by (corpus content hash, the tokenizer settings it depends on), so
a run that changes only the model or objective reuses it; each cache entry records the
sha256 of its `tokenizer.json`, and a file that no longer matches is rebuilt (with a
warning), never used.

Documents longer than `max_document_chars` are cut at whitespace into pieces for training
(`pretrainer.data.text.split_long_text`): the trainers' memory grows with the longest
sequence they are given, and one huge line would otherwise take gigabytes.

Progress: reading the sample is counted on the console (`pretrainer.loggers.ProgressBar`: a bar
on a terminal, a line every `LINE_EVERY_S` in a log); the trainers run in Rust and report
nothing back, so training itself gets a line when it starts and one with its time when it ends.
Their own progress bars stay off: they write to the terminal directly, and into logs as noise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from itertools import islice
from pathlib import Path

from tokenizers import Tokenizer

from pretrainer.config import ConfigError, TokenizerConfig
from pretrainer.data.text import split_long_text
from pretrainer.hashing import fingerprint, write_text_atomic
from pretrainer.loggers import ProgressBar, Stopwatch, info, warn
from pretrainer.tokenization.kinds import KINDS, KINDS_VERSION
from pretrainer.tokenization.special import SPECIAL_TOKENS, add_template

PROGRESS_EVERY_DOCUMENTS = 100  # the sample's progress is updated once per this many documents read


def training_sample(cfg: TokenizerConfig, documents: Iterable[str]) -> list[str]:
    """The non-empty documents among the first `cfg.sample_documents`, each longer than
    `cfg.max_document_chars` cut into pieces of at most that many characters."""
    return _read_sample(cfg, documents)[0]


def _read_sample(cfg: TokenizerConfig, documents: Iterable[str]) -> tuple[list[str], int]:
    """(`training_sample`, documents read), counted on the console as they are read: a corpus
    streamed from the hub or from large files can take minutes to give `sample_documents`."""
    sample: list[str] = []
    read = 0
    with ProgressBar("tokenizer sample", cfg.sample_documents, unit="documents") as bar:
        for read, doc in enumerate(islice(documents, cfg.sample_documents), 1):
            if doc and not doc.isspace():
                sample.extend(split_long_text(doc, cfg.max_document_chars))
            if read % PROGRESS_EVERY_DOCUMENTS == 0:
                bar.update(read)
        bar.update(read)
        bar.finish()  # a corpus smaller than sample_documents was read whole
    return sample, read


def train_tokenizer(cfg: TokenizerConfig, documents: Iterable[str]) -> Tokenizer:
    """Train on `training_sample` (read as a stream; memory is bounded by the sample, not the corpus)."""
    clock = Stopwatch()
    sample, read = _read_sample(cfg, documents)
    if not sample:
        raise ConfigError("the tokenizer has no text to learn from: is the corpus empty?")
    read_s = clock.elapsed()
    info(f"tokenizer: training {cfg.name} (vocab_size {cfg.vocab_size:,}) on {read:,} documents "
         f"({sum(map(len, sample)):,} characters, read in {read_s:.1f}s)")
    tokenizer = KINDS[cfg.name](cfg, sample)
    ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))) or tokenizer.get_vocab_size() <= len(SPECIAL_TOKENS):
        raise ConfigError("the tokenizer learned no vocabulary: is the corpus empty?")
    add_template(tokenizer)
    info(f"tokenizer: trained {cfg.name}, {tokenizer.get_vocab_size():,} tokens, in {clock.elapsed() - read_s:.1f}s")
    return tokenizer


def read_tokenizer(path: Path) -> Tokenizer:
    """A `tokenizer.json` from a run or a model directory; a missing or unreadable one is a
    one-line error naming the file (the `tokenizers` exception says neither)."""
    if not path.is_file():
        raise ConfigError(f"{path} not found: the run's tokenizer is needed")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # noqa: BLE001 - `tokenizers` raises a bare Exception for a bad file
        raise ConfigError(f"{path} is not a readable tokenizer.json ({str(error).splitlines()[0][:200]})") from None


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    return hashlib.sha256(tokenizer.to_str().encode()).hexdigest()[:16]


def tokenizer_cache_entry(cfg: TokenizerConfig, corpus_fingerprint: str, cache_dir: Path) -> Path:
    key = fingerprint("tokenizer", KINDS_VERSION, corpus_fingerprint, cfg.training_fields())
    return cache_dir / "tokenizers" / key


def load_or_train_tokenizer(
    cfg: TokenizerConfig, corpus_fingerprint: str, documents: Iterable[str], cache_dir: Path
) -> tuple[Tokenizer, bool]:
    """Reuse the tokenizer cached for (corpus, tokenizer settings) or train and cache it.

    Returns the tokenizer and whether it came from the cache.
    """
    entry = tokenizer_cache_entry(cfg, corpus_fingerprint, cache_dir)
    cached = _read_cached(entry)
    if cached is not None:
        return cached, True
    tokenizer = train_tokenizer(cfg, documents)
    text = tokenizer.to_str()
    write_text_atomic(entry / "tokenizer.json", text)
    write_text_atomic(entry / "meta.json", json.dumps({"sha256": hashlib.sha256(text.encode()).hexdigest()}))
    return tokenizer, False


def _read_cached(entry: Path) -> Tokenizer | None:
    """The cached tokenizer, or None: when there is none, or (with a warning) when it fails verification."""
    if not entry.exists():
        return None
    try:
        data = (entry / "tokenizer.json").read_bytes()
        expected = json.loads((entry / "meta.json").read_text(encoding="utf-8"))["sha256"]
        if hashlib.sha256(data).hexdigest() != expected:
            raise ValueError("tokenizer.json: sha256 differs from the one recorded")
        return Tokenizer.from_str(data.decode("utf-8"))
    except Exception as error:  # unreadable in any way; Tokenizer.from_str raises a plain Exception
        warn(f"cache entry {entry} failed verification ({error}); retraining")
        return None
