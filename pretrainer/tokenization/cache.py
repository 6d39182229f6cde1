"""Train a tokenizer on a bounded sample, or load it from the cache.

A tokenizer is cached by (corpus content hash, the tokenizer settings it depends on), so
a run that changes only the model or objective reuses it; each cache entry records the
sha256 of its `tokenizer.json`, and a file that no longer matches is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from itertools import islice
from pathlib import Path

from tokenizers import Tokenizer

from pretrainer.config import ConfigError, TokenizerConfig
from pretrainer.hashing import fingerprint, write_text_atomic
from pretrainer.tokenization.kinds import KINDS, KINDS_VERSION
from pretrainer.tokenization.special import SPECIAL_TOKENS, add_template


def train_tokenizer(cfg: TokenizerConfig, documents: Iterable[str]) -> Tokenizer:
    """Train on the first `cfg.sample_documents` non-empty documents (read as a stream;
    memory is bounded by the sample, not the corpus)."""
    sample = [doc for doc in islice(documents, cfg.sample_documents) if doc.strip()]
    if not sample:
        raise ConfigError("the tokenizer has no text to learn from: is the corpus empty?")
    tokenizer = KINDS[cfg.name](cfg, sample)
    ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))) or tokenizer.get_vocab_size() <= len(SPECIAL_TOKENS):
        raise ConfigError("the tokenizer learned no vocabulary: is the corpus empty?")
    add_template(tokenizer)
    return tokenizer


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
    try:
        text = (entry / "tokenizer.json").read_text()
        expected = json.loads((entry / "meta.json").read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        return None
    if hashlib.sha256(text.encode()).hexdigest() != expected:
        return None
    return Tokenizer.from_str(text)
