"""The transformer bodies: encoder (BERT), decoder (GPT) and encoder-decoder (T5/BART).

Shapes: B batch, T (query) length, S (key) length, C = d_model, H heads, D = C // H.
Each stack forward turns its attention pattern and position biases into one attention
kernel (SDPA or FlexAttention, see `pretrainer.models.attention`) shared by its layers.
Attention masks are boolean, True where a query may attend a key.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pretrainer.config import ArchConfig
from pretrainer.models.attention import (
    Attention,
    AttentionKernel,
    AttentionPattern,
    FlexKernel,
    Rotary,
    ScoreMod,
    SdpaKernel,
    cross_attention_pattern,
    dense_mask,
    pattern_block_mask,
    self_attention_pattern,
    use_flex,
)

# The mask helpers moved to attention.py; `name as name` re-exports them for callers that import them from here.
from pretrainer.models.attention import causal_mask as causal_mask
from pretrainer.models.attention import combine_masks as combine_masks
from pretrainer.models.attention import key_padding_mask as key_padding_mask
from pretrainer.models.attention import prefix_lm_mask as prefix_lm_mask
from pretrainer.models.attention import same_document_mask as same_document_mask
from pretrainer.models.attention import self_attention_mask as self_attention_mask
from pretrainer.models.positions import (
    ALIBI,
    RelativePositionBias,
    alibi_bias,
    alibi_directions,
    alibi_score_mod,
    alibi_slopes,
    rotary_angles,
    sinusoidal_table,
)


def make_norm(cfg: ArchConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
    if cfg.norm == "none":
        return nn.Identity()
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)


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

    def forward(self, x: torch.Tensor, kernel: AttentionKernel, rotary: Rotary | None,
                memory: torch.Tensor | None = None, cross_kernel: AttentionKernel | None = None) -> torch.Tensor:
        x = self._sublayer(x, self.attn_norm, lambda h: self.attn(h, kernel, rotary))
        if self.cross is not None:
            x = self._sublayer(x, self.cross_norm, lambda h: self.cross(h, cross_kernel, context=memory))
        return self._sublayer(x, self.ffn_norm, self.ffn)

    def _sublayer(self, x: torch.Tensor, norm: nn.Module, fn) -> torch.Tensor:
        if self.pre_norm:
            return x + self.drop(fn(norm(x)))
        return norm(x + self.drop(fn(x)))


class TransformerStack(nn.Module):
    """Embedded tokens (B, T, C) -> hidden states (B, T, C): positions, blocks, final norm.

    `causal` matters only to position biases that differ by direction (T5's buckets; directional
    ALiBi, plain in a causal stack);
    the attention pattern itself comes from the caller. `attention_backend` ("auto", "sdpa",
    "flex"; see `pretrainer.models.attention`) picks the kernel.
    """

    def __init__(self, cfg: ArchConfig, n_layer: int, cross_attention: bool = False, causal: bool = False,
                 attention_backend: str = "auto"):
        super().__init__()
        self.cfg = cfg
        self.attention_backend = attention_backend
        self.positions = cfg.positions
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model) if cfg.positions == "learned" else None
        if cfg.positions == "sinusoidal":
            self.register_buffer("sinusoids", sinusoidal_table(cfg.max_len, cfg.d_model), persistent=False)
        if cfg.positions == "rotary":  # (max_len, D/2) tables, extended on demand; not saved in checkpoints
            cos, sin = rotary_angles(cfg.max_len, cfg.d_model // cfg.n_head, torch.device("cpu"))
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
        if cfg.positions in ALIBI:
            self.register_buffer("alibi_slopes", alibi_slopes(cfg.n_head), persistent=False)
        # (H,) bool, or None: symmetric (alibi), or causal, where the mask already hides the right
        directional = cfg.positions == "alibi_directional" and not causal
        self.register_buffer("alibi_looks_right", alibi_directions(cfg.n_head) if directional else None,
                             persistent=False)
        # A causal stack's buckets are one-directional, unless some of its queries see to their right.
        self.relative_bias = (RelativePositionBias(cfg.n_head, not causal or cfg.relative_bidirectional,
                                                   cfg.relative_buckets,
                                                   cfg.relative_max_distance)
                              if cfg.positions == "t5_relative_bias" else None)
        # Post-LN (BERT) normalises the embeddings; pre-LN normalises the last block's output.
        self.emb_norm = make_norm(cfg) if cfg.norm_position == "post" else nn.Identity()
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, cross_attention) for _ in range(n_layer))
        self.final_norm = make_norm(cfg) if cfg.norm_position == "pre" else nn.Identity()

    def forward(self, x: torch.Tensor, mask: AttentionPattern | torch.Tensor | None, is_causal: bool = False,
                memory: torch.Tensor | None = None,
                memory_mask: AttentionPattern | torch.Tensor | None = None) -> torch.Tensor:
        """`mask`: the self-attention pattern; or, as SDPA takes them, a mask tensor or None
        with `is_causal` (a tensor always runs SDPA: only a pattern can become a BlockMask).
        `memory_mask`: the cross-attention pattern over `memory` (B, S, C) (key padding),
        an SDPA mask tensor, or None."""
        if isinstance(mask, AttentionPattern) and is_causal:
            raise ValueError("with an AttentionPattern, causality is the pattern's: pass is_causal=False")
        if mask is None:
            mask = AttentionPattern(causal=is_causal)
        x, rotary = self._absolute_positions(x)
        kernel = self._self_attention_kernel(mask, x)
        cross_kernel = None if memory is None else self._cross_attention_kernel(memory_mask, x, memory)
        x = self.drop(self.emb_norm(x))
        for block in self.blocks:
            x = block(x, kernel, rotary, memory, cross_kernel)
        return self.final_norm(x)

    def _use_flex(self, x: torch.Tensor, needs_mask_or_bias: bool) -> bool:
        dropout_active = self.training and self.cfg.dropout > 0
        return use_flex(self.attention_backend, x.device, self.cfg.d_model // self.cfg.n_head, needs_mask_or_bias,
                        dropout_active)

    def _self_attention_kernel(self, mask: AttentionPattern | torch.Tensor, x: torch.Tensor) -> AttentionKernel:
        """Built once per forward, shared by every layer: the pattern as a BlockMask and the
        position bias as a score_mod (FlexAttention), or both as one dense mask (SDPA)."""
        T = x.shape[1]
        has_bias = self.positions in (*ALIBI, "t5_relative_bias")
        if isinstance(mask, AttentionPattern) and self._use_flex(x, mask.needs_mask or has_bias):
            return FlexKernel(pattern_block_mask(mask, T, T, x.device), self._score_mod(T, x.dtype))
        mask, is_causal = dense_mask(mask, T) if isinstance(mask, AttentionPattern) else (mask, False)
        bias = self._dense_bias(T, x.dtype)
        if bias is not None:  # an additive bias needs an explicit mask: SDPA's is_causal takes none
            if is_causal:
                mask, is_causal = causal_mask(T, x.device), False
            mask = combine_masks(mask, bias)
        return SdpaKernel(mask, is_causal)

    def _cross_attention_kernel(self, memory_mask: AttentionPattern | torch.Tensor | None, x: torch.Tensor,
                                memory: torch.Tensor) -> AttentionKernel:
        if not isinstance(memory_mask, AttentionPattern):
            return SdpaKernel(memory_mask, False)
        if self._use_flex(x, memory_mask.needs_mask):
            return FlexKernel(pattern_block_mask(memory_mask, x.shape[1], memory.shape[1], x.device), None)
        return SdpaKernel(dense_mask(memory_mask, x.shape[1])[0], False)

    def _absolute_positions(self, x: torch.Tensor) -> tuple[torch.Tensor, Rotary | None]:
        """(input with absolute positions added, rotary tables); the relative kinds add nothing here."""
        T = x.shape[1]
        if self.positions == "learned":
            if T > self.cfg.max_len:
                raise ValueError(f"input length {T} exceeds arch.max_len={self.cfg.max_len} (learned positions)")
            return x + self.pos_emb(torch.arange(T, device=x.device)), None
        if self.positions == "sinusoidal":
            table = self.sinusoids if T <= self.sinusoids.shape[0] else sinusoidal_table(T, x.shape[2], x.device)
            return x + table[:T].to(x.dtype), None
        if self.positions == "rotary":
            if T > self.rotary_cos.shape[0]:  # beyond the training length: extend the tables
                self.rotary_cos, self.rotary_sin = rotary_angles(T, self.rotary_cos.shape[1] * 2, x.device)
            return x, (self.rotary_cos[:T], self.rotary_sin[:T])
        return x, None

    def _dense_bias(self, T: int, dtype: torch.dtype) -> torch.Tensor | None:
        """The additive score bias (1, H, T, T) of ALiBi or T5's relative positions, else None."""
        if self.positions in ALIBI:
            return alibi_bias(self.alibi_slopes, T, self.alibi_looks_right).to(dtype)
        if self.positions == "t5_relative_bias":
            return self.relative_bias(T, T).to(dtype)
        return None

    def _score_mod(self, T: int, dtype: torch.dtype) -> ScoreMod | None:
        """The same bias as `_dense_bias`, as a FlexAttention score_mod."""
        if self.positions in ALIBI:
            return alibi_score_mod(self.alibi_slopes, self.alibi_looks_right)
        if self.positions == "t5_relative_bias":
            return self.relative_bias.score_mod(T, T, dtype)
        return None


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

    def __init__(self, cfg: ArchConfig, vocab_size: int, attention_backend: str = "auto"):
        super().__init__()
        self.cfg = cfg
        self.causal = cfg.name == "decoder"
        self.tok_emb = nn.Embedding(vocab_size, cfg.d_model)
        # Segment (token-type) embeddings mark sentence A / B of a pair (BERT).
        self.seg_emb = nn.Embedding(2, cfg.d_model) if cfg.segment_embeddings else None
        self.stack = TransformerStack(cfg, cfg.n_layer, causal=self.causal, attention_backend=attention_backend)
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
        return self.stack(x, self_attention_pattern(self.causal, attention_mask, prefix_lengths, document_ids))


class EncoderDecoder(nn.Module):
    """T5/BART-like: a bidirectional encoder, a causal decoder with cross-attention to the
    encoder's output, one token embedding shared by both (and by the LM head when tied).

    `forward` runs the encoder, so classification reads the encoder's states; `decode`
    runs the decoder over target-side ids (B, S) given the encoder's output (B, T, C).
    """

    causal = False

    def __init__(self, cfg: ArchConfig, vocab_size: int, attention_backend: str = "auto"):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(vocab_size, cfg.d_model)
        self.encoder = TransformerStack(cfg, cfg.n_layer, attention_backend=attention_backend)
        self.decoder = TransformerStack(cfg, cfg.n_decoder_layer or cfg.n_layer, cross_attention=True, causal=True,
                                        attention_backend=attention_backend)
        init_weights(self, cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.tok_emb(input_ids), self_attention_pattern(False, attention_mask))

    def decode(self, decoder_input_ids: torch.Tensor, memory: torch.Tensor,
               memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S) ids, (B, T, C) encoder states, (B, T) encoder mask -> (B, S, C)."""
        return self.decoder(self.tok_emb(decoder_input_ids), AttentionPattern(causal=True),
                            memory=memory, memory_mask=cross_attention_pattern(memory_mask))


def build_body(cfg: ArchConfig, vocab_size: int, attention_backend: str = "auto") -> TransformerBody | EncoderDecoder:
    family = EncoderDecoder if cfg.name == "encoder_decoder" else TransformerBody
    return family(cfg, vocab_size, attention_backend)
