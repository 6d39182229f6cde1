"""Selecting what to corrupt: tokens (BERT), whole words (WWM), spans of words (SpanBERT),
and BERT's 80/10/10 replacement of the selected tokens.

Every sampler draws from the `torch.Generator` it is given (or a numpy generator seeded
from it), so a run's masks are a function of (seed, step). All tensors are (B, T) unless
stated. The span samplers work on the whole batch at once (numpy over (B, K) arrays of
spans, no per-row loop): they run for every micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


def sample_span_lengths(totals: np.ndarray, draw: Callable[[np.random.Generator, tuple[int, int]], np.ndarray],
                        mean_length: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per row, lengths from `draw` until they cover the row's total; the last is trimmed so
    they sum to it. `draw(rng, shape)` gives i.i.d. lengths; `mean_length` (theirs) only sizes
    the chunks of columns drawn at once, so every row is usually covered by the first chunk.

    Returns (lengths (B, K), counts (B,)): row b's spans are lengths[b, :counts[b]]; the
    rest is 0. A row whose total is 0 has no span."""
    totals = np.asarray(totals, dtype=np.int64)  # (B,)
    chunk = int(np.ceil(totals.max(initial=0) / max(mean_length, 1e-9) * 1.25)) + 4
    lengths = np.zeros((len(totals), 0), dtype=np.int64)
    covered = np.zeros((len(totals), 1), dtype=np.int64)
    while (covered[:, -1] < totals).any():  # the same i.i.d. stream as drawing one length at a time
        lengths = np.concatenate([lengths, draw(rng, (len(totals), chunk)).astype(np.int64)], axis=1)
        covered = np.cumsum(lengths, axis=1)  # (B, K)
    counts = np.where(totals > 0, (covered < totals[:, None]).sum(axis=1) + 1, 0)  # draws up to the covering one
    rows = np.flatnonzero(counts)
    lengths[rows, counts[rows] - 1] -= covered[rows, counts[rows] - 1] - totals[rows]  # trim the last to the budget
    width = int(counts.max(initial=0))
    lengths = lengths[:, :width]
    lengths[np.arange(width) >= counts[:, None]] = 0
    return lengths, counts


@dataclass
class Spans:
    """Spans laid over each row's items, in order of position; row b's are the first
    `counts[b]` columns, the other columns are 0."""

    starts: np.ndarray  # (B, K) int64: first item of each span
    lengths: np.ndarray  # (B, K) int64: items covered (BART's zero-length spans cover none)
    counts: np.ndarray  # (B,) int64: spans in each row

    @property
    def valid(self) -> np.ndarray:
        """(B, K) bool: the column is one of the row's spans."""
        return np.arange(self.starts.shape[1]) < self.counts[:, None]

    @property
    def ends(self) -> np.ndarray:
        """(B, K) int64: one past the last item of each span."""
        return self.starts + self.lengths


def place_spans(num_items: np.ndarray, lengths: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> Spans:
    """Lay each row's spans (`lengths` (B, K), the first `counts` of each row, in that order)
    over its `num_items` (B,) items at uniformly random places, with at least one unselected
    item between two spans (so spans never merge). Spans that cannot fit are dropped."""
    num_items = np.asarray(num_items, dtype=np.int64)
    kept = num_items - lengths.sum(axis=1)
    counts = np.minimum(counts, np.maximum(kept + 1, 0))  # one span per gap between unselected items at most
    valid = np.arange(lengths.shape[1]) < counts[:, None]  # (B, K)
    lengths = np.where(valid, lengths, 0)
    kept = num_items - lengths.sum(axis=1)
    gaps = uniform_sorted_subsets(kept + 1, counts, rng)  # gap g lies before unselected item g
    starts = gaps + np.cumsum(lengths, axis=1) - lengths  # + the items of the spans before
    return Spans(np.where(valid, starts, 0), lengths, counts)


def uniform_sorted_subsets(pool_sizes: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per row b, `sizes[b]` distinct values of range(pool_sizes[b]), every subset equally
    likely, ascending. Returns (B, max(sizes)), padded past sizes[b] with the largest pool
    size (so the padding sorts last).

    The values with the `sizes[b]` smallest of pool_sizes[b] i.i.d. uniform keys are a
    uniformly random subset; a partition finds them for all rows at once."""
    pool_sizes, sizes = np.asarray(pool_sizes, dtype=np.int64), np.asarray(sizes, dtype=np.int64)
    width, most = int(pool_sizes.max(initial=0)), int(sizes.max(initial=0))
    if most == 0:
        return np.zeros((len(sizes), 0), dtype=np.int64)
    keys = rng.random((len(sizes), width))  # (B, W)
    keys[np.arange(width) >= pool_sizes[:, None]] = 2.0  # outside the row's pool: never among its smallest
    smallest = np.argpartition(keys, most - 1, axis=1)[:, :most]  # (B, most), in no particular order
    by_key = take_rows(smallest, np.argsort(take_rows(keys, smallest), axis=1))
    chosen = np.where(np.arange(most) < sizes[:, None], by_key, width)  # the row's own `sizes[b]` smallest
    return np.sort(chosen, axis=1)


def select_word_spans(word_starts: np.ndarray, is_candidate: np.ndarray, cfg: ObjectiveConfig,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """SpanBERT: spans of whole words with lengths ~ Geometric(p) truncated at
    `max_span_length` words, covering `mask_prob` of each row's words (so, in expectation,
    of its tokens), laid at random without overlapping. Returns the (B, T) selection and
    a (B, T) span id (-1 outside spans), so the 80/10/10 decision can be taken per span.
    Spans run over candidate words; one may straddle a special token, which stays unselected."""
    token_word, word_is_candidate = candidate_words(word_starts, is_candidate)  # (B, T) each
    candidate_rank = np.cumsum(word_is_candidate, axis=1) - 1  # (B, T): rank of each word slot among candidates
    num_candidates = word_is_candidate.sum(axis=1)  # (B,)
    length_probs = truncated_geometric_probs(cfg.span_geometric_p, cfg.max_span_length)
    mean_length = float((np.arange(1, len(length_probs) + 1) * length_probs).sum())
    budgets = np.round(cfg.mask_prob * num_candidates)  # (B,) words to select per row (half to even, as round())
    lengths, counts = sample_span_lengths(budgets, truncated_geometric_draw(length_probs), mean_length, rng)
    spans = place_spans(num_candidates, lengths, counts, rng)
    span_of_rank = span_index_of_items(spans, word_starts.shape[1])  # (B, T) over candidate ranks
    # Token -> its word slot -> that word's candidate rank -> the span covering it (if any).
    in_candidate = take_rows(word_is_candidate, np.maximum(token_word, 0)) & (token_word >= 0)
    rank = take_rows(candidate_rank, np.maximum(token_word, 0))  # (B, T)
    span_ids = np.where(in_candidate, take_rows(span_of_rank, np.maximum(rank, 0)), -1)
    return span_ids >= 0, span_ids


def truncated_geometric_draw(probs: np.ndarray) -> Callable[[np.random.Generator, tuple[int, int]], np.ndarray]:
    """A `draw(rng, shape)` of lengths 1..len(probs) with those probabilities (by the inverse CDF)."""
    cdf = np.cumsum(probs)
    cdf[-1] = 1.0  # rounding must not leave a uniform draw above the last bin

    def draw(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        return np.searchsorted(cdf, rng.random(shape), side="right") + 1

    return draw


def take_rows(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values[b, index[b, j]] for (B, N) values and (B, M) in-range indices: `np.take_along_axis`
    on axis 1 through one flat index, several times faster on the small arrays of a batch."""
    offsets = np.arange(values.shape[0])[:, None] * values.shape[1]  # (B, 1)
    return values.reshape(-1)[index + offsets]


def candidate_words(word_starts: np.ndarray, is_candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(token_word, word_is_candidate): each token's word index within its row (-1 before
    the row's first word start), and per word slot whether that word exists and is made of
    candidate tokens only. Both (B, T); a row has at most T words."""
    B, T = word_starts.shape
    token_word = np.cumsum(word_starts, axis=1) - 1  # (B, T)
    in_word = token_word >= 0
    slots = (np.arange(B)[:, None] * T + token_word)[in_word]
    non_candidates = np.bincount(slots, weights=~is_candidate[in_word], minlength=B * T).reshape(B, T)
    exists = np.arange(T) < word_starts.sum(axis=1, keepdims=True)
    return token_word, exists & (non_candidates == 0)


def span_index_of_items(spans: Spans, num_items: int) -> np.ndarray:
    """(B, num_items) index of the span covering each item (-1 outside spans); spans of
    length >= 1, in order of position."""
    B = len(spans.counts)
    rows = np.broadcast_to(np.arange(B)[:, None], spans.starts.shape)[spans.valid]
    begins = np.zeros((B, num_items + 1), dtype=np.int64)
    begins[rows, spans.starts[spans.valid]] = 1  # starts are distinct within a row
    span_index = np.cumsum(begins[:, :num_items], axis=1) - 1  # (B, num_items): the last span begun
    span_ends = take_rows(spans.ends, np.maximum(span_index, 0)) if spans.starts.shape[1] else span_index
    return np.where((span_index >= 0) & (np.arange(num_items) < span_ends), span_index, -1)


def bert_replace(input_ids: torch.Tensor, selected: torch.Tensor, decision: torch.Tensor, cfg: ObjectiveConfig,
                 mask_id: int, random_ids: torch.Tensor) -> torch.Tensor:
    """80/10/10: of the selected, `mask_token_prob` become [MASK], `random_token_prob` a
    random token, the rest stay. `decision` (B, T) uniform in [0, 1); equal values within a
    span make the decision per span."""
    to_mask = selected & (decision < cfg.mask_token_prob)
    to_random = selected & ~to_mask & (decision < cfg.mask_token_prob + cfg.random_token_prob)
    corrupted = torch.where(to_mask, mask_id, input_ids)
    return torch.where(to_random, random_ids, corrupted)
