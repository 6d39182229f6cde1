"""Task models (a body plus a small head) and the encoding of task examples.

- sequence tasks (classification, regression): pooled body states -> (B, K) logits
  (K = 1 for regression). Encoder: mean of real tokens or the first token; decoder: the
  last real token (the only state that has seen the whole input, as GPT); encoder-decoder:
  its encoder pooled like an encoder, or (`pooling=decoder`) the decoder's final state
  after reading the whole input, as BART does.
- tagging: per-token logits (B, T, K); each word is labelled at its first sub-token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn

from pretrainer.data.examples import LabeledExample
from pretrainer.models import ClassificationHead
from pretrainer.models.heads import pool

IGNORE = -100  # tag label of sub-tokens after a word's first, and of special tokens


class TaskModel(nn.Module):
    def __init__(self, body: nn.Module, kind: str, num_outputs: int, pooling: str, dropout: float):
        super().__init__()
        self.body = body
        self.kind = kind
        self.pooling = "last" if body.causal else pooling
        self.uses_token_types = getattr(body, "seg_emb", None) is not None
        self.head = ClassificationHead(body.cfg.d_model, num_outputs, dropout)

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) states the head reads."""
        if self.uses_token_types:  # sentence A / B of a pair, as in pretraining with NSP/SOP
            return self.body(input_ids, attention_mask, token_type_ids)
        states = self.body(input_ids, attention_mask)
        if self.pooling == "decoder":  # BART: the decoder reads the input too; its last state sees everything
            return self.body.decode(input_ids, states, attention_mask)
        return states

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, hidden): logits (B, K) for sequence tasks, (B, T, K) for tagging."""
        hidden = self.hidden(input_ids, attention_mask, token_type_ids)
        if self.kind == "tagging":
            return self.head(hidden), hidden
        method = "last" if self.pooling == "decoder" else self.pooling
        return self.head(pool(hidden, attention_mask, method)), hidden


def task_loss(kind: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if kind == "regression":
        return F.mse_loss(logits.float().squeeze(-1), labels.float())
    if kind == "tagging":
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
    return F.cross_entropy(logits.float(), labels)


def causal_lm_loss(body: nn.Module, hidden: torch.Tensor, input_ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Next-token loss on the input itself (GPT's auxiliary objective), through the tied embedding."""
    logits = F.linear(hidden[:, :-1], body.tok_emb.weight)  # (B, T-1, V)
    return F.cross_entropy(logits.float().flatten(0, 1), input_ids[:, 1:].flatten(), ignore_index=pad_id)


@dataclass
class EncodedExamples:
    ids: list[list[int]]  # token ids with the template's special tokens, truncated
    type_ids: list[list[int]]  # 0 for the first text (and [CLS]), 1 for the second of a pair
    labels: list  # per example: class id, float score, or (tagging) a per-token label list with IGNORE
    texts: list[str]  # for the predictions files

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, rows, pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input ids, attention mask and token types (B, T) of `rows`, right-padded, on `device`."""
        input_ids, mask = pad_batch([self.ids[i] for i in rows], pad_id)
        type_ids, _ = pad_batch([self.type_ids[i] for i in rows], 0)
        return input_ids.to(device), mask.to(device), type_ids.to(device)

    def label_batch(self, rows, kind: str, device: torch.device) -> torch.Tensor:
        if kind == "tagging":
            labels, _ = pad_batch([self.labels[i] for i in rows], IGNORE)
            return labels.to(device)
        dtype = torch.float32 if kind == "regression" else torch.long
        return torch.as_tensor([self.labels[i] for i in rows], dtype=dtype, device=device)


def encode_examples(tokenizer: Tokenizer, examples: list[LabeledExample], max_length: int,
                    kind: str = "classification") -> EncodedExamples:
    """Single or pair template, truncated longest-first to `max_length` tokens. Tagging
    encodes the words as given (pre-tokenized) and labels each word's first sub-token;
    words cut off by truncation are not scored."""
    tokenizer = Tokenizer.from_str(tokenizer.to_str())  # truncation settings stay local to this copy
    tokenizer.enable_truncation(max_length)
    if kind == "tagging":
        encodings = tokenizer.encode_batch([ex.text_a.split() for ex in examples], is_pretokenized=True)
        labels = [_first_subtoken_labels(e.word_ids, ex.label) for e, ex in zip(encodings, examples, strict=True)]
    else:
        inputs = [ex.text_a if ex.text_b is None else (ex.text_a, ex.text_b) for ex in examples]
        encodings = tokenizer.encode_batch(inputs, add_special_tokens=True)
        labels = [ex.label for ex in examples]
    texts = [ex.text_a if ex.text_b is None else f"{ex.text_a} ||| {ex.text_b}" for ex in examples]
    return EncodedExamples([e.ids for e in encodings], [e.type_ids for e in encodings], labels, texts)


def _first_subtoken_labels(word_ids: list[int | None], tags: tuple[int, ...]) -> list[int]:
    labels, previous = [], None
    for word in word_ids:
        labels.append(tags[word] if word is not None and word != previous else IGNORE)
        previous = word
    return labels


def pad_batch(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence: values (B, T) and attention mask (B, T)."""
    length = max(len(seq) for seq in ids)
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.bool)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = True
    return input_ids, mask


def flat_labels(data: EncodedExamples, kind: str) -> np.ndarray:
    """Gold labels as the metrics see them: one per example, or one per scored word."""
    if kind == "tagging":
        return np.array([label for labels in data.labels for label in labels if label != IGNORE], dtype=np.int64)
    return np.asarray(data.labels, dtype=np.float64 if kind == "regression" else np.int64)
