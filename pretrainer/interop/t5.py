"""T5 (`T5ForConditionalGeneration`, `T5Model`) <-> our encoder-decoder with T5's choices.

Ours with `norm=rmsnorm`, `norm_position=pre`, `positions=t5_relative_bias`, `bias=false`
is T5: one relative-bias table per stack (T5 keeps it in layer 0 of each stack and
shares it), cross-attention without position bias, a final RMSNorm per stack, one token
embedding shared by both stacks. Differences folded into the weights:
- T5 does not scale attention scores by 1/sqrt(D); ours does, so our q = T5's q * sqrt(D);
- tied T5 (v1.0) scales the decoder output by d_model**-0.5 before the LM head; ours does
  not, so that factor lives in our decoder's final norm weight (logits are identical; the
  decoder's hidden states themselves differ by that factor).
Feed-forward: relu / gelu are T5's `wi`, `wo`; the gated geglu / swiglu are T5 v1.1's
`gated-gelu` (tanh GELU, as ours) / `gated-silu`, with gate = `wi_0` and up = `wi_1`.
"""

from __future__ import annotations

import math

import torch

from pretrainer.config import ArchConfig
from pretrainer.interop.rules import (
    Rule,
    consumed,
    fused,
    linear,
    plain_head_problems,
    rule,
    to_ours,
    to_theirs,
)
from pretrainer.tokenization import SpecialIds

MODEL = "T5ForConditionalGeneration"
FEED_FORWARD = {"geglu": "gated-gelu", "swiglu": "gated-silu", "relu": "relu", "gelu": "gelu"}
DENSE_ACT = {"gated-gelu": "gelu_new", "gated-silu": "silu", "relu": "relu", "gelu": "gelu"}  # HF's activation
REQUIRED = {"name": "encoder_decoder", "norm_position": "pre", "norm": "rmsnorm", "positions": "t5_relative_bias",
            "activation": tuple(FEED_FORWARD), "bias": False}
HEAD_RULES = [rule("embedding.weight", "lm_head.weight")]


def _block_rules(ours: str, theirs: str, head_dim: int, gated: bool, cross: bool) -> list[Rule]:
    q_scale = (math.sqrt(head_dim), 1.0, 1.0)  # T5's unscaled scores: our q carries the sqrt(D)
    self_attn = f"{theirs}.layer.0.SelfAttention"
    rules = [*linear(f"{ours}.attn_norm", f"{theirs}.layer.0.layer_norm", bias=False),
             *fused(f"{ours}.attn.qkv", (f"{self_attn}.{n}" for n in "qkv"), bias=False, scales=q_scale),
             *linear(f"{ours}.attn.out", f"{self_attn}.o", bias=False)]
    if cross:
        cross_attn = f"{theirs}.layer.1.EncDecAttention"
        rules += [*linear(f"{ours}.cross_norm", f"{theirs}.layer.1.layer_norm", bias=False),
                  *fused(f"{ours}.cross.q", [f"{cross_attn}.q"], bias=False, scales=q_scale[:1]),
                  *fused(f"{ours}.cross.kv", (f"{cross_attn}.k", f"{cross_attn}.v"), bias=False),
                  *linear(f"{ours}.cross.out", f"{cross_attn}.o", bias=False)]
    ff = f"{theirs}.layer.{2 if cross else 1}"
    rules += [*linear(f"{ours}.ffn_norm", f"{ff}.layer_norm", bias=False),
              *linear(f"{ours}.ffn.down", f"{ff}.DenseReluDense.wo", bias=False)]
    if gated:
        return rules + [*linear(f"{ours}.ffn.gate", f"{ff}.DenseReluDense.wi_0", bias=False),
                        *linear(f"{ours}.ffn.up", f"{ff}.DenseReluDense.wi_1", bias=False)]
    return rules + linear(f"{ours}.ffn.up", f"{ff}.DenseReluDense.wi", bias=False)


def body_rules(arch: ArchConfig, scaled_output: bool) -> list[Rule]:
    """Our `EncoderDecoder` <-> T5 keys. `scaled_output`: T5 multiplies the decoder's output by
    d_model**-0.5 before the LM head (tied T5), folded into our decoder's final norm."""
    head_dim, gated = arch.d_model // arch.n_head, arch.activation.endswith("glu")
    rules = [rule("tok_emb.weight", "shared.weight")]
    stacks = (("encoder", arch.n_layer, False), ("decoder", arch.n_decoder_layer or arch.n_layer, True))
    for stack, n_layer, cross in stacks:
        rules.append(rule(f"{stack}.relative_bias.embedding.weight",
                          f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"))
        for i in range(n_layer):
            rules += _block_rules(f"{stack}.blocks.{i}", f"{stack}.block.{i}", head_dim, gated, cross)
    output_scale = (arch.d_model ** -0.5,) if scaled_output else None
    return rules + [rule("encoder.final_norm.weight", "encoder.final_layer_norm.weight"),
                    rule("decoder.final_norm.weight", "decoder.final_layer_norm.weight", scales=output_scale)]


# ---- export ----------------------------------------------------------------------------------------------------


def export_problems(arch: ArchConfig, head_state: dict[str, torch.Tensor], objective: str) -> list[str]:
    return plain_head_problems(arch, head_state, objective, REQUIRED, MODEL)


def hf_config(arch: ArchConfig, vocab_size: int, special: SpecialIds) -> dict:
    """`tie_word_embeddings` also tells T5 whether to scale the decoder output (true: v1.0)."""
    return {
        "architectures": [MODEL], "model_type": "t5", "vocab_size": vocab_size, "d_model": arch.d_model,
        "d_kv": arch.d_model // arch.n_head, "d_ff": arch.d_ff, "num_layers": arch.n_layer,
        "num_decoder_layers": arch.n_decoder_layer or arch.n_layer, "num_heads": arch.n_head,
        "relative_attention_num_buckets": arch.relative_buckets,
        "relative_attention_max_distance": arch.relative_max_distance, "dropout_rate": arch.dropout,
        "layer_norm_epsilon": arch.norm_eps, "initializer_factor": 1.0,
        "feed_forward_proj": FEED_FORWARD[arch.activation], "is_encoder_decoder": True,
        "tie_word_embeddings": arch.tie_embeddings, "pad_token_id": special.pad, "eos_token_id": special.sep,
        "decoder_start_token_id": special.cls,
    }


def export_state(arch: ArchConfig, body: dict[str, torch.Tensor], head: dict[str, torch.Tensor]) -> dict:
    state = to_theirs(body_rules(arch, scaled_output=arch.tie_embeddings), body) | to_theirs(HEAD_RULES, head)
    for stack in ("encoder", "decoder"):  # both stacks read the shared embedding
        state[f"{stack}.embed_tokens.weight"] = state["shared.weight"].clone()
    return state


# ---- import ----------------------------------------------------------------------------------------------------


def hf_class(config) -> str:
    return MODEL if MODEL in (config.architectures or ()) else "T5Model"


def import_problems(config) -> list[str]:
    problems = []
    proj = config.feed_forward_proj
    if proj not in DENSE_ACT or config.dense_act_fn != DENSE_ACT[proj]:
        problems.append(f"feed_forward_proj={proj} with dense_act_fn={config.dense_act_fn} "
                        f"(needs one of {', '.join(f'{p} ({a})' for p, a in DENSE_ACT.items())})")
    if config.d_kv * config.num_heads != config.d_model:
        problems.append(f"d_kv * num_heads = {config.d_kv * config.num_heads} != d_model={config.d_model} "
                        "(needs heads that split d_model exactly)")
    return problems


def scales_decoder_output(config) -> bool:
    """transformers >= 5 states it as `scale_decoder_outputs`; 4.x scales whenever embeddings are tied."""
    scaled = getattr(config, "scale_decoder_outputs", None)
    return bool(config.tie_word_embeddings if scaled is None else scaled)


def import_arch(config, tied: bool) -> ArchConfig:
    n_decoder_layer = config.num_decoder_layers if config.num_decoder_layers != config.num_layers else None
    return ArchConfig(
        name="encoder_decoder", n_layer=config.num_layers, n_decoder_layer=n_decoder_layer,
        d_model=config.d_model, n_head=config.num_heads, d_ff=config.d_ff, dropout=config.dropout_rate,
        max_len=getattr(config, "n_positions", None) or 512, norm_position="pre", norm="rmsnorm",
        norm_eps=config.layer_norm_epsilon, positions="t5_relative_bias",
        relative_buckets=config.relative_attention_num_buckets,
        relative_max_distance=getattr(config, "relative_attention_max_distance", 128),
        activation={v: k for k, v in FEED_FORWARD.items()}[config.feed_forward_proj], bias=False,
        scaled_residual_init=False, tie_embeddings=tied, segment_embeddings=False)


def import_state(config, state: dict[str, torch.Tensor], prefix: str) -> tuple[ArchConfig, dict, dict | None, set]:
    """HF state dict -> (arch, our body state, our LM head state or None, HF keys used)."""
    has_head = "lm_head.weight" in state
    tied = torch.equal(state["lm_head.weight"], state["shared.weight"]) if has_head else config.tie_word_embeddings
    arch = import_arch(config, bool(tied))
    rules = body_rules(arch, scaled_output=has_head and scales_decoder_output(config))
    body, used = to_ours(rules, state), consumed(rules)
    for stack in ("encoder", "decoder"):
        key = f"{stack}.embed_tokens.weight"
        if key in state and not torch.equal(state[key], state["shared.weight"]):
            raise ValueError(f"{key} differs from shared.weight: our stacks share one token embedding")
        used.add(key)
    head = to_ours(HEAD_RULES, state) if has_head else None
    return arch, body, head, used | (consumed(HEAD_RULES) if has_head else set())
