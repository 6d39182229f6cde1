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
mean noise span length.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pretrainer.config import ObjectiveConfig
from pretrainer.data.blocks import BlockBatch
from pretrainer.objectives.base import Objective, ObjectiveOutput, lm_head, numpy_rng
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


def _random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths (num_segments,) >= 1 summing to num_items, cut at uniformly random points."""
    cuts = np.sort(rng.choice(np.arange(1, num_items), size=num_segments - 1, replace=False))
    return np.diff(np.concatenate([[0], cuts, [num_items]]))


def random_spans_noise_mask(length: int, density: float, mean_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
    """(length,) bool, True at noise tokens; alternating spans, the first one non-noise."""
    num_noise, num_spans = noise_counts(length, density, mean_span_length)
    noise_lengths = _random_segmentation(num_noise, num_spans, rng)
    keep_lengths = _random_segmentation(length - num_noise, num_spans, rng)
    pattern = np.stack([keep_lengths, noise_lengths], axis=1).reshape(-1)  # keep, noise, keep, noise, ...
    return np.repeat(np.tile([False, True], num_spans), pattern)


def corrupt_spans(tokens: np.ndarray, noise: np.ndarray, sentinels: tuple[int, ...],
                  eos: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) for one row; span k is replaced by `sentinels[k]` in the input and
    introduced by it in the target."""
    span_starts = noise & ~np.concatenate([[False], noise[:-1]])
    span_sentinels = np.asarray(sentinels, dtype=np.int64)[: int(span_starts.sum())]
    # Input: non-noise tokens, and each span's first position turned into its sentinel.
    inputs = np.where(span_starts, 0, tokens)
    inputs[span_starts] = span_sentinels
    inputs = inputs[~noise | span_starts]
    # Target: the noise tokens, each span preceded by its sentinel.
    targets = np.insert(tokens[noise], np.flatnonzero(span_starts[noise]), span_sentinels)
    return np.append(inputs, eos).astype(np.int64), np.append(targets, eos).astype(np.int64)


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
        rng = numpy_rng(generator)
        raw = blocks.ids[:, 1:]  # (B, tokens_length): T5 has no [CLS]
        rows = [corrupt_spans(row, random_spans_noise_mask(len(row), self.cfg.mask_prob, self.cfg.mean_span_length,
                                                           rng), self.special.sentinels, self.special.sep)
                for row in raw]
        inputs = torch.as_tensor(np.stack([r[0] for r in rows]))  # (B, block_size)
        targets = torch.as_tensor(np.stack([r[1] for r in rows]))  # (B, S)
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
    targets = batch["targets"]
    real = targets != pad_id
    logits = head(hidden[real])  # (N, V)
    loss = F.cross_entropy(logits.float(), targets[real])
    return ObjectiveOutput(loss=loss, num_predictions=int(real.sum()))
