"""BART denoising (Lewis et al. 2020): sentence permutation plus text infilling; the
decoder reconstructs the original block.

- Sentence permutation: within each document of a block, the sentences (cut after
  `. ! ?`) are shuffled; document separators stay in place.
- Text infilling, as fairseq's `DenoisingDataset.add_whole_word_mask` (BART's released
  code): span lengths ~ Poisson(lambda = `mean_span_length`) in whole words are drawn until
  they cover `mask_prob` (30%) of the words, the last trimmed to that budget; the spans are
  placed at random, apart from each other, and each becomes one token (`--replace-length 1`):
  `[MASK]`, or with probability `random_token_prob` a random token (`--mask-random`). A
  zero-length span inserts one. With `whole_word_spans=false` spans are counted in tokens.
The target is the uncorrupted block (`[CLS]` first, as BART's `<s>`): the decoder reads
it shifted right and predicts every next token. The corrupted input is always (B, T), the
block's shape (compiled steps need static shapes): it is padded with [PAD] (attention mask
False) after its last token, and cut at T in the rare row where zero-length spans insert
more masks than the other spans removed tokens.

Collation is vectorised over the batch (numpy, no per-row loop): the span lengths, places
and sentence orders of all rows are drawn at once.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pretrainer.config import ObjectiveConfig
from pretrainer.data.blocks import BlockBatch
from pretrainer.objectives.base import Objective, ObjectiveOutput, lm_head, numpy_rng
from pretrainer.objectives.masking import Spans, place_spans, sample_span_lengths, take_rows
from pretrainer.objectives.t5_span import seq2seq_loss
from pretrainer.tokenization import SpecialIds


def permute_sentences(tokens: np.ndarray, sentence_ends: np.ndarray, sep_id: int,
                      rng: np.random.Generator) -> np.ndarray:
    """(B, T) -> (B, T) with the sentences between separators shuffled (`sentence_order`)."""
    return take_rows(tokens, sentence_order(tokens, sentence_ends, sep_id, rng))


def sentence_order(tokens: np.ndarray, sentence_ends: np.ndarray, sep_id: int, rng: np.random.Generator) -> np.ndarray:
    """(B, T) -> (B, T) source position of each output token, with the sentences between
    separators shuffled, each order equally likely; position 0 ([CLS]) and separators stay.

    Each row is cut into pieces ([CLS] alone, each separator alone, the stretches between)
    and pieces into sentences (cut after a sentence end). Sorting the tokens of a row by
    (piece, a random key of their sentence), stably so that a sentence keeps its token
    order, shuffles the sentences within each piece and leaves the pieces where they were."""
    B, T = tokens.shape
    is_sep = tokens == sep_id
    piece_begins = is_sep.copy()  # (B, T)
    piece_begins[:, 1:] |= is_sep[:, :-1]
    piece_begins[:, : min(T, 2)] = True  # [CLS], and the first stretch after it
    sentence_begins = piece_begins.copy()
    sentence_begins[:, 1:] |= np.isin(tokens[:, :-1], sentence_ends)
    sentence = np.cumsum(sentence_begins, axis=1) - 1  # (B, T), < T
    sentence_keys = rng.integers(0, 2**32, size=(B, T), dtype=np.int64)  # one per sentence slot
    sort_keys = (np.cumsum(piece_begins, axis=1) << 32) | take_rows(sentence_keys, sentence)
    return np.argsort(sort_keys, axis=1, kind="stable")


def infill(tokens: np.ndarray, mask_prob: float, lam: float, mask_id: int | np.ndarray, pad_id: int,
           rng: np.random.Generator, word_starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, Spans]:
    """Text infilling on tokens[:, 1:] of (B, T) `tokens` (tokens[:, 0] is kept): in each row,
    spans with Poisson(`lam`) lengths covering round(mask_prob * items) items, laid at random
    at least one kept item apart, each replaced by one token (a zero-length span inserts one).
    Items are words when (B, T) `word_starts` is given (the tokens before a row's first word
    start are a word too), else tokens. `mask_id` is the token a span becomes: one id, or
    (B, T) one per token slot where a span may begin (random replacements).

    Returns (corrupted (B, T), lengths (B,), spans): the corrupted rows are cut at T and padded
    with `pad_id` after their `lengths` tokens; `spans` index tokens[:, 1:], in tokens."""
    B, T = tokens.shape
    item_first = _item_first_tokens(word_starts, B, T - 1)  # (B, items + 1)
    num_items = (item_first < T - 1).sum(axis=1)  # (B,)
    totals = np.round(mask_prob * num_items).astype(np.int64)  # fairseq rounds up: at most one item more
    lengths, counts = sample_span_lengths(totals, lambda g, shape: g.poisson(lam, shape), lam, rng)
    spans = place_spans(num_items, lengths, counts, rng)
    if word_starts is not None:  # items -> tokens: a span of words [s, e) covers their tokens
        starts = take_rows(item_first, spans.starts)
        spans = Spans(starts, take_rows(item_first, spans.ends) - starts, spans.counts)
    return _replace_spans(tokens, spans, mask_id, pad_id) + (spans,)


def _item_first_tokens(word_starts: np.ndarray | None, B: int, body_length: int) -> np.ndarray:
    """(B, body_length + 1) first body token of each item, then `body_length` (one past the
    body) for every column past the row's items: items are tokens, or words of
    word_starts[:, 1:] with the body's first token always beginning one."""
    if word_starts is None:
        return np.broadcast_to(np.arange(body_length + 1), (B, body_length + 1))
    begins = np.asarray(word_starts[:, 1:], dtype=bool).copy()
    begins[:, 0] = True
    rows, positions = np.nonzero(begins)  # row-major: each row's words left to right
    rank = np.cumsum(begins, axis=1)[rows, positions] - 1
    first = np.full((B, body_length + 1), body_length, dtype=np.int64)
    first[rows, rank] = positions
    return first


def _replace_spans(tokens: np.ndarray, spans: Spans, fill: int | np.ndarray, pad_id: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(corrupted (B, T), lengths (B,)): each span of tokens[:, 1:] replaced by the `fill` of its
    start slot (see `infill`), the rest kept in order, cut at T and padded with `pad_id`."""
    B, T = tokens.shape
    span_rows = np.broadcast_to(np.arange(B)[:, None], spans.starts.shape)[spans.valid]
    # Slot i < T - 1 of a row emits the fill token when a span begins there, then body token i
    # unless a span removed it; slot T - 1 emits the fill of a zero-length span at the end.
    begins = np.zeros((B, T), dtype=np.int64)
    begins[span_rows, spans.starts[spans.valid]] = 1  # starts are distinct within a row
    span_ends = np.zeros((B, T), dtype=np.int64)
    span_ends[span_rows, spans.ends[spans.valid]] = 1  # so are ends
    kept = np.cumsum(begins - span_ends, axis=1) == 0  # (B, T): inside no span
    kept[:, -1] = False  # slot T - 1 has no token
    emitted = begins + kept
    mask_at = np.cumsum(emitted, axis=1) - emitted + 1  # (B, T): output position of a slot's first item
    # One spare column takes every write that does not happen (no item, or past the cut at T).
    out = np.full((B, T + 1), pad_id, dtype=np.int64)
    out[:, 0] = tokens[:, 0]
    _scatter(out, np.where(begins > 0, np.minimum(mask_at, T), T), fill)
    body_tokens = np.concatenate([tokens[:, 1:], tokens[:, :1]], axis=1)  # (B, T): slot T - 1's is never kept
    _scatter(out, np.where(kept, np.minimum(mask_at + begins, T), T), body_tokens)
    return out[:, :T], np.minimum(emitted.sum(axis=1) + 1, T)


def _scatter(out: np.ndarray, positions: np.ndarray, values: np.ndarray | int) -> None:
    """out[b, positions[b, i]] = values[b, i] for (B, N) positions; one flat put for the batch."""
    offsets = np.arange(len(out))[:, None] * out.shape[1]  # (B, 1)
    np.put(out, positions + offsets, values)


class BartDenoising(Objective):
    def __init__(self, cfg: ObjectiveConfig, body: nn.Module, special: SpecialIds, vocab_size: int):
        super().__init__(cfg, special, vocab_size)
        self.head = lm_head(body, transform=False)
        self.sentence_ends = np.asarray(special.sentence_ends, dtype=np.int64)

    def corrupt(self, tokens: np.ndarray, word_starts: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(B, T) blocks and word starts -> (corrupted input (B, T), attention mask (B, T)):
        always the block's shape, so compiled steps see one input shape."""
        if self.cfg.permute_sentences:
            order = sentence_order(tokens, self.sentence_ends, self.special.sep, rng)
            tokens, word_starts = take_rows(tokens, order), take_rows(word_starts, order)  # words move with tokens
        corrupted, lengths, _ = infill(tokens, self.cfg.mask_prob, self.cfg.mean_span_length,
                                       self.span_fill(tokens.shape, rng), self.special.pad, rng,
                                       word_starts if self.cfg.whole_word_spans else None)
        return corrupted, np.arange(tokens.shape[1]) < lengths[:, None]

    def span_fill(self, shape: tuple[int, int], rng: np.random.Generator) -> int | np.ndarray:
        """What each span becomes: [MASK], or with probability `random_token_prob` a uniform
        non-special token, decided per span as fairseq's `mask_random` (the released BART
        config uses --mask-random 0.1). (B, T), one per slot where a span may begin."""
        if self.cfg.random_token_prob == 0:
            return self.special.mask
        random_ids = rng.integers(self.special.count, self.vocab_size - len(self.special.sentinels), size=shape)
        return np.where(rng.random(shape) < self.cfg.random_token_prob, random_ids, self.special.mask)

    def collate(self, blocks: BlockBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        original = torch.as_tensor(blocks.ids, dtype=torch.long)  # (B, T)
        input_ids, attention_mask = self.corrupt(blocks.ids, blocks.word_starts, numpy_rng(generator))
        return {"input_ids": torch.as_tensor(input_ids), "attention_mask": torch.as_tensor(attention_mask),
                "decoder_input_ids": original[:, :-1], "targets": original[:, 1:]}

    def forward(self, body: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        return seq2seq_loss(body, self.head, batch, self.special.pad)
