"""Position information, absolute and relative.

- sinusoidal (Vaswani et al. 2017): fixed sines and cosines added to the input;
- rotary (RoFormer, Su et al. 2021), the half-split form of GPT-NeoX: queries and keys
  are rotated by an angle proportional to their position, so their dot product depends
  on the relative offset only;
- ALiBi (Press et al. 2022): no embedding; each head adds -slope * distance to its
  attention scores (symmetric |i - j| in a bidirectional encoder, as MosaicBERT);
- directional ALiBi (`alibi_directional`), for bidirectional stacks: the same slopes, but
  even heads see only their left (j <= i) and odd heads only their right (j >= i), the
  split Press suggests for encoders (attention_with_linear_biases issue #5). Symmetric
  ALiBi alone cannot tell left from right: with nothing else marking position, reversing
  the input reverses the outputs, so a subject and an object at the same distance from
  their verb look alike. In a causal stack (a decoder's, prefix_lm's too: its prefix stays
  symmetric) the causal mask already hides the right, and directional ALiBi is plain ALiBi,
  as it is for a single head;
- T5 relative bias (Raffel et al. 2020): a learned scalar per head and bucket of
  relative distance (exact below half the buckets, logarithmic up to a max distance),
  added to the scores of every layer of a stack.
The relative kinds work at any length, including beyond the training length. Each comes
both as a dense (1, H, T, S) bias (for SDPA's attn_mask) and as a FlexAttention score_mod
adding the same values inside the kernel, without the (H, T, S) tensor.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(length: int, d_model: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, C): sin on even channels, cos on odd ones, wavelengths from 2pi to 10000 * 2pi."""
    positions = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    frequencies = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32, device=device)
                            * (-math.log(10_000.0) / d_model))
    table = torch.zeros(length, d_model, device=device)
    table[:, 0::2] = torch.sin(positions * frequencies)
    table[:, 1::2] = torch.cos(positions * frequencies[: d_model // 2])
    return table


def rotary_angles(length: int, head_dim: int, device: torch.device,
                  base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (T, D/2)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)  # (T, D/2)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, D) queries or keys; pairs are (i, i + D/2)."""
    first, second = x.chunk(2, dim=-1)  # 2 x (B, H, T, D/2)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """(H,) geometric slopes 2^(-8 h / H); for a head count that is not a power of two, the
    paper's interleaving of the next power's slopes."""
    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_head).is_integer():
        return torch.tensor(power_of_two(n_head))
    closest = 2 ** math.floor(math.log2(n_head))
    extra = power_of_two(2 * closest)[0::2][: n_head - closest]
    return torch.tensor(power_of_two(closest) + extra)


ALIBI = ("alibi", "alibi_directional")  # the `positions` kinds with ALiBi's slopes
# Added to a directional head's scores on its blind side: exp(-1e4) is exactly 0, and unlike
# -inf it leaves a row finite where the seen side is all padding (a padding query's row).
BLIND_SIDE = 1e4


def alibi_directions(n_head: int) -> torch.Tensor | None:
    """(H,) bool: which heads of directional ALiBi look right (the odd ones), so each side
    gets a sharp and a broad slope; None (symmetric) for a single head, which has no partner
    to see the other side (ELECTRA's generator at the tiny and mini sizes)."""
    return torch.arange(n_head) % 2 == 1 if n_head > 1 else None


def alibi_bias(slopes: torch.Tensor, length: int, looks_right: torch.Tensor | None = None) -> torch.Tensor:
    """(1, H, T, T) additive scores -slope * |i - j| (a causal mask hides j > i anyway); with
    `looks_right` (H,) bool, directional: each head also gets -BLIND_SIDE on its other side."""
    positions = torch.arange(length, device=slopes.device)
    offset = positions[None, :] - positions[:, None]  # (T, T): j - i
    bias = -(slopes[:, None, None] * offset.abs()[None])  # (H, T, T)
    if looks_right is not None:
        blind = torch.where(looks_right[:, None, None], offset[None] < 0, offset[None] > 0)  # (H, T, T)
        bias = bias - BLIND_SIDE * blind
    return bias.unsqueeze(0)


def alibi_score_mod(slopes: torch.Tensor, looks_right: torch.Tensor | None = None):
    """FlexAttention score_mod adding `alibi_bias`'s values; `slopes` and `looks_right` (H,)."""
    def score_mod(score, b, h, q_idx, kv_idx):
        score = score - slopes[h] * (q_idx - kv_idx).abs()
        if looks_right is None:  # decided when the kernel is traced, not per score
            return score
        return score - BLIND_SIDE * torch.where(looks_right[h], kv_idx < q_idx, kv_idx > q_idx)

    return score_mod


class RelativePositionBias(nn.Module):
    """T5's learned bias per (bucket of j - i, head): (1, H, T, S) added to attention scores."""

    def __init__(self, n_head: int, bidirectional: bool, num_buckets: int, max_distance: int):
        super().__init__()
        self.bidirectional = bidirectional
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.embedding = nn.Embedding(num_buckets, n_head)

    def bucket(self, relative: torch.Tensor) -> torch.Tensor:
        """Relative positions (key - query) -> bucket ids, as T5 computes them."""
        buckets = torch.zeros_like(relative)
        num_buckets = self.num_buckets
        if self.bidirectional:
            num_buckets //= 2
            buckets = buckets + (relative > 0).long() * num_buckets
            relative = relative.abs()
        else:
            relative = -torch.clamp(relative, max=0)
        exact = num_buckets // 2
        is_small = relative < exact
        # Larger distances share buckets logarithmically up to max_distance.
        large = exact + (torch.log(relative.float().clamp(min=1) / exact)
                         / math.log(self.max_distance / exact) * (num_buckets - exact)).long()
        large = torch.clamp(large, max=num_buckets - 1)
        return buckets + torch.where(is_small, relative, large)

    def forward(self, query_length: int, key_length: int) -> torch.Tensor:
        device = self.embedding.weight.device
        relative = (torch.arange(key_length, device=device)[None, :]
                    - torch.arange(query_length, device=device)[:, None])  # (T, S)
        return self.embedding(self.bucket(relative)).permute(2, 0, 1).unsqueeze(0)  # (1, H, T, S)

    def by_offset(self, query_length: int, key_length: int) -> torch.Tensor:
        """(T + S - 1, H): the bias of every offset key - query, from -(T - 1) to S - 1."""
        device = self.embedding.weight.device
        return self.embedding(self.bucket(torch.arange(1 - query_length, key_length, device=device)))

    def score_mod(self, query_length: int, key_length: int, dtype: torch.dtype):
        """FlexAttention score_mod adding the same bias as `forward`: O(T + S) memory rather
        than O(T S), and the embedding still learns (FlexAttention differentiates through a
        score_mod's captured tensors)."""
        table = self.by_offset(query_length, key_length).to(dtype)  # (T + S - 1, H)

        def score_mod(score, b, h, q_idx, kv_idx):
            return score + table[kv_idx - q_idx + query_length - 1, h]
        return score_mod
