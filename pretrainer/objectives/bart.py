"""BART denoising (Lewis et al. 2020): sentence permutation plus text infilling; the
decoder reconstructs the original block.

- Sentence permutation: within each document of a block, the sentences (cut after
  `. ! ?`) are shuffled; document separators stay in place.
- Text infilling: span lengths ~ Poisson(lambda = `mean_span_length`) are drawn until
  they cover `mask_prob` (30%) of the tokens; the spans are placed at random, apart from
  each other, and each is replaced by one `[MASK]`; a zero-length span inserts a `[MASK]`.
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
    """(B, T) -> (B, T) with the sentences between separators shuffled, each order equally
    likely; position 0 ([CLS]) and separators stay.

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
    return take_rows(tokens, np.argsort(sort_keys, axis=1, kind="stable"))


def infill(tokens: np.ndarray, mask_prob: float, lam: float, mask_id: int, pad_id: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Spans]:
    """Text infilling on tokens[:, 1:] of (B, T) `tokens` (tokens[:, 0] is kept): in each row,
    spans with Poisson(`lam`) lengths covering round(mask_prob * (T - 1)) tokens, laid at
    random at least one kept token apart, each replaced by one `mask_id` (a zero-length span
    inserts one). Returns (corrupted (B, T), lengths (B,), spans): the corrupted rows are cut
    at T and padded with `pad_id` after their `lengths` tokens; `spans` index tokens[:, 1:]."""
    B, T = tokens.shape
    body_length = T - 1
    totals = np.full(B, round(mask_prob * body_length))
    lengths, counts = sample_span_lengths(totals, lambda g, shape: g.poisson(lam, shape), lam, rng)
    spans = place_spans(np.full(B, body_length), lengths, counts, rng)
    span_rows = np.broadcast_to(np.arange(B)[:, None], spans.starts.shape)[spans.valid]
    # Slot i < T - 1 of a row emits a [MASK] when a span begins there, then body token i
    # unless a span removed it; slot T - 1 emits the [MASK] of a zero-length span at the end.
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
    _scatter(out, np.where(begins > 0, np.minimum(mask_at, T), T), mask_id)
    body_tokens = np.concatenate([tokens[:, 1:], tokens[:, :1]], axis=1)  # (B, T): slot T - 1's is never kept
    _scatter(out, np.where(kept, np.minimum(mask_at + begins, T), T), body_tokens)
    return out[:, :T], np.minimum(emitted.sum(axis=1) + 1, T), spans


def _scatter(out: np.ndarray, positions: np.ndarray, values: np.ndarray | int) -> None:
    """out[b, positions[b, i]] = values[b, i] for (B, N) positions; one flat put for the batch."""
    offsets = np.arange(len(out))[:, None] * out.shape[1]  # (B, 1)
    np.put(out, positions + offsets, values)


class BartDenoising(Objective):
    def __init__(self, cfg: ObjectiveConfig, body: nn.Module, special: SpecialIds, vocab_size: int):
        super().__init__(cfg, special, vocab_size)
        self.head = lm_head(body, transform=False)
        self.sentence_ends = np.asarray(special.sentence_ends, dtype=np.int64)

    def corrupt(self, tokens: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(B, T) blocks -> (corrupted input (B, T), attention mask (B, T)): always the block's
        shape, so compiled steps see one input shape."""
        if self.cfg.permute_sentences:
            tokens = permute_sentences(tokens, self.sentence_ends, self.special.sep, rng)
        corrupted, lengths, _ = infill(tokens, self.cfg.mask_prob, self.cfg.mean_span_length, self.special.mask,
                                       self.special.pad, rng)
        return corrupted, np.arange(tokens.shape[1]) < lengths[:, None]

    def collate(self, blocks: BlockBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        original = torch.as_tensor(blocks.ids, dtype=torch.long)  # (B, T)
        input_ids, attention_mask = self.corrupt(blocks.ids, numpy_rng(generator))
        return {"input_ids": torch.as_tensor(input_ids), "attention_mask": torch.as_tensor(attention_mask),
                "decoder_input_ids": original[:, :-1], "targets": original[:, 1:]}

    def forward(self, body: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        return seq2seq_loss(body, self.head, batch, self.special.pad)
