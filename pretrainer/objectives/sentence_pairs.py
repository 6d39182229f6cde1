"""MLM plus a sentence-pair task on the first token: next-sentence prediction (BERT's
NSP) or sentence-order prediction (ALBERT's SOP).

Each packed block is rebuilt as `[CLS] A [SEP] B [SEP] [PAD]...` with token types 0 for
`[CLS] A [SEP]` and 1 for `B [SEP]`. A and B are consecutive pieces of one document (the
longest single-document run of the block, cut at a sentence end when there is one):
- `nsp`: half the time B is replaced by a piece of a *different* document taken from
  another block of the batch (label 1 = random, 0 = actual next);
- `sop`: half the time A and B are swapped (label 1 = swapped, 0 = in order).
MLM masking then runs on the rebuilt sequence; the loss is MLM + pair loss, and both
parts are reported.
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


def longest_document_run(ids: np.ndarray, docs: np.ndarray, sep_id: int) -> tuple[int, int]:
    """[start, end) of the longest stretch of one document without a separator in `ids`
    (the first one on a tie; (0, 0) when there is none)."""
    real = ids != sep_id
    breaks = np.ones(len(ids), dtype=bool)  # a run cannot continue into position i
    breaks[1:] = (docs[1:] != docs[:-1]) | ~real[:-1]
    starts = np.flatnonzero(real & breaks)
    if len(starts) == 0:
        return 0, 0
    stops = np.append(np.flatnonzero(~real | breaks), len(ids))  # sorted: where runs end
    ends = stops[np.searchsorted(stops, starts, side="right")]
    best = int(np.argmax(ends - starts))
    return int(starts[best]), int(ends[best])


def split_point(ids: np.ndarray, start: int, end: int, sentence_ends: np.ndarray, rng: np.random.Generator) -> int:
    """A cut in (start, end): after a random sentence end inside the run, else anywhere."""
    inside = np.arange(start + 1, end)
    after_sentence = inside[np.isin(ids[inside - 1], sentence_ends)]
    candidates = after_sentence if len(after_sentence) else inside
    return int(rng.choice(candidates))


def build_sentence_pairs(blocks: BlockBatch, task: str, special: SpecialIds, rng: np.random.Generator) -> SentencePairs:
    B, T = blocks.ids.shape
    content, docs = blocks.ids[:, 1:], blocks.doc_ids[:, 1:]  # drop the block's [CLS]
    runs = [longest_document_run(content[r], docs[r], special.sep) for r in range(B)]
    out = SentencePairs(np.full((B, T), special.pad, dtype=np.int64), np.zeros((B, T), dtype=np.int64),
                        np.zeros((B, T), dtype=bool), np.zeros(B, dtype=np.int64),
                        np.zeros(B, dtype=np.int64), np.zeros(B, dtype=np.int64))
    sentence_ends = np.asarray(special.sentence_ends, dtype=np.int64)
    for r, (start, end) in enumerate(runs):
        end = min(end, start + T - 3)  # room for [CLS] A [SEP] B [SEP]
        if end - start < 2:
            raise ValueError("a block has no two-token stretch of one document; NSP/SOP need longer documents")
        cut = split_point(content[r], start, end, sentence_ends, rng)
        seg_a, seg_b = content[r, start:cut], content[r, cut:end]
        doc = docs[r, start]
        out.doc_a[r] = out.doc_b[r] = doc
        if rng.random() < 0.5:
            if task == "sop":
                seg_a, seg_b = seg_b, seg_a
                out.labels[r] = 1
            elif (other := _other_document_segment(content, docs, runs, r, doc, len(seg_b), rng)) is not None:
                seg_b, out.doc_b[r] = other
                out.labels[r] = 1
        _write_pair(out, r, seg_a, seg_b, special)
    return out


def _other_document_segment(content: np.ndarray, docs: np.ndarray, runs: list[tuple[int, int]], row: int,
                            doc: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, int] | None:
    """Up to `length` tokens from the run of another row whose document differs from `doc`."""
    others = [r for r in rng.permutation(len(runs)) if r != row and docs[r, runs[r][0]] != doc]
    if not others:
        return None  # every block of the batch is this document: keep the true next segment
    other = int(others[0])
    start, end = runs[other]
    return content[other, start:min(end, start + length)], int(docs[other, start])


def _write_pair(out: SentencePairs, row: int, seg_a: np.ndarray, seg_b: np.ndarray, special: SpecialIds) -> None:
    sequence = np.concatenate([[special.cls], seg_a, [special.sep], seg_b, [special.sep]])
    out.input_ids[row, : len(sequence)] = sequence
    out.token_type_ids[row, len(seg_a) + 2 : len(sequence)] = 1
    out.attention_mask[row, : len(sequence)] = True


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
