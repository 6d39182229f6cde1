"""Small heads on top of the body's hidden states (B, T, C) or gathered rows (N, C)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LMHead(nn.Module):
    """Hidden rows (N, C) -> vocabulary logits (N, V).

    `tied=True` uses the input embedding matrix as the output matrix (BERT, GPT-2);
    otherwise the head owns a separate one. `transform=True` adds BERT's
    dense + GELU + LayerNorm before the projection; its dense layer maps `in_dim` (a
    narrower ELECTRA generator's width) to the embedding width.
    """

    def __init__(self, embedding: nn.Embedding, transform: bool, tied: bool = True, init_std: float = 0.02,
                 in_dim: int | None = None, bias: bool = True, norm_eps: float = 1e-5):
        super().__init__()
        vocab_size, d_model = embedding.weight.shape
        in_dim = in_dim or d_model
        if in_dim != d_model and not transform:
            raise ValueError("an LM head on a narrower input needs transform=True to reach the embedding width")
        if tied:
            self.embedding = embedding  # shared, not copied: its weight is the output matrix
        else:
            self.embedding = nn.Embedding(vocab_size, d_model)
            nn.init.normal_(self.embedding.weight, std=init_std)
        self.transform = (nn.Sequential(nn.Linear(in_dim, d_model), nn.GELU(), nn.LayerNorm(d_model, eps=norm_eps))
                          if transform else nn.Identity())
        self.bias = nn.Parameter(torch.zeros(vocab_size)) if bias else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(hidden), self.embedding.weight, self.bias)


class ClassificationHead(nn.Module):
    """Pooled states (B, C) -> class logits (B, K)."""

    def __init__(self, d_model: int, num_labels: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(d_model, num_labels)
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.proj(self.drop(pooled))


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, method: str) -> torch.Tensor:
    """(B, T, C) states and (B, T) mask -> (B, C).

    first: the first token ([CLS]); mean: average over real tokens; last: the last real
    token, the only one a causal decoder lets see the whole input.
    """
    mask = attention_mask.to(hidden.dtype)
    if method == "first":
        return hidden[:, 0]
    if method == "mean":
        return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
    if method == "last":
        last = attention_mask.long().sum(1) - 1  # (B,) index of the last real token
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {method!r}; choose first, mean or last")
