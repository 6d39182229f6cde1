"""T5 span corruption (Raffel et al. 2020, `span_corruption` in the T5 codebase).

A raw stretch of `tokens_length` tokens is split into alternating non-noise / noise
spans: `round(tokens_length * noise_density)` noise tokens in
`round(noise_tokens / mean_span_length)` spans, both sequences cut at uniformly random
points, the first span non-noise. The encoder input keeps the non-noise tokens and
replaces each noise span by the next unique sentinel; the target lists each sentinel
followed by the span it replaced. Both end in `[SEP]` (T5's EOS). `tokens_length` is
chosen, as T5 does, as the longest raw length whose corrupted input fits the configured
block, so every input is exactly `data.block_size` long and no compute goes to padding.
Fields: `objective.mask_prob` is T5's noise density, `objective.mean_span_length` its
mean noise span length. Every row has the same numbers of noise tokens and spans, so the
whole batch is corrupted at once (numpy over (B, T) arrays).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pretrainer.config import ObjectiveConfig
from pretrainer.data.blocks import BlockBatch
from pretrainer.objectives.base import Objective, ObjectiveOutput, lm_head, mean_cross_entropy, numpy_rng
from pretrainer.objectives.masking import uniform_sorted_subsets
from pretrainer.tokenization import SpecialIds, sentinel_token


def noise_counts(tokens_length: int, density: float, mean_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) for a raw length, as T5 rounds them."""
    num_noise = min(max(round(tokens_length * density), 1), tokens_length - 1)
    return num_noise, max(round(num_noise / mean_span_length), 1)


def corrupted_lengths(tokens_length: int, density: float, mean_span_length: float) -> tuple[int, int]:
    """(input length, target length) after corruption, each with its final EOS."""
    num_noise, num_spans = noise_counts(tokens_length, density, mean_span_length)
    return tokens_length - num_noise + num_spans + 1, num_noise + num_spans + 1


def raw_length_for_input(inputs_length: int, density: float, mean_span_length: float) -> int:
    """The longest raw length whose corrupted input has at most `inputs_length` tokens."""
    tokens_length = inputs_length
    while corrupted_lengths(tokens_length + 1, density, mean_span_length)[0] <= inputs_length:
        tokens_length += 1
    return tokens_length


def _random_segmentation(num_items: int, num_segments: int, batch: int, rng: np.random.Generator) -> np.ndarray:
    """(batch, num_segments) lengths >= 1, each row summing to num_items: cut at a uniformly
    random set of num_segments - 1 distinct points among 1..num_items-1 (T5's segmentation)."""
    cuts = uniform_sorted_subsets(np.full(batch, num_items - 1), np.full(batch, num_segments - 1), rng) + 1
    bounds = np.concatenate([np.zeros((batch, 1), np.int64), cuts, np.full((batch, 1), num_items)], axis=1)
    return np.diff(bounds, axis=1)


def random_spans_noise_mask(batch: int, length: int, density: float, mean_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
    """(batch, length) bool, True at noise tokens; per row alternating spans, the first one
    non-noise, with exactly `noise_counts` noise tokens and spans."""
    num_noise, num_spans = noise_counts(length, density, mean_span_length)
    noise_lengths = _random_segmentation(num_noise, num_spans, batch, rng)  # (B, S)
    keep_lengths = _random_segmentation(length - num_noise, num_spans, batch, rng)  # (B, S)
    # Keep, noise, keep, noise, ...: noise span k begins after keep spans 0..k and noise spans 0..k-1.
    noise_starts = np.cumsum(keep_lengths, axis=1) + np.cumsum(noise_lengths, axis=1) - noise_lengths
    rows = np.arange(batch)[:, None]
    edges = np.zeros((batch, length + 1), dtype=np.int64)  # +1 where a span begins, -1 one past its end
    edges[rows, noise_starts] = 1
    edges[rows, noise_starts + noise_lengths] = -1  # a keep span of >= 1 lies between: never a start
    return np.cumsum(edges[:, :length], axis=1) > 0


def corrupt_spans(tokens: np.ndarray, noise: np.ndarray, sentinels: tuple[int, ...],
                  eos: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) for (B, L) `tokens` and `noise`, each row with the same numbers of
    noise tokens and spans (as `random_spans_noise_mask` makes them): span k of a row is
    replaced by `sentinels[k]` in the input and introduced by it in the target; both end in `eos`."""
    B = len(tokens)
    span_starts = noise.copy()
    span_starts[:, 1:] &= ~noise[:, :-1]  # (B, L)
    num_spans = span_starts.sum(axis=1)
    if num_spans.max(initial=0) > len(sentinels):
        raise ValueError(f"{num_spans.max()} noise spans but only {len(sentinels)} sentinel tokens")
    in_input = ~noise | span_starts  # the non-noise tokens and one sentinel per span
    if (in_input.sum(axis=1) != in_input[0].sum()).any() or (noise.sum(axis=1) != noise[0].sum()).any():
        raise ValueError("every row needs the same numbers of noise tokens and spans")
    span_index = np.cumsum(span_starts, axis=1) - 1  # (B, L): the span a position is in, or last passed
    table = np.asarray(sentinels or (eos,), dtype=np.int64)  # never empty: rows without spans still index it
    sentinel_at = table[np.maximum(span_index, 0)]  # (B, L): the sentinel of each position's span
    inputs = np.where(span_starts, sentinel_at, tokens)[in_input].reshape(B, -1)
    # Target: per position the pair (sentinel, token), keeping the sentinel where a span
    # begins and the token where it is noise, reads "sentinel_k span_k" in order.
    pairs = np.stack([sentinel_at, tokens], axis=2)  # (B, L, 2)
    targets = pairs[np.stack([span_starts, noise], axis=2)].reshape(B, -1)
    eos_column = np.full((B, 1), eos, dtype=np.int64)
    return (np.concatenate([inputs, eos_column], axis=1).astype(np.int64),
            np.concatenate([targets, eos_column], axis=1).astype(np.int64))


class T5SpanCorruption(Objective):
    def __init__(self, cfg: ObjectiveConfig, body: nn.Module, special: SpecialIds, vocab_size: int):
        super().__init__(cfg, special, vocab_size)
        self.head = lm_head(body, transform=False)

    @staticmethod
    def special_tokens(cfg: ObjectiveConfig, block_size: int) -> list[str]:
        tokens_length = raw_length_for_input(block_size, cfg.mask_prob, cfg.mean_span_length)
        return [sentinel_token(i) for i in range(noise_counts(tokens_length, cfg.mask_prob, cfg.mean_span_length)[1])]

    @staticmethod
    def raw_block_size(cfg: ObjectiveConfig, block_size: int) -> int:
        return raw_length_for_input(block_size, cfg.mask_prob, cfg.mean_span_length) + 1  # + the [CLS] dropped

    def collate(self, blocks: BlockBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        raw = blocks.ids[:, 1:]  # (B, tokens_length): T5 has no [CLS]
        noise = random_spans_noise_mask(*raw.shape, self.cfg.mask_prob, self.cfg.mean_span_length,
                                        numpy_rng(generator))  # (B, tokens_length)
        inputs, targets = corrupt_spans(raw, noise, self.special.sentinels, self.special.sep)
        inputs, targets = torch.as_tensor(inputs), torch.as_tensor(targets)  # (B, block_size), (B, S)
        # The decoder starts from [CLS] and reads the target shifted right (teacher forcing).
        decoder_input = torch.cat([torch.full_like(targets[:, :1], self.special.cls), targets[:, :-1]], dim=1)
        return {"input_ids": inputs, "decoder_input_ids": decoder_input, "targets": targets}

    def forward(self, body: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        return seq2seq_loss(body, self.head, batch, self.special.pad)


def seq2seq_loss(body: nn.Module, head: nn.Module, batch: dict[str, torch.Tensor], pad_id: int) -> ObjectiveOutput:
    """Encoder over `input_ids`, decoder over `decoder_input_ids`, cross-entropy on `targets` (pads ignored)."""
    mask = batch.get("attention_mask")
    memory = body(batch["input_ids"], mask)  # (B, T, C)
    hidden = body.decode(batch["decoder_input_ids"], memory, mask)  # (B, S, C)
    # Every target position is predicted (pads are ignored): no data-dependent shape in the step.
    loss, count = mean_cross_entropy(head(hidden), batch["targets"], ignore_index=pad_id)  # logits (B, S, V)
    return ObjectiveOutput(loss=loss, num_predictions=count)
