"""MLM plus a sentence-pair task on the first token: next-sentence prediction (BERT's
NSP) or sentence-order prediction (ALBERT's SOP).

Each packed block is rebuilt as `[CLS] A [SEP] B [SEP] [PAD]...` with token types 0 for
`[CLS] A [SEP]` and 1 for `B [SEP]`. A and B are consecutive pieces of one document (the
longest single-document run of the block, cut at a sentence end when there is one):
- `nsp`: half the time B is replaced by a piece of a *different* document taken from
  another block of the batch, uniformly among those whose run is another document
  (label 1 = random, 0 = actual next);
- `sop`: half the time A and B are swapped (label 1 = swapped, 0 = in order).
As in BERT, whose segments are runs of whole sentences, every segment starts at a sentence
start and ends at a sentence end wherever its run has them: the run is trimmed to its whole
sentences, and a random next segment starts at a random sentence and stops at the last
sentence end that fits. Otherwise the label shows on the surface: a random B cut to length
ended mid-sentence (13% ended with "." against 73% of true ones), and a swapped SOP pair's A
was the one that could end mid-sentence.
MLM masking then runs on the rebuilt sequence; the loss is MLM + pair loss, and both
parts are reported. The pairs of a micro-batch are built at once, with numpy over (B, T)
arrays: collation runs for every micro-batch and must stay far below a training step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pretrainer.config import ObjectiveConfig
from pretrainer.data.blocks import BlockBatch
from pretrainer.objectives.base import ObjectiveOutput, numpy_rng
from pretrainer.objectives.mlm import MaskedLM
from pretrainer.tokenization import SpecialIds


@dataclass
class SentencePairs:
    """Rebuilt pair inputs, all (B, T) except the per-row (B,) fields."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray  # (B,) 1 = random next segment (nsp) / swapped order (sop)
    doc_a: np.ndarray  # (B,) document of segment A (for checks)
    doc_b: np.ndarray  # (B,) document of segment B


@dataclass
class Segments:
    """One text segment per row, (B,) each: `length` tokens of content row `row` from `start`."""

    row: np.ndarray
    start: np.ndarray
    length: np.ndarray


def longest_document_runs(ids: np.ndarray, docs: np.ndarray, sep_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends), (B,) each: per row, [start, end) of the longest stretch of one document
    without a separator in (B, n) `ids` (the first one on a tie; (0, 0) when there is none)."""
    B, n = ids.shape
    real = ids != sep_id
    breaks = np.ones((B, n), dtype=bool)  # a run cannot continue into position i
    breaks[:, 1:] = (docs[:, 1:] != docs[:, :-1]) | ~real[:, :-1]
    run_begins = real & breaks
    run = np.cumsum(run_begins, axis=1) - 1  # (B, n): a real token's run (its row's first token is a break)
    slots = (np.arange(B)[:, None] * n + run)[real]
    run_lengths = np.bincount(slots, minlength=B * n).reshape(B, n)  # (B, n) per run index
    best = np.argmax(run_lengths, axis=1)  # the first longest
    lengths = run_lengths[np.arange(B), best]
    starts = np.where(lengths > 0, np.argmax(run_begins & (run == best[:, None]), axis=1), 0)
    return starts, starts + lengths


def follows_sentence_end(is_end: np.ndarray) -> np.ndarray:
    """(B, n) bool: the token right after a sentence end (`is_end` (B, n)), where a sentence starts."""
    after = np.zeros_like(is_end)
    after[:, 1:] = is_end[:, :-1]
    return after


def split_points(is_end: np.ndarray, starts: np.ndarray, ends: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(B,) cuts in (start, end): after a uniformly random sentence end inside the run, else
    anywhere inside it, uniformly. `is_end` (B, n): which tokens end a sentence."""
    position = np.arange(is_end.shape[1])
    inside = (position > starts[:, None]) & (position < ends[:, None])  # (B, n) possible cuts
    after_sentence = inside & follows_sentence_end(is_end)
    return uniform_true_position(np.where(after_sentence.any(axis=1, keepdims=True), after_sentence, inside), rng)


def sentence_bounds(is_end: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of (B,) runs trimmed to their whole sentences: from the first sentence start
    (the run's start when a separator precedes it, else the token after its first sentence end)
    to just after its last sentence end. A run with no whole sentence (no sentence end after its
    first sentence start) is kept as it is. A run at the start of a block may begin
    mid-sentence (the block cut the document). `is_end` (B, n): which tokens end a sentence."""
    position = np.arange(is_end.shape[1])
    inside = (position >= starts[:, None]) & (position < ends[:, None])  # (B, n)
    begins = follows_sentence_end(is_end) | ((position == starts[:, None]) & (starts[:, None] > 0))  # or a doc's first
    begins &= inside
    first = np.where(begins.any(axis=1), np.argmax(begins, axis=1), starts)
    ends_inside = is_end & inside & (position >= first[:, None])
    last = is_end.shape[1] - np.argmax(ends_inside[:, ::-1], axis=1)  # one past the last sentence end
    whole = ends_inside.any(axis=1) & (last - first >= 2)
    return np.where(whole, first, starts), np.where(whole, last, ends)


def nearest_sentence_lengths(is_end: np.ndarray, segments: Segments, wanted: np.ndarray) -> np.ndarray:
    """(B,) per segment, the length ending just after the sentence end nearest to `wanted` (B,)
    tokens within its `length` (its whole length where it holds no sentence end). Nearest, not
    the last one before: a random next segment is then as long as the true one on average."""
    offsets = np.arange(is_end.shape[1])
    columns = np.clip(segments.start[:, None] + offsets, 0, is_end.shape[1] - 1)
    ends_inside = is_end[segments.row[:, None], columns] & (offsets < segments.length[:, None])
    distance = np.where(ends_inside, np.abs(offsets + 1 - wanted[:, None]), np.iinfo(np.int64).max)
    return np.where(ends_inside.any(axis=1), np.argmin(distance, axis=1) + 1, segments.length)


def random_sentence_starts(is_end: np.ndarray, starts: np.ndarray, ends: np.ndarray, room: np.ndarray,
                           rng: np.random.Generator) -> np.ndarray:
    """(B,) a uniformly random sentence start in each run [start, end) among those leaving
    `room` (B,) tokens before its end (as BERT draws the random document's first sentence); the
    run's start when none does."""
    position = np.arange(is_end.shape[1])
    candidates = follows_sentence_end(is_end)
    candidates[np.arange(len(starts)), starts] = True
    candidates &= (position >= starts[:, None]) & (position <= ends[:, None] - room[:, None])
    candidates[~candidates.any(axis=1), starts[~candidates.any(axis=1)]] = True
    return uniform_true_position(candidates, rng)


def uniform_true_position(candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(B,) a uniformly random True position of each row of (B, n) `candidates` (each has one)."""
    counts = candidates.sum(axis=1)
    pick = np.minimum((rng.random(len(counts)) * counts).astype(np.int64), counts - 1)  # (B,) the pick-th True
    rank = np.cumsum(candidates, axis=1) - 1
    return np.argmax(candidates & (rank == pick[:, None]), axis=1)


def other_document_rows(run_docs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(B,) per row a uniformly random other row whose run is of a different document, -1
    when every row of the batch is this document."""
    eligible = run_docs[None, :] != run_docs[:, None]  # (B, B)
    keys = np.where(eligible, rng.random(eligible.shape), -1.0)
    return np.where(eligible.any(axis=1), np.argmax(keys, axis=1), -1)


def build_sentence_pairs(blocks: BlockBatch, task: str, special: SpecialIds, rng: np.random.Generator) -> SentencePairs:
    """[CLS] A [SEP] B [SEP] [PAD]... per block (see the module docstring), the whole batch at once."""
    B, T = blocks.ids.shape
    content, docs = blocks.ids[:, 1:], blocks.doc_ids[:, 1:]  # (B, n): drop the block's [CLS]
    rows = np.arange(B)
    starts, ends = longest_document_runs(content, docs, special.sep)
    ends = np.minimum(ends, starts + T - 3)  # room for [CLS] A [SEP] B [SEP]
    if (ends - starts < 2).any():
        raise ValueError("a block has no two-token stretch of one document; NSP/SOP need longer documents")
    is_end = np.isin(content, np.asarray(special.sentence_ends, dtype=np.int64))  # (B, n), for every step below
    starts, ends = sentence_bounds(is_end, starts, ends)
    cuts = split_points(is_end, starts, ends, rng)
    first, second = Segments(rows, starts, cuts - starts), Segments(rows, cuts, ends - cuts)
    run_docs = docs[rows, starts]
    flipped = rng.random(B) < 0.5  # (B,) rows that get the negative example
    doc_b = run_docs.copy()
    if task == "sop":
        first, second = _where(flipped, second, first), _where(flipped, first, second)  # swapped order
        labels = flipped
    else:
        partner = other_document_rows(run_docs, rng)
        labels = flipped & (partner >= 0)  # a batch of one document keeps the true next segment
        partner = np.where(labels, partner, rows)
        begin = random_sentence_starts(is_end[partner], starts[partner], ends[partner], second.length, rng)
        room = np.minimum(ends[partner] - begin, T - 3 - first.length)  # within its run and the block
        random_next = Segments(partner, begin, room)
        random_next.length = nearest_sentence_lengths(is_end, random_next, second.length)
        second = _where(labels, random_next, second)
        doc_b = run_docs[partner]
    return _write_pairs(content, first, second, T, special, labels, run_docs, doc_b)


def _where(condition: np.ndarray, chosen: Segments, otherwise: Segments) -> Segments:
    """Per row, `chosen`'s segment where the (B,) `condition` holds, else `otherwise`'s."""
    return Segments(np.where(condition, chosen.row, otherwise.row), np.where(condition, chosen.start, otherwise.start),
                    np.where(condition, chosen.length, otherwise.length))


def _write_pairs(content: np.ndarray, first: Segments, second: Segments, T: int, special: SpecialIds,
                 labels: np.ndarray, doc_a: np.ndarray, doc_b: np.ndarray) -> SentencePairs:
    """Gathers `[CLS] first [SEP] second [SEP] [PAD]...` into (B, T) rows."""
    position = np.arange(T)[None, :]  # (1, T)
    second_begins = (first.length + 2)[:, None]  # (B, 1)
    length = (first.length + second.length + 3)[:, None]  # (B, 1): the pair with its three specials
    input_ids = np.full((len(labels), T), special.pad, dtype=np.int64)
    in_first = (position >= 1) & (position <= first.length[:, None])
    input_ids = np.where(in_first, _gather(content, first, position - 1), input_ids)
    in_second = (position >= second_begins) & (position < length - 1)
    input_ids = np.where(in_second, _gather(content, second, position - second_begins), input_ids)
    input_ids = np.where((position == second_begins - 1) | (position == length - 1), special.sep, input_ids)
    input_ids[:, 0] = special.cls
    token_type_ids = ((position >= second_begins) & (position < length)).astype(np.int64)
    return SentencePairs(input_ids, token_type_ids, position < length, labels.astype(np.int64),
                         doc_a.astype(np.int64), doc_b.astype(np.int64))


def _gather(content: np.ndarray, segments: Segments, offsets: np.ndarray) -> np.ndarray:
    """(B, T) content[row, start + offset] per row, clipped into the row (callers mask the rest)."""
    columns = np.clip(segments.start[:, None] + offsets, 0, content.shape[1] - 1)
    return content[segments.row[:, None], columns]


class SentencePairMLM(MaskedLM):
    """`mlm_nsp` / `mlm_sop`: MLM plus a binary pair classifier on the first token."""

    def __init__(self, cfg: ObjectiveConfig, body: nn.Module, special: SpecialIds, vocab_size: int):
        super().__init__(cfg, body, special, vocab_size)
        self.task = "nsp" if cfg.name == "mlm_nsp" else "sop"
        d_model = body.cfg.d_model
        # BERT's pooler (dense + tanh on [CLS]) then a 2-way classifier.
        self.pair_head = nn.Sequential(nn.Linear(d_model, d_model), nn.Tanh(), nn.Linear(d_model, 2))

    def collate(self, blocks: BlockBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        pairs = build_sentence_pairs(blocks, self.task, self.special, numpy_rng(generator))
        input_ids = torch.as_tensor(pairs.input_ids)
        batch = self.mask_inputs(blocks, input_ids, generator)  # [PAD] is special: never selected
        return batch | {"token_type_ids": torch.as_tensor(pairs.token_type_ids),
                        "attention_mask": torch.as_tensor(pairs.attention_mask),
                        "pair_labels": torch.as_tensor(pairs.labels)}

    def forward(self, body: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        hidden = body(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # (B, T, C)
        mlm = self.masked_lm_loss(hidden, batch)
        pair_loss = F.cross_entropy(self.pair_head(hidden[:, 0]).float(), batch["pair_labels"])
        return ObjectiveOutput(loss=mlm.loss + pair_loss, num_predictions=mlm.num_predictions,
                               parts={"mlm": mlm.loss.detach(), self.task: pair_loss.detach()})
