"""Attention and its masks, run by `scaled_dot_product_attention` (SDPA) or FlexAttention.

Shapes: B batch, H heads, T query length, S key length, D head width. Boolean masks are
True where a query may attend a key.

A stack describes who attends whom once per forward as an `AttentionPattern` (causal or
not, key padding, prefix-LM prefix lengths, document ids of packed blocks) and turns it
into one `AttentionKernel` that all its layers share:

- SDPA with `is_causal=True` or no mask at all for plain causal or unmasked attention, so
  CUDA keeps its flash kernel;
- FlexAttention on CUDA for everything else: the pattern becomes a `BlockMask` (built once
  per forward; the kernel skips fully masked 128 x 128 tiles and never reads a dense
  (B, T, S) mask) and additive position biases become a `score_mod`. An explicit dense
  mask would force SDPA off the flash kernel onto a slower one;
- SDPA with a dense mask (and the bias folded into it) elsewhere: on CPU, without
  FlexAttention, while attention dropout is active (FlexAttention has none), and for
  heads narrower than 16 (its CUDA kernel's minimum).

`attention_backend` picks: "auto" (the above), "sdpa" (always SDPA) or "flex" (FlexAttention
wherever the pattern is known, also on CPU, where it runs eagerly and forward-only).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pretrainer.config import ArchConfig
from pretrainer.models.positions import apply_rotary

try:  # torch >= 2.5; a build without it keeps SDPA everywhere
    from torch.nn.attention.flex_attention import and_masks, create_block_mask, flex_attention
except ImportError:  # pragma: no cover - depends on the torch build
    flex_attention = None

ATTENTION_BACKENDS = ("auto", "sdpa", "flex")
Rotary = tuple[torch.Tensor, torch.Tensor]
# score_mod(score, b, h, q_idx, kv_idx) -> score, on scalar tensors (FlexAttention's signature)
ScoreMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def flex_available() -> bool:
    return flex_attention is not None


# ---------------------------------------------------------------- dense (SDPA) masks


def combine_masks(mask: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor | None:
    """A boolean mask (True = may attend) and an additive float bias -> one SDPA attn_mask."""
    if bias is None:
        return mask
    if mask is None:
        return bias
    return bias.masked_fill(~mask, float("-inf"))


def key_padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, S) True at real tokens -> (B, 1, 1, S) for SDPA, or None without a mask.

    A mask is used as given, even one without padding: checking would read it back to the
    host, a sync on every forward and a graph break under torch.compile. Callers without
    padding pass None."""
    if attention_mask is None:
        return None
    return attention_mask.bool()[:, None, None, :]


def causal_mask(length: int, device: torch.device) -> torch.Tensor:
    """(T, T) [query, key]: position i sees j when j <= i."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def prefix_lm_mask(prefix_lengths: torch.Tensor, length: int) -> torch.Tensor:
    """(B,) prefix lengths -> (B, 1, T, T): position i sees j when j <= i or j is in the prefix."""
    in_prefix = torch.arange(length, device=prefix_lengths.device)[None, :] < prefix_lengths[:, None]  # (B, T) keys
    return (causal_mask(length, prefix_lengths.device)[None] | in_prefix[:, None, :])[:, None]


def same_document_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) document index per token -> (B, 1, T, T): a query sees only keys of its own document."""
    return (document_ids[:, :, None] == document_ids[:, None, :])[:, None]


def _narrow(mask: torch.Tensor | None, narrower: torch.Tensor) -> torch.Tensor:
    return narrower if mask is None else mask & narrower


# ---------------------------------------------------------------- patterns


class AttentionPattern(NamedTuple):
    """Who attends whom, by its parts rather than as a dense mask, so that it can become an
    SDPA mask or a FlexAttention BlockMask. A NamedTuple: torch.compile traces it as is.

    `causal`: query i sees keys j <= i. `prefix_lengths` (B,): with `causal`, every query
    also sees the first prefix_lengths[b] keys (prefix-LM). `key_padding` (B, S) bool, True
    at real keys. `document_ids` (B, T): self-attention within a query's own document."""

    causal: bool = False
    key_padding: torch.Tensor | None = None
    prefix_lengths: torch.Tensor | None = None
    document_ids: torch.Tensor | None = None

    @property
    def needs_mask(self) -> bool:
        """Whether this is more than plain causal (SDPA's is_causal) or no mask at all."""
        return any(part is not None for part in (self.key_padding, self.prefix_lengths, self.document_ids))

    @property
    def batch_size(self) -> int | None:
        """The batch size the mask varies over, or None when every row has the same mask."""
        for part in (self.key_padding, self.prefix_lengths, self.document_ids):
            if part is not None:
                return part.shape[0]
        return None


def self_attention_pattern(causal: bool, attention_mask: torch.Tensor | None = None,
                           prefix_lengths: torch.Tensor | None = None,
                           document_ids: torch.Tensor | None = None) -> AttentionPattern:
    """The pattern of one self-attention stack: key padding (bidirectional only: with right
    padding, causal attention never lets a real token see a later pad), causal or prefix-LM
    (causal only), narrowed to a token's own document when `document_ids` (B, T) is given."""
    return AttentionPattern(
        causal=causal,
        key_padding=None if causal or attention_mask is None else attention_mask.bool(),
        prefix_lengths=prefix_lengths if causal else None,
        document_ids=document_ids,
    )


def cross_attention_pattern(memory_mask: torch.Tensor | None) -> AttentionPattern:
    """The pattern of cross-attention over encoder states: their key padding, `memory_mask`
    (B, S) True/1 at real tokens, or no mask."""
    return AttentionPattern(key_padding=None if memory_mask is None else memory_mask.bool())


def dense_mask(pattern: AttentionPattern, length: int) -> tuple[torch.Tensor | None, bool]:
    """(SDPA boolean mask broadcastable to (B, 1, T, S) or None, is_causal) for `pattern`
    over `length` queries. Every real token sees at least itself, so no row is empty (a pad
    query sees the real tokens of its document; a document of nothing but pads would have
    empty rows)."""
    mask = key_padding_mask(pattern.key_padding)  # (B, 1, 1, S)
    if pattern.causal and pattern.prefix_lengths is not None:
        mask = _narrow(mask, prefix_lm_mask(pattern.prefix_lengths, length))  # (B, 1, T, T)
    elif pattern.causal:
        if mask is None and pattern.document_ids is None:
            return None, True  # SDPA's own causal path: the flash kernel on CUDA
        device = (pattern.document_ids if pattern.document_ids is not None else pattern.key_padding).device
        mask = _narrow(mask, causal_mask(length, device))  # (T, T)
    if pattern.document_ids is not None:
        mask = _narrow(mask, same_document_mask(pattern.document_ids))  # (B, 1, T, T)
    return mask, False


def self_attention_mask(causal: bool, length: int, attention_mask: torch.Tensor | None = None,
                        prefix_lengths: torch.Tensor | None = None,
                        document_ids: torch.Tensor | None = None) -> tuple[torch.Tensor | None, bool]:
    """(SDPA boolean mask or None, is_causal) for one self-attention stack; see
    `self_attention_pattern` and `dense_mask`."""
    return dense_mask(self_attention_pattern(causal, attention_mask, prefix_lengths, document_ids), length)


# ---------------------------------------------------------------- FlexAttention masks


def _causal_mod(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def _prefix_lm_mod(prefix_lengths: torch.Tensor):
    def mask_mod(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) | (kv_idx < prefix_lengths[b])
    return mask_mod


def _key_padding_mod(key_padding: torch.Tensor):
    key_padding = key_padding.bool()  # a mask_mod must return booleans; masks may come as 0/1

    def mask_mod(b, h, q_idx, kv_idx):
        return key_padding[b, kv_idx]
    return mask_mod


def _same_document_mod(document_ids: torch.Tensor):
    def mask_mod(b, h, q_idx, kv_idx):
        return document_ids[b, q_idx] == document_ids[b, kv_idx]
    return mask_mod


def pattern_mask_mod(pattern: AttentionPattern):
    """The FlexAttention mask_mod(b, h, q_idx, kv_idx) -> bool of `pattern`, or None when it
    masks nothing. Same mask as `dense_mask`."""
    parts = []
    if pattern.causal:
        parts.append(_causal_mod if pattern.prefix_lengths is None else _prefix_lm_mod(pattern.prefix_lengths))
    if pattern.key_padding is not None:
        parts.append(_key_padding_mod(pattern.key_padding))
    if pattern.document_ids is not None:
        parts.append(_same_document_mod(pattern.document_ids))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else and_masks(*parts)


def pattern_block_mask(pattern: AttentionPattern, query_length: int, key_length: int, device: torch.device):
    """The BlockMask of `pattern` for (T, S) = (query_length, key_length), shared by all
    heads (the mask never depends on the head) and, without per-row parts, by all rows;
    None when nothing is masked. Any lengths work: the last tile may be partial."""
    mask_mod = pattern_mask_mod(pattern)
    if mask_mod is None:
        return None
    return create_block_mask(mask_mod, pattern.batch_size, None, query_length, key_length, device=device)


# ---------------------------------------------------------------- kernels


@functools.cache
def _compiled_flex_attention():
    # FlexAttention is fast only compiled (eagerly it materialises the (B, H, T, S) scores).
    return torch.compile(flex_attention)


class SdpaKernel:
    """SDPA with `mask`: None, boolean or additive float broadcastable to (B, H, T, S)."""

    def __init__(self, mask: torch.Tensor | None, is_causal: bool):
        self.mask = mask
        self.is_causal = is_causal

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask, is_causal=self.is_causal,
                                              dropout_p=dropout_p)


class FlexKernel:
    """FlexAttention with a BlockMask (None: attend everything) and a score_mod (None: none).
    No attention dropout: the stack picks SDPA while dropout is active."""

    def __init__(self, block_mask, score_mod: ScoreMod | None):
        self.block_mask = block_mask
        self.score_mod = score_mod

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float) -> torch.Tensor:
        if dropout_p > 0:
            raise ValueError("FlexAttention has no attention dropout; the stack should have chosen SDPA")
        # Inside a compiled model dynamo traces flex_attention itself; eagerly on CUDA it needs
        # its own compiled wrapper; CPU runs the eager reference (forward only).
        run = flex_attention if torch.compiler.is_compiling() or not q.is_cuda else _compiled_flex_attention()
        return run(q, k, v, score_mod=self.score_mod, block_mask=self.block_mask)


# One stack forward's attention, shared by its layers: (q, k, v, dropout_p) -> (B, H, T, D).
AttentionKernel = SdpaKernel | FlexKernel


# FlexAttention's CUDA kernel (Triton's tl.dot) needs a head width of at least 16.
FLEX_MIN_HEAD_DIM = 16


def use_flex(backend: str, device: torch.device, head_dim: int, needs_mask_or_bias: bool,
             dropout_active: bool) -> bool:
    """Whether an attention with this pattern runs FlexAttention rather than SDPA."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
    if backend == "sdpa" or dropout_active:  # FlexAttention has no attention dropout
        return False
    if backend == "flex":
        if not flex_available():
            raise RuntimeError("attention_backend='flex' needs torch.nn.attention.flex_attention (torch >= 2.5)")
        return True
    return (flex_available() and device.type == "cuda" and head_dim >= FLEX_MIN_HEAD_DIM
            and needs_mask_or_bias)


def set_attention_backend(module: nn.Module, backend: str) -> None:
    """Set `attention_backend` on every stack inside `module` (a body, an objective, ...)."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
    for sub in module.modules():
        if hasattr(sub, "attention_backend"):
            sub.attention_backend = backend


# ---------------------------------------------------------------- the module


def _split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, H, T, D)


class Attention(nn.Module):
    """Self-attention (`context` None) or cross-attention over `context` (B, S, C)."""

    def __init__(self, cfg: ArchConfig, cross: bool):
        super().__init__()
        self.n_head = cfg.n_head
        self.cross = cross
        if cross:  # queries from the decoder, keys and values from the encoder's output
            self.q = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
            self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model, bias=cfg.bias)
        else:
            self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, kernel: AttentionKernel, rotary: Rotary | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C), attending as `kernel` (the stack's mask and biases) says."""
        B, T, C = x.shape
        if self.cross:
            q = self.q(x)
            k, v = self.kv(context).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (_split_heads(t, self.n_head) for t in (q, k, v))  # (B, H, T or S, D)
        if rotary is not None and not self.cross:  # cross-attention compares different sequences
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        y = kernel(q, k, v, self.dropout if self.training else 0.0)  # (B, H, T, D)
        return self.out(y.transpose(1, 2).reshape(B, T, C))
