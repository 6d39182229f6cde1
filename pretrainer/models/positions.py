"""Rotary position embeddings (RoFormer, Su et al. 2021), the half-split form of GPT-NeoX.

Queries and keys are rotated by an angle proportional to their position, so their dot
product depends on the relative offset only: a head can learn "attend to the next
token" once, for every position, instead of per learned absolute position.
"""

from __future__ import annotations

import torch


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
