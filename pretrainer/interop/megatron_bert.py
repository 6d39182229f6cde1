"""MegatronBERT (`MegatronBertForMaskedLM`, `MegatronBertModel`) <-> our pre-LN encoder.

MegatronBERT is BERT with our `norm_position=pre` block: x + attn(ln(x)), x + ffn(ln(x)),
no LayerNorm on the summed embeddings, one final LayerNorm after the last layer, positions
counted from 0, token-type embeddings, BERT's MLM head (`cls.predictions`). That makes it
the exact home of the default encoder. `RobertaPreLayerNorm*`, the other pre-LN encoder in
transformers, is not: it normalises the summed embeddings as well (a LayerNorm ours does
not have and cannot fold away) and offsets positions by padding_idx + 1.
A pre-LN ELECTRA discriminator's encoder is exported here as `MegatronBertModel` (see
`pretrainer.interop.electra`).
"""

from __future__ import annotations

import torch

from pretrainer.config import ArchConfig
from pretrainer.interop import bert
from pretrainer.interop.rules import Rule, arch_mismatches, linear, to_theirs
from pretrainer.tokenization import SpecialIds

MODEL = "MegatronBertForMaskedLM"
BASE_MODEL = "MegatronBertModel"
MODEL_TYPE = "megatron-bert"
REQUIRED = {"name": "encoder", "norm_position": "pre", "norm": "layernorm", "positions": "learned",
            "activation": "gelu", "bias": True}


def body_rules(n_layer: int, prefix: str = "") -> list[Rule]:
    """Our `TransformerBody` (with `seg_emb`) <-> `MegatronBertModel` keys, each HF key prefixed by
    `prefix`: pre-LN, a LayerNorm before each sublayer and one after the last layer."""

    def pre_norms(ours: str, theirs: str) -> list[Rule]:
        return [*linear(f"{ours}.attn_norm", f"{theirs}.attention.ln", bias=True),
                *linear(f"{ours}.ffn_norm", f"{theirs}.ln", bias=True)]

    return bert.encoder_rules(n_layer, pre_norms, linear("stack.final_norm", "encoder.ln", bias=True), prefix)


# ---- export ----------------------------------------------------------------------------------------------------


def export_problems(arch: ArchConfig, head_state: dict[str, torch.Tensor], objective: str) -> list[str]:
    return arch_mismatches(arch, REQUIRED, MODEL) + bert.mlm_head_problems(arch, head_state, objective, MODEL)


def hf_config(arch: ArchConfig, vocab_size: int, special: SpecialIds, model: str = MODEL) -> dict:
    return {"architectures": [model], "model_type": MODEL_TYPE, **bert.shared_config(arch, vocab_size, special)}


def export_state(arch: ArchConfig, body: dict[str, torch.Tensor], head: dict[str, torch.Tensor]) -> dict:
    state = to_theirs(body_rules(arch.n_layer, prefix="bert."), bert.with_token_types(arch, body))
    return state | bert.mlm_head_state(head)


def export_base_state(arch: ArchConfig, body: dict[str, torch.Tensor]) -> dict:
    """The encoder alone, as `MegatronBertModel` keys (no prefix: the base model is the whole model)."""
    return to_theirs(body_rules(arch.n_layer), bert.with_token_types(arch, body))


# ---- import ----------------------------------------------------------------------------------------------------


def hf_class(config) -> str:
    with_head = {MODEL, "MegatronBertForPreTraining"} & set(config.architectures or ())
    return MODEL if with_head else BASE_MODEL


def import_problems(config) -> list[str]:
    return bert.import_problems(config)  # the same options, and the same limits, as BERT's


def import_state(config, state: dict[str, torch.Tensor], prefix: str) -> tuple[ArchConfig, dict, dict | None, set]:
    """HF state dict -> (arch, our body state, our MLM head state or None, HF keys used)."""
    return bert.import_encoder(config, state, body_rules(config.num_hidden_layers, prefix), "pre")
