"""Masked language modelling (BERT) and its selection variants: whole-word (WWM) and
span (SpanBERT) masking.

The variants differ only in *which* tokens are selected: each non-special token
(`mlm`), each whole word (`wwm`), or spans of whole words with geometric lengths, each
inside one document (`span_mlm`). Of the selected, `mask_token_prob` become `[MASK]`,
`random_token_prob` a random non-special token, the rest stay unchanged (per token; per
span for `span_mlm`). The loss covers the selected positions only, and the output projection is
computed only there: in a small model the (N, V) projection dominates the cost, and 85%
of it would be thrown away. The positions are listed at collation (`prediction_slots`),
so the forward pass has no data-dependent shape or host sync; a micro-batch selects at most
`slot_capacity(B * T, mask_prob)` tokens, a cap that binomial masking reaches about once in
1e15 batches. Words come from the tokenizer's pre-tokenization (the
packed corpus stores word starts), so WWM and spans work for every tokenizer family.
"""

from __future__ import annotations

import torch
from torch import nn

from pretrainer.config import ObjectiveConfig
from pretrainer.data.blocks import BlockBatch
from pretrainer.objectives.base import (
    Objective,
    ObjectiveOutput,
    cap_selection,
    lm_head,
    numpy_rng,
    predicted_cross_entropy,
    prediction_slots,
    slot_capacity,
)
from pretrainer.objectives.masking import bert_replace, select_tokens, select_whole_words, select_word_spans
from pretrainer.tokenization import SpecialIds


class MaskedLM(Objective):
    def __init__(self, cfg: ObjectiveConfig, body: nn.Module, special: SpecialIds, vocab_size: int):
        super().__init__(cfg, special, vocab_size)
        self.head = lm_head(body, transform=True)

    def select(self, blocks: BlockBatch, input_ids: torch.Tensor,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(selected, decision): which tokens to predict, and a uniform draw per token for 80/10/10."""
        selected = select_tokens(~self.is_special[input_ids], self.cfg.mask_prob, generator)
        return selected, torch.rand(input_ids.shape, generator=generator)

    def mask_inputs(self, blocks: BlockBatch, input_ids: torch.Tensor,
                    generator: torch.Generator) -> dict[str, torch.Tensor]:
        selected, decision = self.select(blocks, input_ids, generator)
        capacity = slot_capacity(input_ids.numel(), self.cfg.mask_prob)
        selected = cap_selection(selected, capacity)
        random_ids = self.random_ids(tuple(input_ids.shape), generator)
        corrupted = bert_replace(input_ids, selected, decision, self.cfg, self.special.mask, random_ids)
        slots = prediction_slots(selected, input_ids, capacity if self.static_shapes else None)
        return {"input_ids": corrupted, "targets": input_ids, "selected": selected} | slots

    def collate(self, blocks: BlockBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        inputs = self.block_inputs(blocks)
        return inputs | self.mask_inputs(blocks, inputs["input_ids"], generator)  # input_ids: the corrupted ones

    def forward(self, body: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        hidden = body(batch["input_ids"], batch.get("attention_mask"),
                      document_ids=batch.get("document_ids"))  # (B, T, C)
        return self.masked_lm_loss(hidden, batch)

    def masked_lm_loss(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        loss, count = predicted_cross_entropy(self.head, hidden, batch)  # only the selected reach the projection
        return ObjectiveOutput(loss=loss, num_predictions=count)


class WholeWordMLM(MaskedLM):
    """`wwm`: every sub-token of a chosen word is selected, and no other; 80/10/10 per token
    (as in BERT's whole-word release)."""

    def select(self, blocks, input_ids, generator):
        word_starts = torch.as_tensor(blocks.word_starts, dtype=torch.bool)
        selected = select_whole_words(word_starts, ~self.is_special[input_ids], self.cfg.mask_prob, generator)
        return selected, torch.rand(input_ids.shape, generator=generator)


class SpanMLM(MaskedLM):
    """`span_mlm` (SpanBERT): spans of whole words inside one document, length ~
    Geometric(0.2) clipped at 10 words, 15% of tokens; one 80/10/10 decision per span."""

    def select(self, blocks, input_ids, generator):
        is_candidate = (~self.is_special[input_ids]).numpy()
        selected, span_ids = select_word_spans(blocks.word_starts, is_candidate, self.cfg, numpy_rng(generator))
        span_ids = torch.as_tensor(span_ids)
        # SpanBERT's `span_masking` with `--replacement-method span` (its released pretraining
        # command) draws one `rand` per span: the whole span becomes [MASK], or random tokens
        # (one drawn per position, as `random_ids` here), or stays. One draw per span id (< T per row).
        per_span = torch.rand(input_ids.shape, generator=generator)
        decision = per_span.gather(1, span_ids.clamp(min=0))
        return torch.as_tensor(selected), decision
