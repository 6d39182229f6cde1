"""Tokenizers (Hugging Face `tokenizers`): the kinds, their training and cache, the
special tokens and template every kind shares."""

from pretrainer.tokenization.cache import (
    load_or_train_tokenizer,
    read_tokenizer,
    tokenizer_cache_entry,
    tokenizer_fingerprint,
    train_tokenizer,
)
from pretrainer.tokenization.kinds import KINDS, with_bpe_dropout
from pretrainer.tokenization.special import (
    CLS,
    MASK,
    PAD,
    SEP,
    SPECIAL_TOKENS,
    UNK,
    SpecialIds,
    add_special_tokens,
    add_template,
    sentinel_token,
)

__all__ = [
    "CLS", "KINDS", "MASK", "PAD", "SEP", "SPECIAL_TOKENS", "UNK", "SpecialIds", "add_special_tokens", "add_template",
    "load_or_train_tokenizer", "read_tokenizer", "sentinel_token", "tokenizer_cache_entry", "tokenizer_fingerprint",
    "train_tokenizer", "with_bpe_dropout",
]
