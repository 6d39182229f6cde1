"""BART denoising (Lewis et al. 2020): sentence permutation plus text infilling; the
decoder reconstructs the original block.

- Sentence permutation: within each document of a block, the sentences (cut after
  `. ! ?`) are shuffled; document separators stay in place.
- Text infilling: span lengths ~ Poisson(lambda = `mean_span_length`) are drawn until
  they cover `mask_prob` (30%) of the tokens; the spans are placed at random, apart from
  each other, and each is replaced by one `[MASK]`; a zero-length span inserts a `[MASK]`.
The target is the uncorrupted block (`[CLS]` first, as BART's `<s>`): the decoder reads
it shifted right and predicts every next token. The corrupted input can grow by
inserted masks; it is cut at the block length, which only happens when zero-length spans
outnumber all the tokens the other spans removed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pretrainer.config import ObjectiveConfig
from pretrainer.data.blocks import BlockBatch
from pretrainer.objectives.base import Objective, ObjectiveOutput, lm_head, numpy_rng
from pretrainer.objectives.masking import place_spans, sample_span_lengths
from pretrainer.objectives.t5_span import seq2seq_loss
from pretrainer.tokenization import SpecialIds


def permute_sentences(tokens: np.ndarray, sentence_ends: np.ndarray, sep_id: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Shuffle the sentences between separators; position 0 ([CLS]) and separators stay."""
    out = tokens.copy()
    boundaries = np.flatnonzero(tokens == sep_id)
    starts, ends = np.concatenate([[1], boundaries + 1]), np.concatenate([boundaries, [len(tokens)]])
    for start, end in zip(starts, ends, strict=True):
        piece = tokens[start:end]
        cuts = np.flatnonzero(np.isin(piece, sentence_ends)) + 1
        sentences = [s for s in np.split(piece, cuts) if len(s)]
        order = rng.permutation(len(sentences))
        if len(sentences) > 1:
            out[start:end] = np.concatenate([sentences[i] for i in order])
    return out


def infill(tokens: np.ndarray, mask_prob: float, lam: float, mask_id: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Text infilling on tokens[1:] (tokens[0] is kept). Returns the corrupted sequence and
    the (k,) span lengths used; spans are separated by at least one kept token."""
    body = tokens[1:]
    lengths = sample_span_lengths(round(mask_prob * len(body)), lambda g: g.poisson(lam), rng)
    starts, lengths = place_spans(len(body), lengths, rng)
    out, position = [tokens[:1]], 0
    for start, length in zip(starts, lengths, strict=True):
        out += [body[position:start], [mask_id]]  # the span's tokens are dropped, one [MASK] stands for them
        position = start + length
    out.append(body[position:])
    return np.concatenate(out).astype(np.int64), lengths


class BartDenoising(Objective):
    def __init__(self, cfg: ObjectiveConfig, body: nn.Module, special: SpecialIds, vocab_size: int):
        super().__init__(cfg, special, vocab_size)
        self.head = lm_head(body, transform=False)
        self.sentence_ends = np.asarray(special.sentence_ends, dtype=np.int64)

    def corrupt(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.cfg.permute_sentences:
            tokens = permute_sentences(tokens, self.sentence_ends, self.special.sep, rng)
        corrupted, _ = infill(tokens, self.cfg.mask_prob, self.cfg.mean_span_length, self.special.mask, rng)
        return corrupted[: len(tokens)]

    def collate(self, blocks: BlockBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        rng = numpy_rng(generator)
        original = torch.as_tensor(blocks.ids, dtype=torch.long)  # (B, T)
        corrupted = [self.corrupt(row, rng) for row in blocks.ids]
        length = max(len(row) for row in corrupted)
        input_ids = torch.full((len(corrupted), length), self.special.pad, dtype=torch.long)
        attention_mask = torch.zeros((len(corrupted), length), dtype=torch.bool)
        for r, row in enumerate(corrupted):
            input_ids[r, : len(row)] = torch.as_tensor(row)
            attention_mask[r, : len(row)] = True
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "decoder_input_ids": original[:, :-1], "targets": original[:, 1:]}

    def forward(self, body: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        return seq2seq_loss(body, self.head, batch, self.special.pad)
