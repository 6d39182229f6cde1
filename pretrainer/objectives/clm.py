"""Causal language modelling (GPT) and prefix LM (UniLM, T5's prefix LM).

`clm`: position t predicts token t+1 everywhere. `prefix_lm`: each row draws a prefix
length P uniformly in [1, T-1]; attention is bidirectional within the first P tokens and
causal after them, and only the tokens after the prefix are predicted (positions
P-1 .. T-2 predict tokens P .. T-1). The vocabulary projection runs only at the
predicted positions, listed at collation (`prediction_slots`): under torch.compile a
prefix-LM batch keeps B x (T - 1) slots, the unpredicted ones ignored.
"""

from __future__ import annotations

import torch
from torch import nn

from pretrainer.config import ObjectiveConfig
from pretrainer.data.blocks import BlockBatch
from pretrainer.objectives.base import Objective, ObjectiveOutput, lm_head, predicted_cross_entropy, prediction_slots
from pretrainer.tokenization import SpecialIds


class CausalLM(Objective):
    def __init__(self, cfg: ObjectiveConfig, body: nn.Module, special: SpecialIds, vocab_size: int):
        super().__init__(cfg, special, vocab_size)
        self.head = lm_head(body, transform=False)

    def collate(self, blocks: BlockBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        batch = self.block_inputs(blocks)  # no randomness needed
        every_position = torch.ones_like(batch["input_ids"][:, 1:], dtype=torch.bool)
        return batch | self.next_token_slots(batch["input_ids"], every_position)

    def next_token_slots(self, input_ids: torch.Tensor, predict: torch.Tensor) -> dict[str, torch.Tensor]:
        """`predict` (B, T-1): which next tokens enter the loss (padding never does) -> the
        prediction slots over the (B, T) hidden states: position t predicts token t+1."""
        targets = input_ids[:, 1:]
        predict = predict & (targets != self.special.pad)
        B, T = input_ids.shape
        at_positions = torch.zeros((B, T), dtype=torch.bool)
        at_positions[:, :-1] = predict
        next_tokens = torch.full((B, T), self.special.pad, dtype=input_ids.dtype)
        next_tokens[:, :-1] = targets
        return prediction_slots(at_positions, next_tokens, B * (T - 1) if self.static_shapes else None)

    def forward(self, body: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        hidden = body(batch["input_ids"], batch.get("attention_mask"),
                      document_ids=batch.get("document_ids"))  # (B, T, C)
        return self.next_token_loss(hidden, batch)

    def next_token_loss(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        loss, count = predicted_cross_entropy(self.head, hidden, batch)
        return ObjectiveOutput(loss=loss, num_predictions=count)


class PrefixLM(CausalLM):
    def collate(self, blocks: BlockBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        batch = self.block_inputs(blocks)
        input_ids = batch["input_ids"]  # (B, T)
        prefix_lengths = torch.randint(1, input_ids.shape[1], (input_ids.shape[0],), generator=generator)
        target_positions = torch.arange(1, input_ids.shape[1])  # (T-1,)
        predict = target_positions[None, :] >= prefix_lengths[:, None]  # (B, T-1): tokens after the prefix
        return batch | {"prefix_lengths": prefix_lengths} | self.next_token_slots(input_ids, predict)

    def forward(self, body: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        hidden = body(batch["input_ids"], prefix_lengths=batch["prefix_lengths"],
                      document_ids=batch.get("document_ids"))  # (B, T, C)
        return self.next_token_loss(hidden, batch)
