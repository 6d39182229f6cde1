"""Selecting what to corrupt: tokens (BERT), whole words (WWM), spans of words (SpanBERT),
and BERT's 80/10/10 replacement of the selected tokens.

Every sampler draws from the `torch.Generator` it is given, so a run's masks are a
function of (seed, step). All tensors are (B, T) unless stated.
"""

from __future__ import annotations

import numpy as np
import torch

from pretrainer.config import ObjectiveConfig


def select_tokens(is_candidate: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Each candidate token independently with probability `prob` (BERT)."""
    return (torch.rand(is_candidate.shape, generator=generator) < prob) & is_candidate


def word_index(word_starts: torch.Tensor) -> torch.Tensor:
    """(B, T) bool word starts -> (B, T) index of each token's word within its row."""
    return word_starts.long().cumsum(dim=1) - 1


def select_whole_words(word_starts: torch.Tensor, is_candidate: torch.Tensor, prob: float,
                       generator: torch.Generator) -> torch.Tensor:
    """Each word independently with probability `prob`; a chosen word is chosen whole, so
    the expected share of selected tokens stays `prob` (whole-word masking)."""
    words = word_index(word_starts)
    word_chosen = torch.rand(word_starts.shape, generator=generator) < prob  # one draw per word slot
    return word_chosen.gather(1, words) & is_candidate


def truncated_geometric_probs(p: float, max_length: int) -> np.ndarray:
    """P(length = k) for k = 1..max_length: Geometric(p) truncated and renormalised (SpanBERT)."""
    lengths = np.arange(1, max_length + 1)
    probs = p * (1 - p) ** (lengths - 1)
    return probs / probs.sum()


def sample_span_lengths(total: int, draw, rng: np.random.Generator) -> np.ndarray:
    """Lengths from `draw(rng)` until they cover `total` items; the last is trimmed so they sum to it."""
    lengths: list[int] = []
    covered = 0
    while covered < total:
        lengths.append(int(draw(rng)))
        covered += lengths[-1]
    if covered > total:
        lengths[-1] -= covered - total
    return np.array(lengths, dtype=np.int64)


def place_spans(num_items: int, lengths: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lay spans of `lengths` over `num_items` items at uniformly random places, with at
    least one unselected item between two spans (so spans never merge). Returns (starts,
    lengths) in order of position; spans that cannot fit are dropped."""
    kept = num_items - int(lengths.sum())
    lengths = lengths[: kept + 1]  # one span per gap between unselected items at most
    kept = num_items - int(lengths.sum())
    gaps = np.sort(rng.choice(kept + 1, size=len(lengths), replace=False))  # gap g lies before unselected item g
    starts = gaps + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return starts, lengths


def select_word_spans(word_starts: np.ndarray, is_candidate: np.ndarray, cfg: ObjectiveConfig,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """SpanBERT: spans of whole words with lengths ~ Geometric(p) truncated at
    `max_span_length` words, covering `mask_prob` of each row's words (so, in expectation,
    of its tokens), laid at random without overlapping. Returns the (B, T) selection and
    a (B, T) span id (-1 outside spans), so the 80/10/10 decision can be taken per span.
    Spans run over candidate words; one may straddle a special token, which stays unselected."""
    length_probs = truncated_geometric_probs(cfg.span_geometric_p, cfg.max_span_length)
    selected = np.zeros(word_starts.shape, dtype=bool)
    span_ids = np.full(word_starts.shape, -1, dtype=np.int64)
    for row in range(word_starts.shape[0]):
        words = _candidate_words(word_starts[row], is_candidate[row])  # (start, end) token ranges
        lengths = sample_span_lengths(round(cfg.mask_prob * len(words)),
                                      lambda g: g.choice(len(length_probs), p=length_probs) + 1, rng)
        for span, (first, length) in enumerate(zip(*place_spans(len(words), lengths, rng), strict=True)):
            for start, end in words[first : first + length]:
                selected[row, start:end] = True
                span_ids[row, start:end] = span
    return selected, span_ids


def _candidate_words(word_starts: np.ndarray, is_candidate: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) token ranges of the words made of candidate tokens, in order."""
    starts = np.flatnonzero(word_starts)
    ends = np.append(starts[1:], len(word_starts))
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True) if is_candidate[s:e].all()]


def bert_replace(input_ids: torch.Tensor, selected: torch.Tensor, decision: torch.Tensor, cfg: ObjectiveConfig,
                 mask_id: int, random_ids: torch.Tensor) -> torch.Tensor:
    """80/10/10: of the selected, `mask_token_prob` become [MASK], `random_token_prob` a
    random token, the rest stay. `decision` (B, T) uniform in [0, 1); equal values within a
    span make the decision per span."""
    to_mask = selected & (decision < cfg.mask_token_prob)
    to_random = selected & ~to_mask & (decision < cfg.mask_token_prob + cfg.random_token_prob)
    corrupted = torch.where(to_mask, mask_id, input_ids)
    return torch.where(to_random, random_ids, corrupted)
