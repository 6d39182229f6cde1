"""Special tokens and the input template, the same for every tokenizer kind.

Every tokenizer has the same special tokens at the same ids, so objectives and heads
never branch on the tokenizer kind. Single and pair inputs use one template for every
architecture: `[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]`. For a decoder `[CLS]` plays
the begin-of-sequence role and the final `[SEP]` is the token whose state sees the
whole input (GPT's "extract" token), so classification reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer, processors

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)  # ids 0..4 in every tokenizer


def sentinel_token(index: int) -> str:
    """T5's name for the sentinel replacing the `index`-th corrupted span."""
    return f"<extra_id_{index}>"


def sentinel_ids(tokenizer: Tokenizer) -> list[int]:
    """The ids of T5's sentinels in order (`<extra_id_0>`, `<extra_id_1>`, ...), as many as the vocabulary has."""
    sentinels = []
    while (sentinel := tokenizer.token_to_id(sentinel_token(len(sentinels)))) is not None:
        sentinels.append(sentinel)
    return sentinels


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
        sentinels = sentinel_ids(tokenizer)
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


def add_template(tokenizer: Tokenizer) -> None:
    """The single/pair template shared by every architecture (see module docstring)."""
    tokenizer.post_processor = template(single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1")


def template(single: str, pair: str) -> processors.TemplateProcessing:
    """A post-processor of `single` and `pair` templates over our [CLS] and [SEP] ids."""
    return processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(CLS, SPECIAL_TOKENS.index(CLS)), (SEP, SPECIAL_TOKENS.index(SEP))])
