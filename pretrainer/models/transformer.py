"""The transformer body shared by every family: embeddings, blocks, final norm.

Shapes: B batch, T sequence length, C = d_model, H heads, D = C // H per head.
`arch.name=encoder` attends both ways (BERT); `arch.name=decoder` attends causally
(GPT). Attention goes through `scaled_dot_product_attention`, which picks a fused
kernel where one exists.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pretrainer.config import ArchConfig
from pretrainer.models.positions import apply_rotary, rotary_angles


class SelfAttention(nn.Module):
    def __init__(self, cfg: ArchConfig, causal: bool):
        super().__init__()
        self.n_head = cfg.n_head
        self.causal = causal
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, D)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        # key_padding: (B, T) True at real tokens -> (B, 1, 1, T) so padded keys are never attended.
        mask = None if key_padding is None else key_padding[:, None, None, :]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=self.causal and mask is None,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, T, D)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class FeedForward(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_ff)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """One layer; `norm_position` puts LayerNorm before each sublayer (pre) or after the residual sum (post)."""

    def __init__(self, cfg: ArchConfig, causal: bool):
        super().__init__()
        self.pre_norm = cfg.norm_position == "pre"
        self.attn_norm = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg, causal)
        self.ffn_norm = nn.LayerNorm(cfg.d_model)
        self.ffn = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.drop(self.attn(self.attn_norm(x), key_padding, rotary))
            return x + self.drop(self.ffn(self.ffn_norm(x)))
        x = self.attn_norm(x + self.drop(self.attn(x, key_padding, rotary)))
        return self.ffn_norm(x + self.drop(self.ffn(x)))


class TransformerBody(nn.Module):
    """Token ids (B, T) -> hidden states (B, T, C)."""

    def __init__(self, cfg: ArchConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.causal = cfg.name == "decoder"
        self.tok_emb = nn.Embedding(vocab_size, cfg.d_model)
        # Learned absolute positions are added to the input; rotary ones rotate q and k.
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model) if cfg.positions == "learned" else None
        if cfg.positions == "rotary":  # (max_len, D/2) tables, sliced to T; not saved in checkpoints
            cos, sin = rotary_angles(cfg.max_len, cfg.d_model // cfg.n_head, torch.device("cpu"))
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
        # Post-LN (BERT) normalises the embeddings; pre-LN normalises the last block's output.
        self.emb_norm = nn.LayerNorm(cfg.d_model) if cfg.norm_position == "post" else nn.Identity()
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, self.causal) for _ in range(cfg.n_layer))
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.norm_position == "pre" else nn.Identity()
        self.apply(self._init_weights)
        # GPT-2's scaled init: residual-branch outputs shrink with depth so the sum stays O(1).
        for name, param in self.named_parameters():
            if name.endswith(("attn.out.weight", "ffn.down.weight")):
                nn.init.normal_(param, std=cfg.init_std / math.sqrt(2 * cfg.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.cfg.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`attention_mask` (B, T): True/1 at real tokens. A decoder ignores it: with right
        padding, causal attention never lets a real token see a later pad."""
        B, T = input_ids.shape
        if T > self.cfg.max_len:
            raise ValueError(f"input length {T} exceeds arch.max_len={self.cfg.max_len}")
        x = self.tok_emb(input_ids)  # (B, T, C)
        rotary = None
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(T, device=input_ids.device))
        else:
            rotary = (self.rotary_cos[:T], self.rotary_sin[:T])
        x = self.drop(self.emb_norm(x))
        key_padding = None
        if attention_mask is not None and not self.causal and not bool(attention_mask.all()):
            key_padding = attention_mask.bool()
        for block in self.blocks:
            x = block(x, key_padding, rotary)
        return self.final_norm(x)
