"""Train, cache and load subword tokenizers (Hugging Face `tokenizers`).

Every tokenizer has the same special tokens at the same ids, so objectives and heads
never branch on the tokenizer kind. Single and pair inputs use one template for every
architecture: `[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]`. For a decoder `[CLS]` plays
the begin-of-sequence role and the final `[SEP]` is the token whose state sees the
whole input (GPT's "extract" token), so classification reads it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from pretrainer.config import ConfigError, TokenizerConfig
from pretrainer.hashing import fingerprint, write_text_atomic

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)  # ids 0..4 in every tokenizer


def sentinel_token(index: int) -> str:
    """T5's name for the sentinel replacing the `index`-th corrupted span."""
    return f"<extra_id_{index}>"


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    unk: int
    cls: int
    sep: int
    mask: int
    count: int  # ids below `count` are special
    sentinels: tuple[int, ...] = ()  # T5 span sentinels, appended after the vocabulary when an objective needs them
    sentence_ends: tuple[int, ...] = ()  # not special: the ids of . ! ? that end sentences (NSP/SOP, BART)

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> SpecialIds:
        ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
        if ids != list(range(len(SPECIAL_TOKENS))):
            raise ValueError(f"tokenizer special tokens must be {SPECIAL_TOKENS} at ids 0..4, got {ids}")
        sentinels = []
        while (sentinel := tokenizer.token_to_id(sentinel_token(len(sentinels)))) is not None:
            sentinels.append(sentinel)
        # Byte-level BPE also has the space-prefixed form (Ġ.) of each mark.
        marks = [tokenizer.token_to_id(mark) for mark in (".", "!", "?", "\u0120.", "\u0120!", "\u0120?")]
        return cls(*ids, count=len(SPECIAL_TOKENS), sentinels=tuple(sentinels),
                   sentence_ends=tuple(sorted({m for m in marks if m is not None})))

    def all_ids(self) -> list[int]:
        return list(range(self.count)) + list(self.sentinels)


def add_special_tokens(tokenizer: Tokenizer, tokens: list[str]) -> Tokenizer:
    """A copy of `tokenizer` with `tokens` appended as special tokens after the trained
    vocabulary: text encodes exactly as before, so caches keyed by the trained tokenizer stay valid."""
    extended = Tokenizer.from_str(tokenizer.to_str())
    if tokens:
        extended.add_special_tokens(tokens)
    return extended


def _wordpiece(cfg: TokenizerConfig) -> tuple[Tokenizer, trainers.Trainer]:
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=cfg.lowercase, strip_accents=cfg.lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
        special_tokens=list(SPECIAL_TOKENS), show_progress=False,
    )
    return tokenizer, trainer


def _byte_level_bpe(cfg: TokenizerConfig) -> tuple[Tokenizer, trainers.Trainer]:
    tokenizer = Tokenizer(models.BPE())  # no unk: every byte is in the alphabet
    steps = [normalizers.NFC()] + ([normalizers.Lowercase()] if cfg.lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
        special_tokens=list(SPECIAL_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return tokenizer, trainer


TOKENIZER_BUILDERS = {"wordpiece": _wordpiece, "bpe": _byte_level_bpe}


def add_template(tokenizer: Tokenizer) -> None:
    """The single/pair template shared by every architecture (see module docstring)."""
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, SPECIAL_TOKENS.index(CLS)), (SEP, SPECIAL_TOKENS.index(SEP))],
    )


def train_tokenizer(cfg: TokenizerConfig, documents: Iterable[str]) -> Tokenizer:
    """Train on at most `cfg.sample_documents` documents, streamed."""
    tokenizer, trainer = TOKENIZER_BUILDERS[cfg.name](cfg)
    sample = _non_empty(islice(documents, cfg.sample_documents))
    tokenizer.train_from_iterator(sample, trainer=trainer)
    if tokenizer.get_vocab_size() <= len(SPECIAL_TOKENS):
        raise ConfigError("the tokenizer learned no vocabulary: is the corpus empty?")
    add_template(tokenizer)
    return tokenizer


def _non_empty(documents: Iterable[str]) -> Iterator[str]:
    for doc in documents:
        if doc.strip():
            yield doc


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    return hashlib.sha256(tokenizer.to_str().encode()).hexdigest()[:16]


def tokenizer_cache_entry(cfg: TokenizerConfig, corpus_fingerprint: str, cache_dir: Path) -> Path:
    return cache_dir / "tokenizers" / fingerprint("tokenizer-v1", corpus_fingerprint, cfg)


def load_or_train_tokenizer(
    cfg: TokenizerConfig, corpus_fingerprint: str, documents: Iterable[str], cache_dir: Path
) -> tuple[Tokenizer, bool]:
    """Reuse the tokenizer cached for (corpus, tokenizer config) or train and cache it.

    Returns the tokenizer and whether it came from the cache. A cached file whose content
    hash does not match its recorded hash is rebuilt, never used.
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
