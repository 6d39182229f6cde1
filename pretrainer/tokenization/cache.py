"""Train a tokenizer on a bounded sample, or load it from the cache.

A tokenizer is cached by (corpus content hash, the tokenizer settings it depends on), so
a run that changes only the model or objective reuses it; each cache entry records the
sha256 of its `tokenizer.json`, and a file that no longer matches is rebuilt (with a
warning), never used.

Documents longer than `max_document_chars` are cut at whitespace into pieces for training
(`pretrainer.data.text.split_long_text`): the trainers' memory grows with the longest
sequence they are given, and one huge line would otherwise take gigabytes.
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
from pretrainer.loggers import warn
from pretrainer.tokenization.kinds import KINDS, KINDS_VERSION
from pretrainer.tokenization.special import SPECIAL_TOKENS, add_template


def training_sample(cfg: TokenizerConfig, documents: Iterable[str]) -> list[str]:
    """The non-empty documents among the first `cfg.sample_documents`, each longer than
    `cfg.max_document_chars` cut into pieces of at most that many characters."""
    return [piece for doc in islice(documents, cfg.sample_documents) if doc and not doc.isspace()
            for piece in split_long_text(doc, cfg.max_document_chars)]


def train_tokenizer(cfg: TokenizerConfig, documents: Iterable[str]) -> Tokenizer:
    """Train on `training_sample` (read as a stream; memory is bounded by the sample, not the corpus)."""
    sample = training_sample(cfg, documents)
    if not sample:
        raise ConfigError("the tokenizer has no text to learn from: is the corpus empty?")
    tokenizer = KINDS[cfg.name](cfg, sample)
    ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))) or tokenizer.get_vocab_size() <= len(SPECIAL_TOKENS):
        raise ConfigError("the tokenizer learned no vocabulary: is the corpus empty?")
    add_template(tokenizer)
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
