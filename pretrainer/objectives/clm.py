"""Causal language modelling (GPT): predict token t+1 from tokens up to t."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pretrainer.config import ObjectiveConfig
from pretrainer.models import TransformerBody
from pretrainer.objectives.base import Objective, ObjectiveOutput, lm_head
from pretrainer.tokenization import SpecialIds


class CausalLM(Objective):
    def __init__(self, cfg: ObjectiveConfig, body: TransformerBody, special: SpecialIds, vocab_size: int):
        super().__init__(special, vocab_size)
        self.head = lm_head(body, transform=False)

    def collate(self, blocks: np.ndarray, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.as_tensor(blocks, dtype=torch.long)}  # (B, T); no randomness needed

    def forward(self, body: TransformerBody, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        input_ids = batch["input_ids"]
        hidden = body(input_ids, batch.get("attention_mask"))  # (B, T, C)
        logits = self.head(hidden[:, :-1])  # (B, T-1, V): position t predicts token t+1
        targets = input_ids[:, 1:]
        # Padding never enters the loss (packed blocks have none; padded batches may).
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=self.special.pad)
        return ObjectiveOutput(loss=loss, num_predictions=int((targets != self.special.pad).sum()))
