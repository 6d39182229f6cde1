"""BERT (`BertForMaskedLM`, `BertModel`) <-> our post-LN encoder and its MLM head.

BERT's layer is ours with `norm_position=post`: LayerNorm(x + sublayer(x)) after each of
attention and feed-forward, a LayerNorm over the summed embeddings, exact GELU, biases
everywhere. Our fused `qkv` projection is BERT's query, key and value stacked. Our MLM
head (dense + GELU + LayerNorm, output matrix, output bias) is `cls.predictions`.
Exported checkpoints have no pooler (ours has none; `BertForMaskedLM` needs none): a
`BertModel` loaded from one initialises its pooler at random.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pretrainer.config import ArchConfig
from pretrainer.interop.rules import (
    Rule,
    arch_mismatches,
    consumed,
    fused,
    linear,
    prefixed,
    rule,
    to_ours,
    to_theirs,
)
from pretrainer.tokenization import SpecialIds

MODEL = "BertForMaskedLM"
REQUIRED = {"name": "encoder", "norm_position": "post", "norm": "layernorm", "positions": "learned",
            "activation": "gelu", "bias": True}
MLM_OBJECTIVES = "mlm, wwm, span_mlm, mlm_nsp or mlm_sop"
HEAD_RULES = [
    *linear("transform.0", "cls.predictions.transform.dense", bias=True),
    *linear("transform.2", "cls.predictions.transform.LayerNorm", bias=True),
    rule("embedding.weight", "cls.predictions.decoder.weight"),
    rule("bias", "cls.predictions.decoder.bias"),  # the bias BERT's forward adds (tied to cls.predictions.bias)
]


def body_rules(n_layer: int, prefix: str = "") -> list[Rule]:
    """Our `TransformerBody` (with `seg_emb`) <-> `BertModel` keys, each HF key prefixed by `prefix`:
    post-LN, a LayerNorm after each sublayer and one over the summed embeddings."""

    def post_norms(ours: str, theirs: str) -> list[Rule]:
        return [*linear(f"{ours}.attn_norm", f"{theirs}.attention.output.LayerNorm", bias=True),
                *linear(f"{ours}.ffn_norm", f"{theirs}.output.LayerNorm", bias=True)]

    return encoder_rules(n_layer, post_norms, linear("stack.emb_norm", "embeddings.LayerNorm", bias=True), prefix)


def encoder_rules(n_layer: int, layer_norms: Callable[[str, str], list[Rule]], outer_norm: list[Rule],
                  prefix: str) -> list[Rule]:
    """What every BERT-shaped encoder (BERT, MegatronBERT, ELECTRA) names alike: the embeddings
    and each layer's projections. Where the LayerNorms sit is the one difference:
    `layer_norms(our block, their layer)` gives a layer's, `outer_norm` the one outside the layers."""
    rules = [rule("tok_emb.weight", "embeddings.word_embeddings.weight"),
             rule("seg_emb.weight", "embeddings.token_type_embeddings.weight"),
             rule("stack.pos_emb.weight", "embeddings.position_embeddings.weight"), *outer_norm]
    for i in range(n_layer):
        ours, theirs = f"stack.blocks.{i}", f"encoder.layer.{i}"
        qkv = (f"{theirs}.attention.self.{name}" for name in ("query", "key", "value"))
        rules += [*fused(f"{ours}.attn.qkv", qkv, bias=True),
                  *linear(f"{ours}.attn.out", f"{theirs}.attention.output.dense", bias=True),
                  *linear(f"{ours}.ffn.up", f"{theirs}.intermediate.dense", bias=True),
                  *linear(f"{ours}.ffn.down", f"{theirs}.output.dense", bias=True),
                  *layer_norms(ours, theirs)]
    return prefixed(rules, prefix)


# ---- export ----------------------------------------------------------------------------------------------------


def export_problems(arch: ArchConfig, head_state: dict[str, torch.Tensor], objective: str) -> list[str]:
    return arch_mismatches(arch, REQUIRED, MODEL) + mlm_head_problems(arch, head_state, objective, MODEL)


def mlm_head_problems(arch: ArchConfig, head_state: dict[str, torch.Tensor], objective: str, model: str) -> list[str]:
    """The objective's head must be BERT's MLM head on the body's own width (also MegatronBERT's)."""
    transform = head_state.get("transform.0.weight")  # (C, C_in): C_in is a narrower ELECTRA generator's width
    if transform is None or "bias" not in head_state or transform.shape[1] != arch.d_model:
        return [f"objective.name={objective} ({model} needs the body's own MLM head: {MLM_OBJECTIVES})"]
    return []


def hf_config(arch: ArchConfig, vocab_size: int, special: SpecialIds) -> dict:
    return {"architectures": [MODEL], "model_type": "bert", "position_embedding_type": "absolute",
            **shared_config(arch, vocab_size, special)}


def shared_config(arch: ArchConfig, vocab_size: int, special: SpecialIds) -> dict:
    """The config fields BERT, MegatronBERT and ELECTRA name alike."""
    return {
        "vocab_size": vocab_size, "hidden_size": arch.d_model, "num_hidden_layers": arch.n_layer,
        "num_attention_heads": arch.n_head, "intermediate_size": arch.d_ff, "hidden_act": "gelu",
        "max_position_embeddings": arch.max_len, "type_vocab_size": 2, "layer_norm_eps": arch.norm_eps,
        "initializer_range": arch.init_std, "hidden_dropout_prob": arch.dropout,
        "attention_probs_dropout_prob": arch.dropout, "pad_token_id": special.pad,
        "tie_word_embeddings": arch.tie_embeddings,
    }


def export_state(arch: ArchConfig, body: dict[str, torch.Tensor], head: dict[str, torch.Tensor]) -> dict:
    state = to_theirs(body_rules(arch.n_layer, prefix="bert."), with_token_types(arch, body))
    return state | mlm_head_state(head)


def with_token_types(arch: ArchConfig, body: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BERT-style embeddings always add a token-type row: without our segments, zero rows add nothing."""
    if "seg_emb.weight" in body:
        return body
    return body | {"seg_emb.weight": torch.zeros(2, arch.d_model, dtype=body["tok_emb.weight"].dtype)}


def mlm_head_state(head: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = to_theirs(HEAD_RULES, head)
    state["cls.predictions.bias"] = state["cls.predictions.decoder.bias"].clone()
    return state


# ---- import ----------------------------------------------------------------------------------------------------


def hf_class(config) -> str:
    with_head = {"BertForMaskedLM", "BertForPreTraining"} & set(config.architectures or ())
    return MODEL if with_head else "BertModel"


def import_problems(config) -> list[str]:
    problems = []
    if config.hidden_act != "gelu":
        problems.append(f"hidden_act={config.hidden_act} (needs gelu, the exact GELU of arch.activation=gelu)")
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        problems.append(f"position_embedding_type={config.position_embedding_type} (needs absolute)")
    if config.is_decoder or getattr(config, "add_cross_attention", False):
        problems.append("is_decoder / add_cross_attention (needs a bidirectional encoder)")
    if config.type_vocab_size > 2:
        problems.append(f"type_vocab_size={config.type_vocab_size} (needs at most 2)")
    return problems


def import_arch(config, tied: bool, segments: bool, norm_position: str = "post") -> ArchConfig:
    return ArchConfig(
        name="encoder", n_layer=config.num_hidden_layers, d_model=config.hidden_size,
        n_head=config.num_attention_heads, d_ff=config.intermediate_size, dropout=config.hidden_dropout_prob,
        max_len=config.max_position_embeddings, norm_position=norm_position, norm="layernorm",
        norm_eps=config.layer_norm_eps, positions="learned", activation="gelu", bias=True,
        init_std=config.initializer_range, scaled_residual_init=False, tie_embeddings=tied,
        segment_embeddings=segments)


def import_state(config, state: dict[str, torch.Tensor], prefix: str) -> tuple[ArchConfig, dict, dict | None, set]:
    """HF state dict -> (arch, our body state, our MLM head state or None, HF keys used)."""
    return import_encoder(config, state, body_rules(config.num_hidden_layers, prefix), "post")


def import_encoder(config, state: dict[str, torch.Tensor], rules: list[Rule],
                   norm_position: str) -> tuple[ArchConfig, dict, dict | None, set]:
    """`import_state` for any BERT-shaped encoder whose body keys `rules` lists (BERT, MegatronBERT, ELECTRA)."""
    body = to_ours(rules, state)
    used = consumed(rules)
    segments = fold_token_types(body)
    head, tied = None, bool(config.tie_word_embeddings)
    if "cls.predictions.decoder.weight" in state:  # a masked LM, not a base model
        head = to_ours(HEAD_RULES, state)
        used |= consumed(HEAD_RULES) | {"cls.predictions.bias"}
        tied = torch.equal(head["embedding.weight"], body["tok_emb.weight"])
    return import_arch(config, tied, segments, norm_position), body, head, used


def fold_token_types(body: dict[str, torch.Tensor]) -> bool:
    """Whether our body needs `seg_emb`. All-zero token types are dropped; a single type is
    folded into the position embeddings (BERT adds it at every position); two stay."""
    types = body.pop("seg_emb.weight")  # (type_vocab_size, C)
    if not types.any():
        return False
    if types.shape[0] == 1:
        body["stack.pos_emb.weight"] = body["stack.pos_emb.weight"] + types[0]
        return False
    body["seg_emb.weight"] = types
    return True
