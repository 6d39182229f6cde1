"""What every objective provides: a collator that turns packed blocks into model inputs
and targets, and a forward pass that computes the loss from the body's hidden states.

Objectives own their heads (e.g. the LM head), so the body stays objective-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pretrainer.models import LMHead, TransformerBody
from pretrainer.tokenization import SpecialIds


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor  # scalar, mean over predicted tokens
    num_predictions: int  # tokens that entered the loss


class Objective(nn.Module):
    def __init__(self, special: SpecialIds, vocab_size: int):
        super().__init__()
        self.special = special
        self.vocab_size = vocab_size

    def collate(self, blocks: np.ndarray, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """(B, T) token ids -> tensors for `forward`; all randomness drawn from `generator`."""
        raise NotImplementedError

    def forward(self, body: TransformerBody, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        raise NotImplementedError


def special_token_table(special: SpecialIds, vocab_size: int) -> torch.Tensor:
    """(V,) bool, True for ids that must never be selected for prediction."""
    table = torch.zeros(vocab_size, dtype=torch.bool)
    table[: special.count] = True
    return table


def lm_head(body: TransformerBody, transform: bool) -> LMHead:
    """The vocabulary head on `body`, tied to its embedding unless `arch.tie_embeddings=false`."""
    return LMHead(body.tok_emb, transform=transform, tied=body.cfg.tie_embeddings, init_std=body.cfg.init_std)
