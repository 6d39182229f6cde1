"""Masked language modelling (BERT) with dynamic masking.

Each non-special token is selected with probability `mask_prob`; of the selected,
`mask_token_prob` become `[MASK]`, `random_token_prob` a random non-special token, the
rest stay unchanged. The loss covers the selected positions only, and the output
projection is computed only there: in a small model the (N, V) projection dominates
the cost, and 85% of it would be thrown away.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pretrainer.config import ObjectiveConfig
from pretrainer.models import TransformerBody
from pretrainer.objectives.base import Objective, ObjectiveOutput, lm_head, special_token_table
from pretrainer.tokenization import SpecialIds


class MaskedLM(Objective):
    def __init__(self, cfg: ObjectiveConfig, body: TransformerBody, special: SpecialIds, vocab_size: int):
        super().__init__(special, vocab_size)
        self.cfg = cfg
        self.head = lm_head(body, transform=True)
        self.register_buffer("is_special", special_token_table(special, vocab_size), persistent=False)

    def collate(self, blocks: np.ndarray, generator: torch.Generator) -> dict[str, torch.Tensor]:
        input_ids = torch.as_tensor(blocks, dtype=torch.long)  # (B, T)
        selected = (torch.rand(input_ids.shape, generator=generator) < self.cfg.mask_prob) & ~self.is_special[input_ids]
        decision = torch.rand(input_ids.shape, generator=generator)
        to_mask = selected & (decision < self.cfg.mask_token_prob)
        to_random = selected & ~to_mask & (decision < self.cfg.mask_token_prob + self.cfg.random_token_prob)
        random_ids = torch.randint(self.special.count, self.vocab_size, input_ids.shape, generator=generator)
        corrupted = torch.where(to_mask, self.special.mask, input_ids)
        corrupted = torch.where(to_random, random_ids, corrupted)
        return {"input_ids": corrupted, "targets": input_ids, "selected": selected}

    def forward(self, body: TransformerBody, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        hidden = body(batch["input_ids"], batch.get("attention_mask"))  # (B, T, C)
        selected = batch["selected"]
        rows = hidden[selected]  # (N, C): only the predicted positions reach the vocabulary projection
        logits = self.head(rows)  # (N, V)
        if rows.shape[0] == 0:
            return ObjectiveOutput(loss=logits.sum() * 0.0, num_predictions=0)
        loss = F.cross_entropy(logits.float(), batch["targets"][selected])
        return ObjectiveOutput(loss=loss, num_predictions=rows.shape[0])
