"""The transformer bodies: encoder (BERT), decoder (GPT) and encoder-decoder (T5/BART).

Shapes: B batch, T (query) length, S (key) length, C = d_model, H heads, D = C // H.
Attention goes through `scaled_dot_product_attention`, which picks a fused kernel where
one exists. Attention masks are boolean, True where a query may attend a key.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pretrainer.config import ArchConfig
from pretrainer.models.positions import (
    RelativePositionBias,
    alibi_bias,
    alibi_slopes,
    apply_rotary,
    rotary_angles,
    sinusoidal_table,
)

Rotary = tuple[torch.Tensor, torch.Tensor]


def make_norm(cfg: ArchConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
    if cfg.norm == "none":
        return nn.Identity()
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)


def combine_masks(mask: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor | None:
    """A boolean mask (True = may attend) and an additive float bias -> one SDPA attn_mask."""
    if bias is None:
        return mask
    if mask is None:
        return bias
    return bias.masked_fill(~mask, float("-inf"))


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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, is_causal: bool,
                rotary: Rotary | None = None, context: torch.Tensor | None = None) -> torch.Tensor:
        """`mask`: None, boolean (True = may attend) or additive float, broadcastable to (B, H, T, S)."""
        B, T, C = x.shape
        if self.cross:
            q = self.q(x)
            k, v = self.kv(context).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (_split_heads(t, self.n_head) for t in (q, k, v))  # (B, H, T or S, D)
        if rotary is not None and not self.cross:  # cross-attention compares different sequences
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, T, D)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


ACTIVATIONS = {
    "gelu": F.gelu,
    "relu": F.relu,
    "swiglu": F.silu,  # gated: silu(gate(x)) * up(x) (Shazeer 2020; LLaMA)
    "geglu": lambda x: F.gelu(x, approximate="tanh"),  # gated, GELU's tanh form as in T5 v1.1
}


class FeedForward(nn.Module):
    """(B, T, C) -> (B, T, C): down(act(up(x))), or down(act(gate(x)) * up(x)) for the gated
    activations (`d_ff` is the width of each of gate and up)."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.act = ACTIVATIONS[cfg.activation]
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias) if cfg.activation.endswith("glu") else None
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            return self.down(self.act(self.gate(x)) * self.up(x))
        return self.down(self.act(self.up(x)))


class Block(nn.Module):
    """One layer: self-attention, optional cross-attention, feed-forward. `norm_position`
    puts LayerNorm before each sublayer (pre) or after the residual sum (post)."""

    def __init__(self, cfg: ArchConfig, cross_attention: bool):
        super().__init__()
        self.pre_norm = cfg.norm_position == "pre"
        self.attn_norm = make_norm(cfg)
        self.attn = Attention(cfg, cross=False)
        self.cross_norm = make_norm(cfg) if cross_attention else None
        self.cross = Attention(cfg, cross=True) if cross_attention else None
        self.ffn_norm = make_norm(cfg)
        self.ffn = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, is_causal: bool, rotary: Rotary | None,
                memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self._sublayer(x, self.attn_norm, lambda h: self.attn(h, mask, is_causal, rotary))
        if self.cross is not None:
            x = self._sublayer(x, self.cross_norm, lambda h: self.cross(h, memory_mask, False, context=memory))
        return self._sublayer(x, self.ffn_norm, self.ffn)

    def _sublayer(self, x: torch.Tensor, norm: nn.Module, fn) -> torch.Tensor:
        if self.pre_norm:
            return x + self.drop(fn(norm(x)))
        return norm(x + self.drop(fn(x)))


class TransformerStack(nn.Module):
    """Embedded tokens (B, T, C) -> hidden states (B, T, C): positions, blocks, final norm.

    `causal` matters only to position biases that differ by direction (T5's buckets);
    the attention mask itself comes from the caller.
    """

    def __init__(self, cfg: ArchConfig, n_layer: int, cross_attention: bool = False, causal: bool = False):
        super().__init__()
        self.cfg = cfg
        self.positions = cfg.positions
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model) if cfg.positions == "learned" else None
        if cfg.positions == "sinusoidal":
            self.register_buffer("sinusoids", sinusoidal_table(cfg.max_len, cfg.d_model), persistent=False)
        if cfg.positions == "rotary":  # (max_len, D/2) tables, extended on demand; not saved in checkpoints
            cos, sin = rotary_angles(cfg.max_len, cfg.d_model // cfg.n_head, torch.device("cpu"))
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
        if cfg.positions == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(cfg.n_head), persistent=False)
        self.relative_bias = (RelativePositionBias(cfg.n_head, not causal, cfg.relative_buckets,
                                                   cfg.relative_max_distance)
                              if cfg.positions == "t5_relative_bias" else None)
        # Post-LN (BERT) normalises the embeddings; pre-LN normalises the last block's output.
        self.emb_norm = make_norm(cfg) if cfg.norm_position == "post" else nn.Identity()
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, cross_attention) for _ in range(n_layer))
        self.final_norm = make_norm(cfg) if cfg.norm_position == "pre" else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, is_causal: bool,
                memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        T = x.shape[1]
        x, rotary, bias = self._positions(x)
        if bias is not None:  # an additive bias needs an explicit mask: SDPA's is_causal takes none
            if is_causal:
                mask, is_causal = causal_mask(T, x.device), False
            mask = combine_masks(mask, bias)
        x = self.drop(self.emb_norm(x))
        for block in self.blocks:
            x = block(x, mask, is_causal, rotary, memory, memory_mask)
        return self.final_norm(x)

    def _positions(self, x: torch.Tensor) -> tuple[torch.Tensor, Rotary | None, torch.Tensor | None]:
        """(input with absolute positions added, rotary tables, additive score bias (1, H, T, T))."""
        T = x.shape[1]
        if self.positions == "learned":
            if T > self.cfg.max_len:
                raise ValueError(f"input length {T} exceeds arch.max_len={self.cfg.max_len} (learned positions)")
            return x + self.pos_emb(torch.arange(T, device=x.device)), None, None
        if self.positions == "sinusoidal":
            table = self.sinusoids if T <= self.sinusoids.shape[0] else sinusoidal_table(T, x.shape[2], x.device)
            return x + table[:T].to(x.dtype), None, None
        if self.positions == "rotary":
            if T > self.rotary_cos.shape[0]:  # beyond the training length: extend the tables
                self.rotary_cos, self.rotary_sin = rotary_angles(T, self.rotary_cos.shape[1] * 2, x.device)
            return x, (self.rotary_cos[:T], self.rotary_sin[:T]), None
        if self.positions == "alibi":
            return x, None, alibi_bias(self.alibi_slopes, T).to(x.dtype)
        return x, None, self.relative_bias(T, T).to(x.dtype)


def key_padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, S) True at real tokens -> (B, 1, 1, S) for SDPA, or None when nothing is padded."""
    if attention_mask is None or bool(attention_mask.all()):
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


def self_attention_mask(causal: bool, length: int, attention_mask: torch.Tensor | None = None,
                        prefix_lengths: torch.Tensor | None = None,
                        document_ids: torch.Tensor | None = None) -> tuple[torch.Tensor | None, bool]:
    """(SDPA boolean mask or None, is_causal) for one self-attention stack: key padding
    (bidirectional), causal or prefix-LM (causal), each narrowed to a token's own document
    when `document_ids` (B, T) is given. Every token sees at least itself, so no row is empty."""
    if not causal:
        mask, is_causal = key_padding_mask(attention_mask), False
    elif prefix_lengths is not None:
        mask, is_causal = prefix_lm_mask(prefix_lengths, length), False
    else:
        mask, is_causal = None, True
    if document_ids is None:
        return mask, is_causal
    same = same_document_mask(document_ids)
    if is_causal:
        same = same & causal_mask(length, same.device)
    return (same if mask is None else mask & same), False


def init_weights(model: nn.Module, cfg: ArchConfig) -> None:
    """Normal(0, init_std) for linear and embedding weights, zero biases; with
    `scaled_residual_init`, GPT-2's scaling of residual-branch outputs by 1/sqrt(2 x layers),
    so the residual sum stays O(1) with depth."""
    n_layer = cfg.n_layer + (cfg.n_decoder_layer or cfg.n_layer if cfg.name == "encoder_decoder" else 0)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=cfg.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    if not cfg.scaled_residual_init:
        return
    for name, param in model.named_parameters():
        if name.endswith(("attn.out.weight", "cross.out.weight", "ffn.down.weight")):
            nn.init.normal_(param, std=cfg.init_std / math.sqrt(2 * n_layer))


class TransformerBody(nn.Module):
    """Encoder or decoder: token ids (B, T) -> hidden states (B, T, C).

    `arch.name=encoder` attends both ways (BERT); `arch.name=decoder` attends causally
    (GPT), or bidirectionally over a per-row prefix when `prefix_lengths` is given.
    """

    def __init__(self, cfg: ArchConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.causal = cfg.name == "decoder"
        self.tok_emb = nn.Embedding(vocab_size, cfg.d_model)
        # Segment (token-type) embeddings mark sentence A / B of a pair (BERT).
        self.seg_emb = nn.Embedding(2, cfg.d_model) if cfg.segment_embeddings else None
        self.stack = TransformerStack(cfg, cfg.n_layer, causal=self.causal)
        init_weights(self, cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                prefix_lengths: torch.Tensor | None = None,
                document_ids: torch.Tensor | None = None) -> torch.Tensor:
        """`attention_mask` (B, T): True/1 at real tokens. A decoder ignores it: with right
        padding, causal attention never lets a real token see a later pad.
        `prefix_lengths` (B,): decoder only, the prefix-LM attention pattern.
        `document_ids` (B, T): packed blocks; a token attends only within its own document."""
        x = self.tok_emb(input_ids)  # (B, T, C)
        if self.seg_emb is not None:
            x = x + self.seg_emb(torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids)
        mask, is_causal = self_attention_mask(self.causal, input_ids.shape[1], attention_mask, prefix_lengths,
                                              document_ids)
        return self.stack(x, mask, is_causal=is_causal)


class EncoderDecoder(nn.Module):
    """T5/BART-like: a bidirectional encoder, a causal decoder with cross-attention to the
    encoder's output, one token embedding shared by both (and by the LM head when tied).

    `forward` runs the encoder, so classification reads the encoder's states; `decode`
    runs the decoder over target-side ids (B, S) given the encoder's output (B, T, C).
    """

    causal = False

    def __init__(self, cfg: ArchConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(vocab_size, cfg.d_model)
        self.encoder = TransformerStack(cfg, cfg.n_layer)
        self.decoder = TransformerStack(cfg, cfg.n_decoder_layer or cfg.n_layer, cross_attention=True, causal=True)
        init_weights(self, cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.tok_emb(input_ids), key_padding_mask(attention_mask), is_causal=False)

    def decode(self, decoder_input_ids: torch.Tensor, memory: torch.Tensor,
               memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S) ids, (B, T, C) encoder states, (B, T) encoder mask -> (B, S, C)."""
        return self.decoder(self.tok_emb(decoder_input_ids), None, is_causal=True,
                            memory=memory, memory_mask=key_padding_mask(memory_mask))


def build_body(cfg: ArchConfig, vocab_size: int) -> TransformerBody | EncoderDecoder:
    return EncoderDecoder(cfg, vocab_size) if cfg.name == "encoder_decoder" else TransformerBody(cfg, vocab_size)
