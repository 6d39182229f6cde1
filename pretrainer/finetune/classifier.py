"""A sequence classifier: a body, a pooling rule and a linear head."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from pretrainer.data.examples import LabeledExample
from pretrainer.models import ClassificationHead, TransformerBody
from pretrainer.models.heads import pool


class SequenceClassifier(nn.Module):
    def __init__(self, body: TransformerBody, num_labels: int, pooling: str, dropout: float):
        super().__init__()
        self.body = body
        # A causal body's only state that has seen the whole input is the last real token's.
        self.pooling = "last" if body.causal else pooling
        self.head = ClassificationHead(body.cfg.d_model, num_labels, dropout)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.body(input_ids, attention_mask)  # (B, T, C)
        return self.head(pool(hidden, attention_mask, self.pooling))  # (B, K)


@dataclass
class EncodedExamples:
    ids: list[list[int]]  # token ids with the template's special tokens, truncated
    labels: np.ndarray  # (N,)

    def __len__(self) -> int:
        return len(self.ids)


def encode_examples(tokenizer: Tokenizer, examples: list[LabeledExample], max_length: int) -> EncodedExamples:
    """Single or pair template, truncated longest-first to `max_length` tokens."""
    tokenizer = Tokenizer.from_str(tokenizer.to_str())  # truncation settings stay local to this copy
    tokenizer.enable_truncation(max_length)
    inputs = [ex.text_a if ex.text_b is None else (ex.text_a, ex.text_b) for ex in examples]
    encodings = tokenizer.encode_batch(inputs, add_special_tokens=True)
    return EncodedExamples([e.ids for e in encodings], np.array([ex.label for ex in examples], dtype=np.int64))


def pad_batch(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence: input ids (B, T) and attention mask (B, T)."""
    length = max(len(seq) for seq in ids)
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.bool)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = True
    return input_ids, mask
