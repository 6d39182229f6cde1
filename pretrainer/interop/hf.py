"""Export a run to a Hugging Face `transformers` directory, and import one into our models.

The standard variants map one to one, weight for weight:
    arch=encoder, post-LN, LayerNorm, learned positions, GELU, biases, MLM head -> BertForMaskedLM
    arch=encoder, pre-LN, LayerNorm, learned positions, GELU, biases, MLM head  -> MegatronBertForMaskedLM
    the same encoders trained with objective=electra, post-LN                   -> ElectraForPreTraining
                                                      pre-LN (encoder only)     -> MegatronBertModel
    arch=decoder, pre-LN, LayerNorm, learned positions, GELU, biases           -> GPT2LMHeadModel
    arch=encoder_decoder, pre-LN, RMSNorm, T5 relative bias, no biases         -> T5ForConditionalGeneration
Anything else is refused with the fields that differ. The per-family weight tables live
in `bert.py`, `megatron_bert.py`, `electra.py`, `gpt2.py` and `t5.py`; the equality of
logits is checked in tests/test_interop*.py. A decoder's tokenizer is exported for
prompting: `[CLS]` (the start of every pretraining row) before the text, nothing after it.
`transformers` stays optional (`pip install pretrainer[hf]`): it is imported when called.
"""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from dataclasses import fields
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, NamedTuple

import torch
from tokenizers import Tokenizer
from torch import nn

from pretrainer.config import ArchConfig
from pretrainer.interop import bert, electra, gpt2, megatron_bert, t5
from pretrainer.models import LMHead, build_body
from pretrainer.tokenization import SpecialIds, read_tokenizer
from pretrainer.tokenization.special import CLS, MASK, PAD, SEP, UNK
from pretrainer.training.checkpoint import body_state_dict, model_state, resolve_checkpoint

EXPORTERS = {"encoder": bert, "decoder": gpt2, "encoder_decoder": t5}  # by arch.name (see `exporter`)
IMPORTERS = {"bert": bert, "megatron-bert": megatron_bert, "electra": electra, "gpt2": gpt2,
             "t5": t5}  # by the HF config's model_type


class HFImport(NamedTuple):
    arch: ArchConfig
    body: nn.Module  # TransformerBody or EncoderDecoder, in eval mode
    head_state: dict[str, torch.Tensor] | None  # an `LMHead` state dict; None: the checkpoint has no LM head
    dropped: tuple[str, ...]  # HF weights without a counterpart in ours (e.g. BERT's pooler)


def _transformers():
    try:
        import transformers
    except ImportError as error:  # an optional dependency
        raise ImportError("Hugging Face interop needs transformers: pip install 'pretrainer[hf]'") from error
    return transformers


# ---- export ----------------------------------------------------------------------------------------------------


def export_hf(run_dir: Path, out_dir: Path) -> Path:
    """Write `run_dir`'s last checkpoint as a transformers model directory (config.json,
    model.safetensors, tokenizer.json, tokenizer_config.json) in `out_dir`; returns `out_dir`.
    Raises ValueError naming each arch field that the target model cannot represent."""
    from safetensors.torch import save_file

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    _, payload, _ = resolve_checkpoint(str(run_dir))
    arch = arch_from_dict(payload["config"]["arch"])
    objective = payload["config"]["objective"]["name"]
    family, head_module = exporter(arch, objective)
    body, head = body_state_dict(payload), head_state_dict(payload, head_module)
    problems = family.export_problems(arch, head, objective)
    if problems:  # each problem names the transformers class that needs the value
        raise ValueError(f"cannot export {run_dir}: " + "; ".join(problems) + ". A run trained with the "
                         "values named exports (the default encoder's ALiBi has no transformers class: "
                         "arch.positions=learned)")
    tokenizer_file = run_dir / "tokenizer" / "tokenizer.json"
    tokenizer = read_tokenizer(tokenizer_file)  # once: its special ids, and the decoder's prompt template
    special = SpecialIds.of(tokenizer)

    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_size = body["tok_emb.weight"].shape[0]
    _write_json(out_dir / "config.json", family.hf_config(arch, vocab_size, special))
    save_file(family.export_state(arch, body, head), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    export_tokenizer(tokenizer_file, tokenizer, out_dir / "tokenizer.json", arch)
    _write_json(out_dir / "tokenizer_config.json", tokenizer_config(arch.max_len))
    if note := getattr(family, "NOTE", None):  # what the export left out
        warnings.warn(note, stacklevel=2)
    return out_dir


def exporter(arch: ArchConfig, objective: str) -> tuple[ModuleType | SimpleNamespace, str]:
    """(the family module that writes this run, the objective module whose weights are its head)."""
    if arch.name == "encoder" and objective == "electra":
        return electra if arch.norm_position == "post" else electra.PRE_LN_ENCODER, electra.HEAD_MODULE
    if arch.name == "encoder" and arch.norm_position == "pre":
        return megatron_bert, "head"
    return EXPORTERS[arch.name], "head"


def arch_from_dict(raw: dict[str, Any]) -> ArchConfig:
    """The checkpoint's `config["arch"]` -> ArchConfig (fields unknown to this version ignored)."""
    return ArchConfig(**{f.name: raw[f.name] for f in fields(ArchConfig) if f.name in raw})


def head_state_dict(payload: dict[str, Any], module: str = "head") -> dict[str, torch.Tensor]:
    """The objective's head weights (`objective.MODULE.*`): by default its LM head, an `LMHead` state dict."""
    prefix = f"objective.{module}."
    return {k[len(prefix):]: v for k, v in model_state(payload).items() if k.startswith(prefix)}


def export_tokenizer(source: Path, tokenizer: Tokenizer, target: Path, arch: ArchConfig) -> None:
    """Our tokenizer.json; a decoder's with `gpt2.prompt_template`, so that an encoded prompt
    ends with its last token and `generate()` continues it rather than starting a document."""
    if arch.name != "decoder":
        shutil.copyfile(source, target)
        return
    tokenizer.post_processor = gpt2.prompt_template()
    tokenizer.save(str(target))


def tokenizer_config(max_len: int) -> dict:
    """Lets `AutoTokenizer.from_pretrained` load tokenizer.json with our special tokens."""
    return {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len, "pad_token": PAD,
            "unk_token": UNK, "cls_token": CLS, "sep_token": SEP, "mask_token": MASK, "bos_token": CLS,
            "eos_token": SEP}


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# ---- import ----------------------------------------------------------------------------------------------------


def load_hf_model(hf_dir: Path) -> HFImport:
    """Build our body (and LM head weights) from a local transformers directory holding a
    BertForMaskedLM / BertModel, MegatronBertForMaskedLM / MegatronBertModel, ElectraForPreTraining /
    ElectraModel (the discriminator's encoder), GPT2LMHeadModel / GPT2Model or
    T5ForConditionalGeneration / T5Model; never touches the network. Raises ValueError for
    other models and options."""
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise FileNotFoundError(f"{hf_dir} is not a local model directory")
    transformers = _transformers()
    config = transformers.AutoConfig.from_pretrained(str(hf_dir), local_files_only=True)
    family = IMPORTERS.get(config.model_type)
    if family is None:
        raise ValueError(f"cannot import {hf_dir}: model_type={config.model_type} is not supported "
                         f"(supported: {', '.join(IMPORTERS)})")
    problems = family.import_problems(config)
    if problems:
        raise ValueError(f"cannot import {hf_dir} ({config.model_type}): " + "; ".join(problems))

    model_class = getattr(transformers, family.hf_class(config))
    try:  # transformers reads safetensors, or a .bin weights-only; a pickle with code is refused
        model = model_class.from_pretrained(str(hf_dir), local_files_only=True).float()
    except pickle.UnpicklingError:
        raise ValueError(f"cannot load the weights of {hf_dir}: they hold objects other than tensors, which "
                         "weights-only loading refuses (prefer model.safetensors)") from None
    except (OSError, RuntimeError) as error:
        raise ValueError(f"cannot load the weights of {hf_dir}: {str(error).splitlines()[0][:300]}") from None
    state = model.state_dict()
    prefix = "" if model.base_model is model else f"{model.base_model_prefix}."
    arch, body_state, head_state, used = family.import_state(model.config, state, prefix)

    body = build_body(arch, body_state["tok_emb.weight"].shape[0])
    body.load_state_dict(body_state)  # strict: every one of our weights comes from the checkpoint
    return HFImport(arch, body.eval(), head_state, tuple(sorted(set(state) - used)))


def build_lm_head(imported: HFImport) -> LMHead:
    """Our LM head with the imported weights, sharing the body's embedding when tied."""
    state, arch = imported.head_state, imported.arch
    if state is None:
        raise ValueError("the imported checkpoint has no LM head (a base model such as BertModel, GPT2Model or "
                         "T5Model, or an ELECTRA discriminator)")
    head = LMHead(imported.body.tok_emb, transform="transform.0.weight" in state, tied=arch.tie_embeddings,
                  init_std=arch.init_std, bias="bias" in state, norm_eps=arch.norm_eps)
    head.load_state_dict(state)
    return head.eval()
