"""What every objective provides: a collator that turns packed blocks into model inputs
and targets, and a forward pass that computes the loss from the body's hidden states.

Objectives own their heads (e.g. the LM head), so the body stays objective-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pretrainer.config import ObjectiveConfig
from pretrainer.data.blocks import BlockBatch
from pretrainer.models import LMHead
from pretrainer.tokenization import SpecialIds

IGNORE_INDEX = -100  # a prediction slot that holds no target (padding up to a fixed capacity)


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor  # scalar, mean over predicted tokens
    num_predictions: torch.Tensor  # scalar count of the tokens that entered the loss (a tensor: no host sync)
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # named scalar parts of a combined loss


class Objective(nn.Module):
    def __init__(self, cfg: ObjectiveConfig, special: SpecialIds, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.special = special
        self.vocab_size = vocab_size
        # A plain CPU tensor, not a buffer: collation runs on the CPU even when the model is on a GPU.
        self.is_special = special_token_table(special, vocab_size)
        # Under torch.compile every batch must have the same shapes: prediction slots are then
        # padded to a capacity fixed by the config (`prediction_slots`). Set by the trainer.
        self.static_shapes = False

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


def prediction_slots(predict: torch.Tensor, targets: torch.Tensor, capacity: int | None) -> dict[str, torch.Tensor]:
    """The positions a loss reads, decided on the CPU at collation so that the forward pass has
    no data-dependent shape: `predict` (B, T) bool, `targets` (B, T) ->
    `predict_index` (K,) flat positions into (B * T) and `predict_targets` (K,), in row-major
    order. K is the number of predicted positions, or `capacity` when given (the shape then
    never changes): the extra slots read position 0 and hold IGNORE_INDEX."""
    index = predict.flatten().nonzero().squeeze(1)  # (N,)
    slot_targets = targets.flatten()[index]
    if capacity is not None:
        if index.numel() > capacity:
            raise ValueError(f"{index.numel()} predictions exceed the fixed capacity {capacity}")
        padding = capacity - index.numel()
        index = F.pad(index, (0, padding))
        slot_targets = F.pad(slot_targets, (0, padding), value=IGNORE_INDEX)
    return {"predict_index": index, "predict_targets": slot_targets}


def slot_capacity(num_positions: int, rate: float) -> int:
    """A fixed number of prediction slots for `num_positions` positions each predicted with
    probability about `rate`: the mean plus 8 standard deviations of a binomial count (whole
    words and spans make the count vary more than independent tokens do), a multiple of 8."""
    mean = num_positions * rate
    spread = 8 * math.sqrt(max(mean * (1 - rate), 1.0))
    return min(num_positions, 8 * math.ceil((mean + spread) / 8))


def cap_selection(selected: torch.Tensor, capacity: int) -> torch.Tensor:
    """(B, T) bool with at most `capacity` True: the ones after the first `capacity` (row-major)
    are dropped. At `slot_capacity`'s margin this happens about once in 1e15 batches for
    token-level masking; it keeps the batch's shape fixed without a silent truncation of the loss."""
    if int(selected.sum()) <= capacity:
        return selected
    flat = selected.flatten()
    flat = flat & (flat.cumsum(0) <= capacity)
    return flat.view_as(selected)


def predicted_cross_entropy(head: nn.Module, hidden: torch.Tensor,
                            batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, count) of the vocabulary head at the batch's prediction slots: `hidden`
    (B, T, C) is read at `predict_index`, so the (K, V) projection runs only there (in a small
    model it dominates the cost). A batch with no target gives a loss of 0."""
    rows = hidden.flatten(0, 1).index_select(0, batch["predict_index"])  # (K, C)
    return mean_cross_entropy(head(rows), batch["predict_targets"])


def mean_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                       ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy over the targets that are not `ignore_index`, their count):
    `logits` (..., V) and `targets` (...) any matching shape; the loss is computed in fp32."""
    targets = targets.flatten()
    total = F.cross_entropy(logits.flatten(0, -2).float(), targets, ignore_index=ignore_index, reduction="sum")
    count = (targets != ignore_index).sum()
    return total / count.clamp(min=1), count


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
