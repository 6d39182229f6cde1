"""ELECTRA discriminators: our `objective=electra` runs <-> `ElectraForPreTraining`.

The discriminator is the body plus the objective's `discriminator_head` (Linear, exact
GELU, Linear to one logit per token), which is ELECTRA's `discriminator_predictions`
(dense, `hidden_act`, dense_prediction). ELECTRA's encoder is BERT's, post-LN, so a
`norm_position=post` body maps onto it weight for weight (`embedding_size` = our d_model,
so there is no `embeddings_project`). The generator and its MLM head are pretraining-only
and are not exported.

A pre-LN body (the default encoder) has no ELECTRA class: ELECTRA's layers are post-LN,
and no pre-LN class in transformers carries a Linear-GELU-Linear token head. Rather than
refuse the default `pretrainer train objective=electra` run, its encoder is exported as
`MegatronBertModel` (the exact pre-LN match, see `megatron_bert.py`) without the
discriminator head: the head only scores replaced tokens during pretraining, and
fine-tuning starts from the encoder alone (as in the ELECTRA paper, and as our
`finetune init=` does): `PRE_LN_ENCODER` is that exporter, and its `NOTE` (which `export_hf`
warns with) says the head was left out; `arch.norm_position=post` keeps it.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from pretrainer.config import ArchConfig
from pretrainer.interop import bert, megatron_bert
from pretrainer.interop.rules import arch_mismatches, linear, to_theirs
from pretrainer.tokenization import SpecialIds

MODEL = "ElectraForPreTraining"
HEAD_MODULE = "discriminator_head"  # the objective's module exported as ELECTRA's head
HEAD_RULES = [*linear("0", "discriminator_predictions.dense", bias=True),  # 1 is the GELU
              *linear("2", "discriminator_predictions.dense_prediction", bias=True)]

# ---- export ----------------------------------------------------------------------------------------------------


def export_problems(arch: ArchConfig, head_state: dict[str, torch.Tensor], objective: str) -> list[str]:
    return arch_mismatches(arch, bert.REQUIRED, MODEL)


def hf_config(arch: ArchConfig, vocab_size: int, special: SpecialIds) -> dict:
    return {"architectures": [MODEL], "model_type": "electra", "embedding_size": arch.d_model,
            **bert.shared_config(arch, vocab_size, special)}


def export_state(arch: ArchConfig, body: dict[str, torch.Tensor], head: dict[str, torch.Tensor]) -> dict:
    state = to_theirs(bert.body_rules(arch.n_layer, prefix="electra."), bert.with_token_types(arch, body))
    return state | to_theirs(HEAD_RULES, head)


# The exporter of a pre-LN ELECTRA run: its encoder alone, as MegatronBertModel.
PRE_LN_ENCODER = SimpleNamespace(
    export_problems=lambda arch, head_state, objective: arch_mismatches(arch, megatron_bert.REQUIRED,
                                                                        megatron_bert.BASE_MODEL),
    hf_config=lambda arch, vocab_size, special: megatron_bert.hf_config(arch, vocab_size, special,
                                                                        model=megatron_bert.BASE_MODEL),
    export_state=lambda arch, body, head: megatron_bert.export_base_state(arch, body),
    NOTE=("a pre-LN ELECTRA body has no ELECTRA class in transformers: exported its encoder as "
          f"{megatron_bert.BASE_MODEL} without the discriminator head (pretrain with "
          "arch.norm_position=post to export the whole discriminator as ElectraForPreTraining)"))


# ---- import ----------------------------------------------------------------------------------------------------


def hf_class(config) -> str:
    # Loading the discriminator (not its base model) lets `HFImport.dropped` name its head.
    return MODEL if MODEL in (config.architectures or ()) else "ElectraModel"


def import_problems(config) -> list[str]:
    problems = bert.import_problems(config)
    if config.embedding_size != config.hidden_size:  # published small ELECTRAs use 128 <-> 256
        problems.append(f"embedding_size={config.embedding_size} != hidden_size={config.hidden_size} "
                        "(needs equal: our body has no projection between embeddings and layers)")
    return problems


def import_state(config, state: dict[str, torch.Tensor], prefix: str) -> tuple[ArchConfig, dict, dict | None, set]:
    """HF state dict -> (arch, our post-LN body state, None: no LM head, HF keys used)."""
    return bert.import_encoder(config, state, bert.body_rules(config.num_hidden_layers, prefix), "post")
