"""What every objective provides: a collator that turns packed blocks into model inputs
and targets, and a forward pass that computes the loss from the body's hidden states.

Objectives own their heads (e.g. the LM head), so the body stays objective-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pretrainer.config import ObjectiveConfig
from pretrainer.data.blocks import BlockBatch
from pretrainer.models import LMHead
from pretrainer.tokenization import SpecialIds


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor  # scalar, mean over predicted tokens
    num_predictions: int  # tokens that entered the loss
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # named scalar parts of a combined loss


class Objective(nn.Module):
    def __init__(self, cfg: ObjectiveConfig, special: SpecialIds, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.special = special
        self.vocab_size = vocab_size
        # A plain CPU tensor, not a buffer: collation runs on the CPU even when the model is on a GPU.
        self.is_special = special_token_table(special, vocab_size)

    @staticmethod
    def special_tokens(cfg: ObjectiveConfig, block_size: int) -> list[str]:
        """Tokens this objective adds to the tokenizer (e.g. T5's sentinels)."""
        return []

    @staticmethod
    def raw_block_size(cfg: ObjectiveConfig, block_size: int) -> int:
        """Length of the packed blocks to read so that the model's input is `block_size` long."""
        return block_size

    def collate(self, blocks: BlockBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Packed blocks (B, T) -> tensors for `forward`; all randomness drawn from `generator`."""
        raise NotImplementedError

    def forward(self, body: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        raise NotImplementedError

    def block_inputs(self, blocks: BlockBatch) -> dict[str, torch.Tensor]:
        """Packed blocks as they are: `input_ids` (B, T), plus `document_ids` (B, T) when
        `objective.document_mask` keeps attention within each document."""
        input_ids = torch.as_tensor(blocks.ids, dtype=torch.long)
        if self.cfg.masks_documents:
            return {"input_ids": input_ids, "document_ids": self.document_ids(input_ids)}
        return {"input_ids": input_ids}

    def document_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, T) index of each token's document within its block: the [SEP] that ends a
        document belongs to it, and the leading [CLS] to the first."""
        ends = input_ids == self.special.sep
        return ends.cumsum(1) - ends.long()

    def random_ids(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Uniform non-special token ids (BERT's 10% random replacements)."""
        return torch.randint(self.special.count, self.vocab_size - len(self.special.sentinels), shape,
                             generator=generator)


def numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy generator seeded from `generator`, for samplers written with numpy loops."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))


def special_token_table(special: SpecialIds, vocab_size: int) -> torch.Tensor:
    """(V,) bool, True for ids that must never be selected for prediction."""
    table = torch.zeros(vocab_size, dtype=torch.bool)
    table[special.all_ids()] = True
    return table


def lm_head(body: nn.Module, transform: bool) -> LMHead:
    """The vocabulary head on `body`, tied to its embedding unless `arch.tie_embeddings=false`.

    `transform=True` is BERT's MLM head (dense + GELU + LayerNorm, output bias); without it
    the head is GPT-2's / T5's plain projection, which has no bias.
    """
    return LMHead(body.tok_emb, transform=transform, tied=body.cfg.tie_embeddings, init_std=body.cfg.init_std,
                  bias=transform, norm_eps=body.cfg.norm_eps)
