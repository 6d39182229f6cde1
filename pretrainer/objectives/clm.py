"""Causal language modelling (GPT) and prefix LM (UniLM, T5's prefix LM).

`clm`: position t predicts token t+1 everywhere. `prefix_lm`: each row draws a prefix
length P uniformly in [1, T-1]; attention is bidirectional within the first P tokens and
causal after them, and only the tokens after the prefix are predicted (positions
P-1 .. T-2 predict tokens P .. T-1). The vocabulary projection runs only at the
predicted positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pretrainer.config import ObjectiveConfig
from pretrainer.data.blocks import BlockBatch
from pretrainer.objectives.base import Objective, ObjectiveOutput, lm_head
from pretrainer.tokenization import SpecialIds


class CausalLM(Objective):
    def __init__(self, cfg: ObjectiveConfig, body: nn.Module, special: SpecialIds, vocab_size: int):
        super().__init__(cfg, special, vocab_size)
        self.head = lm_head(body, transform=False)

    def collate(self, blocks: BlockBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.block_inputs(blocks)  # no randomness needed

    def forward(self, body: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        hidden = body(batch["input_ids"], batch.get("attention_mask"),
                      document_ids=batch.get("document_ids"))  # (B, T, C)
        every_position = torch.ones_like(batch["input_ids"][:, 1:], dtype=torch.bool)
        return self.next_token_loss(hidden, batch["input_ids"], every_position)

    def next_token_loss(self, hidden: torch.Tensor, input_ids: torch.Tensor, predict: torch.Tensor) -> ObjectiveOutput:
        """`predict` (B, T-1): which next tokens enter the loss; padding never does."""
        targets = input_ids[:, 1:]
        predict = predict & (targets != self.special.pad)
        logits = self.head(hidden[:, :-1][predict])  # (N, V): position t predicts token t+1
        loss = F.cross_entropy(logits.float(), targets[predict])
        return ObjectiveOutput(loss=loss, num_predictions=int(predict.sum()))


class PrefixLM(CausalLM):
    def collate(self, blocks: BlockBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        batch = super().collate(blocks, generator)
        input_ids = batch["input_ids"]  # (B, T)
        prefix_lengths = torch.randint(1, input_ids.shape[1], (input_ids.shape[0],), generator=generator)
        return batch | {"prefix_lengths": prefix_lengths}

    def forward(self, body: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        input_ids, prefix_lengths = batch["input_ids"], batch["prefix_lengths"]
        hidden = body(input_ids, prefix_lengths=prefix_lengths, document_ids=batch.get("document_ids"))  # (B, T, C)
        target_positions = torch.arange(1, input_ids.shape[1], device=input_ids.device)  # (T-1,)
        return self.next_token_loss(hidden, input_ids, target_positions[None, :] >= prefix_lengths[:, None])
