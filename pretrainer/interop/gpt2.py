"""GPT-2 (`GPT2LMHeadModel`, `GPT2Model`) <-> our pre-LN decoder and its LM head.

GPT-2's block is ours with `norm_position=pre`: x + attn(ln_1(x)), x + mlp(ln_2(x)), a
final `ln_f`, learned positions, biases everywhere. Its `Conv1D` layers store weights
as (in, out), the transpose of `nn.Linear`; `c_attn` is our fused `qkv` (q, k, v in the
same order). Exports set `activation_function="gelu"` (exact GELU, ours); original GPT-2
checkpoints use `gelu_new` (tanh form), which our non-gated GELU does not offer.
"""

from __future__ import annotations

import torch
from tokenizers import processors

from pretrainer.config import ArchConfig
from pretrainer.interop.rules import (
    Rule,
    consumed,
    linear,
    plain_head_problems,
    prefixed,
    rule,
    to_ours,
    to_theirs,
)
from pretrainer.tokenization import CLS, SEP, SpecialIds
from pretrainer.tokenization.special import template

MODEL = "GPT2LMHeadModel"
REQUIRED = {"name": "decoder", "norm_position": "pre", "norm": "layernorm", "positions": "learned",
            "activation": "gelu", "bias": True, "segment_embeddings": False}
HEAD_RULES = [rule("embedding.weight", "lm_head.weight")]


def body_rules(n_layer: int, prefix: str = "") -> list[Rule]:
    """Our `TransformerBody` <-> `GPT2Model` keys, each HF key prefixed by `prefix`."""
    rules = [rule("tok_emb.weight", "wte.weight"), rule("stack.pos_emb.weight", "wpe.weight"),
             *linear("stack.final_norm", "ln_f", bias=True)]
    for i in range(n_layer):
        ours, theirs = f"stack.blocks.{i}", f"h.{i}"
        rules += [*linear(f"{ours}.attn_norm", f"{theirs}.ln_1", bias=True),
                  *linear(f"{ours}.attn.qkv", f"{theirs}.attn.c_attn", bias=True, transpose=True),
                  *linear(f"{ours}.attn.out", f"{theirs}.attn.c_proj", bias=True, transpose=True),
                  *linear(f"{ours}.ffn_norm", f"{theirs}.ln_2", bias=True),
                  *linear(f"{ours}.ffn.up", f"{theirs}.mlp.c_fc", bias=True, transpose=True),
                  *linear(f"{ours}.ffn.down", f"{theirs}.mlp.c_proj", bias=True, transpose=True)]
    return prefixed(rules, prefix)


# ---- export ----------------------------------------------------------------------------------------------------


def export_problems(arch: ArchConfig, head_state: dict[str, torch.Tensor], objective: str) -> list[str]:
    return plain_head_problems(arch, head_state, objective, REQUIRED, MODEL)


def hf_config(arch: ArchConfig, vocab_size: int, special: SpecialIds) -> dict:
    return {
        "architectures": [MODEL], "model_type": "gpt2", "vocab_size": vocab_size, "n_positions": arch.max_len,
        "n_embd": arch.d_model, "n_layer": arch.n_layer, "n_head": arch.n_head, "n_inner": arch.d_ff,
        "activation_function": "gelu", "layer_norm_epsilon": arch.norm_eps, "initializer_range": arch.init_std,
        "resid_pdrop": arch.dropout, "embd_pdrop": arch.dropout, "attn_pdrop": arch.dropout,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "bos_token_id": special.cls, "eos_token_id": special.sep, "pad_token_id": special.pad,
        "tie_word_embeddings": arch.tie_embeddings,
    }


def export_state(arch: ArchConfig, body: dict[str, torch.Tensor], head: dict[str, torch.Tensor]) -> dict:
    return to_theirs(body_rules(arch.n_layer, prefix="transformer."), body) | to_theirs(HEAD_RULES, head)


def prompt_template() -> processors.TemplateProcessing:
    """The exported tokenizer's post-processor: `[CLS] A` and `[CLS] A [SEP] B`.

    Pretraining puts `[CLS]` at position 0 of every row (`pretrainer.data.blocks`) and `[SEP]`
    after every document, so `[CLS]` is the start the model knows (our zero-shot scoring
    starts text with it too), and a trailing `[SEP]` would tell it the text has ended: the
    classification template `[CLS] A [SEP]` made `generate()` begin a new document. Between
    two texts `[SEP]` stays the document boundary it was in pretraining.
    """
    return template(single=f"{CLS} $A", pair=f"{CLS} $A {SEP} $B:1")


# ---- import ----------------------------------------------------------------------------------------------------


def hf_class(config) -> str:
    with_head = {"GPT2LMHeadModel", "GPT2DoubleHeadsModel"} & set(config.architectures or ())
    return MODEL if with_head else "GPT2Model"


def import_problems(config) -> list[str]:
    problems = []
    if config.activation_function != "gelu":
        problems.append(f"activation_function={config.activation_function} (needs gelu, the exact GELU of "
                        "arch.activation=gelu; our only tanh-form GELU is the gated geglu)")
    if not config.scale_attn_weights:
        problems.append("scale_attn_weights=false (needs true: scores scaled by 1/sqrt(head size))")
    if config.scale_attn_by_inverse_layer_idx:
        problems.append("scale_attn_by_inverse_layer_idx=true (needs false)")
    if config.add_cross_attention:
        problems.append("add_cross_attention=true (needs a decoder without cross-attention)")
    return problems


def import_arch(config, tied: bool) -> ArchConfig:
    return ArchConfig(
        name="decoder", n_layer=config.n_layer, d_model=config.n_embd, n_head=config.n_head,
        d_ff=config.n_inner or 4 * config.n_embd, dropout=config.resid_pdrop, max_len=config.n_positions,
        norm_position="pre", norm="layernorm", norm_eps=config.layer_norm_epsilon, positions="learned",
        activation="gelu", bias=True, init_std=config.initializer_range, scaled_residual_init=True,
        tie_embeddings=tied, segment_embeddings=False)


def import_state(config, state: dict[str, torch.Tensor], prefix: str) -> tuple[ArchConfig, dict, dict | None, set]:
    """HF state dict -> (arch, our body state, our LM head state or None, HF keys used)."""
    rules = body_rules(config.n_layer, prefix)
    body = to_ours(rules, state)
    used = consumed(rules)
    head, tied = None, bool(config.tie_word_embeddings)
    if "lm_head.weight" in state:
        head = to_ours(HEAD_RULES, state)
        used |= consumed(HEAD_RULES)
        tied = torch.equal(head["embedding.weight"], body["tok_emb.weight"])
    return import_arch(config, tied), body, head, used
