"""What a tokenizer does to held-out text, in the numbers a tokenizer ablation needs.

Words are whitespace-separated words of the raw text, the same for every kind, so the
figures compare across kinds: a token belongs to the word of the first non-space
character it covers (a lone `Ġ` or `▁` belongs to the word that follows it).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np
from tokenizers import Tokenizer

from pretrainer.tokenization.special import UNK


@dataclass
class TokenizerReport:
    kind: str
    vocab_size: int
    documents: int
    words: int
    tokens: int
    fertility: float  # tokens per word
    split_share: float  # share of words cut into more than one token
    unk_rate: float  # share of tokens that are [UNK]
    bytes_per_token: float  # UTF-8 bytes of text per token
    length_percentiles: dict[str, float]  # tokens per document: p50, p90, p99, max
    over_block_share: float  # share of documents longer than the block size
    block_size: int
    samples: list[dict[str, object]] = field(default_factory=list)  # {"text", "tokens"}

    def to_dict(self) -> dict:
        return asdict(self)


def measure(tokenizer: Tokenizer, kind: str, documents: list[str], block_size: int,
            show: list[str]) -> TokenizerReport:
    """Diagnostics of `tokenizer` on `documents`; `show` lists sentences to segment."""
    encodings = tokenizer.encode_batch(documents, add_special_tokens=False)
    unk_id = tokenizer.token_to_id(UNK)
    words = tokens = split_words = unknown = 0
    lengths = []
    for text, encoding in zip(documents, encodings, strict=True):
        per_word = _tokens_per_word(text, encoding.offsets)
        words += len(per_word)
        split_words += int((per_word > 1).sum())
        tokens += len(encoding.ids)
        unknown += sum(1 for token_id in encoding.ids if token_id == unk_id)
        lengths.append(len(encoding.ids))
    lengths_array = np.asarray(lengths or [0])
    text_bytes = sum(len(text.encode()) for text in documents)
    return TokenizerReport(
        kind=kind, vocab_size=tokenizer.get_vocab_size(), documents=len(documents), words=words, tokens=tokens,
        fertility=tokens / max(words, 1), split_share=split_words / max(words, 1),
        unk_rate=unknown / max(tokens, 1), bytes_per_token=text_bytes / max(tokens, 1),
        length_percentiles={f"p{q}": float(np.percentile(lengths_array, q)) for q in (50, 90, 99)}
        | {"max": float(lengths_array.max())},
        over_block_share=float((lengths_array > block_size).mean()), block_size=block_size,
        samples=[{"text": text, "tokens": tokenizer.encode(text, add_special_tokens=False).tokens} for text in show],
    )


def _tokens_per_word(text: str, offsets: list[tuple[int, int]]) -> np.ndarray:
    """(words,) number of tokens attributed to each whitespace word of `text`: a token goes
    to the first word that ends after its start (its own word, or the next one after a space)."""
    word_ends = np.array([match.end() for match in re.finditer(r"\S+", text)], dtype=np.int64)
    starts = np.array([start for start, _ in offsets], dtype=np.int64)
    words = np.searchsorted(word_ends, starts, side="right")  # (tokens,) word index, len(word_ends) past the end
    return np.bincount(words[words < len(word_ends)], minlength=len(word_ends))
