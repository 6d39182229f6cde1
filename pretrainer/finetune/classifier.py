"""A sequence classifier: a body, a pooling rule and a linear head."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from pretrainer.data.examples import LabeledExample
from pretrainer.models import ClassificationHead
from pretrainer.models.heads import pool


class SequenceClassifier(nn.Module):
    """An encoder-decoder body classifies from its encoder's states (`forward` runs the encoder)."""

    def __init__(self, body: nn.Module, num_labels: int, pooling: str, dropout: float):
        super().__init__()
        self.body = body
        # A causal body's only state that has seen the whole input is the last real token's.
        self.pooling = "last" if body.causal else pooling
        self.uses_token_types = getattr(body, "seg_emb", None) is not None
        self.head = ClassificationHead(body.cfg.d_model, num_labels, dropout)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.uses_token_types:  # sentence A / B of a pair, as in pretraining with NSP/SOP
            hidden = self.body(input_ids, attention_mask, token_type_ids)  # (B, T, C)
        else:
            hidden = self.body(input_ids, attention_mask)
        return self.head(pool(hidden, attention_mask, self.pooling))  # (B, K)


@dataclass
class EncodedExamples:
    ids: list[list[int]]  # token ids with the template's special tokens, truncated
    type_ids: list[list[int]]  # 0 for the first text (and [CLS]), 1 for the second of a pair
    labels: np.ndarray  # (N,)

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, rows, pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input ids, attention mask and token types (B, T) of `rows`, right-padded, on `device`."""
        input_ids, mask = pad_batch([self.ids[i] for i in rows], pad_id)
        type_ids, _ = pad_batch([self.type_ids[i] for i in rows], 0)
        return input_ids.to(device), mask.to(device), type_ids.to(device)


def encode_examples(tokenizer: Tokenizer, examples: list[LabeledExample], max_length: int) -> EncodedExamples:
    """Single or pair template, truncated longest-first to `max_length` tokens."""
    tokenizer = Tokenizer.from_str(tokenizer.to_str())  # truncation settings stay local to this copy
    tokenizer.enable_truncation(max_length)
    inputs = [ex.text_a if ex.text_b is None else (ex.text_a, ex.text_b) for ex in examples]
    encodings = tokenizer.encode_batch(inputs, add_special_tokens=True)
    return EncodedExamples([e.ids for e in encodings], [e.type_ids for e in encodings],
                           np.array([ex.label for ex in examples], dtype=np.int64))


def pad_batch(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence: input ids (B, T) and attention mask (B, T)."""
    length = max(len(seq) for seq in ids)
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.bool)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = True
    return input_ids, mask
