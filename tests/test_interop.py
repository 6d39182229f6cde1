"""Hugging Face interop: exported and imported models give the same logits as ours.

Every family is checked both ways on a right-padded batch, fp32 on the CPU, with tiny
random models whose norm weights and biases are pushed away from 1 and 0 (so a
misplaced norm or bias shows), and weights large enough that attention is far from
uniform (so a missing score scale or a swapped q/k shows).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from torch import nn

from pretrainer.config import ArchConfig, ObjectiveConfig
from pretrainer.interop import build_lm_head, export_hf, load_hf_model
from pretrainer.models import EncoderDecoder, build_body
from pretrainer.objectives import build_objective
from pretrainer.tokenization import SPECIAL_TOKENS, add_template
from pretrainer.training.checkpoint import save_checkpoint
from pretrainer.training.loop import PretrainingModel
from tests.helpers import SPECIAL

transformers = pytest.importorskip("transformers")  # optional: `pip install 'pretrainer[hf]'`

VOCAB = 48
TOLERANCE = 1e-4
TINY = dict(n_layer=2, d_model=32, n_head=4, d_ff=48, max_len=16, init_std=0.2)
BERT = ArchConfig(name="encoder", norm_position="post", norm_eps=1e-12, **TINY)
GPT2 = ArchConfig(name="decoder", norm_position="pre", **TINY)
T5_V11 = ArchConfig(name="encoder_decoder", n_decoder_layer=3, norm_position="pre", norm="rmsnorm", norm_eps=1e-6,
                    positions="t5_relative_bias", relative_buckets=8, relative_max_distance=20, activation="geglu",
                    bias=False, tie_embeddings=False, **TINY)
T5_V10 = replace(T5_V11, activation="relu", tie_embeddings=True, n_decoder_layer=None)  # scaled tied output
OBJECTIVE = {"encoder": "mlm", "decoder": "clm", "encoder_decoder": "t5_span"}


# ---- helpers ---------------------------------------------------------------------------------------------------


def perturb_norms(model: nn.Module) -> None:
    """Norm weights ~ N(1, 0.3), norm and LM-head biases ~ N(0, 0.3), T5 relative biases ~ N(0, 1)."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in model.named_parameters():
            is_norm = any(key in name for key in ("norm", "LayerNorm", "ln_", "transform.2", "transform.LayerNorm"))
            if is_norm and name.endswith("weight"):
                param.copy_(1.0 + 0.3 * torch.randn(param.shape, generator=generator))
            elif name.endswith("bias") and param.dim() == 1:
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
            elif "relative" in name:
                param.copy_(torch.randn(param.shape, generator=generator))


def write_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *(f"w{i}" for i in range(VOCAB - 5))])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    add_template(tokenizer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))


def make_run(run_dir: Path, arch: ArchConfig, objective: str | None = None,
             adjust: Callable[[PretrainingModel], None] | None = None) -> PretrainingModel:
    """A run dir holding a random (seeded) pretraining model's checkpoint and a tokenizer;
    `adjust` changes the model's weights before they are saved."""
    objective_cfg = ObjectiveConfig(name=objective or OBJECTIVE[arch.name])
    torch.manual_seed(0)
    body = build_body(arch, VOCAB)
    model = PretrainingModel(body, build_objective(objective_cfg, body, SPECIAL, VOCAB))
    perturb_norms(model)
    if adjust is not None:
        with torch.no_grad():
            adjust(model)
    save_checkpoint(run_dir / "checkpoints", 0, {
        "model": model.state_dict(), "config": {"arch": asdict(arch), "objective": asdict(objective_cfg)}}, keep=1)
    write_tokenizer(run_dir / "tokenizer" / "tokenizer.json")
    return model.eval()


def make_batch(token_types: bool = False) -> dict[str, torch.Tensor]:
    """3 rows of 12 tokens, right-padded to lengths 12, 9, 5; decoder inputs (3, 7) start with [CLS]."""
    generator = torch.Generator().manual_seed(1)
    mask = torch.arange(12)[None, :] < torch.tensor([12, 9, 5])[:, None]  # (B, T)
    input_ids = torch.randint(5, VOCAB, (3, 12), generator=generator).masked_fill(~mask, SPECIAL.pad)
    decoder_input_ids = torch.randint(5, VOCAB, (3, 7), generator=generator)
    decoder_input_ids[:, 0] = SPECIAL.cls
    batch = {"input_ids": input_ids, "attention_mask": mask.long(), "decoder_input_ids": decoder_input_ids}
    if token_types:  # sentence B from position 6 on
        batch["token_type_ids"] = ((torch.arange(12)[None, :] >= 6) & mask).long()
    return batch


@torch.no_grad()
def our_logits(body: nn.Module, head: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    mask = batch["attention_mask"]
    if isinstance(body, EncoderDecoder):  # decoder logits (B, S, V)
        return head(body.decode(batch["decoder_input_ids"], body(batch["input_ids"], mask), mask))
    if body.causal:
        return head(body(batch["input_ids"]))
    return head(body(batch["input_ids"], mask, token_type_ids=batch.get("token_type_ids")))


@torch.no_grad()
def hf_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    accepted = inspect.signature(model.forward).parameters
    keys = {"input_ids", "attention_mask"} | {k for k in ("decoder_input_ids", "token_type_ids")
                                              if k in batch and k in accepted}
    return model(**{k: batch[k] for k in keys}).logits


def max_difference(ours: torch.Tensor, theirs: torch.Tensor, batch: dict[str, torch.Tensor]) -> float:
    """Max |ours - theirs| over real positions: every decoder position, or the encoder's non-pad ones."""
    assert ours.shape == theirs.shape
    if ours.shape[1] == batch["attention_mask"].shape[1]:
        real = batch["attention_mask"].bool()
        ours, theirs = ours[real], theirs[real]
    assert ours.std() > 0.3, "logits too flat to tell a wrong mapping from a right one"
    return (ours - theirs).abs().max().item()


def hf_class(arch: ArchConfig):
    return {"encoder": transformers.BertForMaskedLM, "decoder": transformers.GPT2LMHeadModel,
            "encoder_decoder": transformers.T5ForConditionalGeneration}[arch.name]


# ---- export ----------------------------------------------------------------------------------------------------

EXPORT_CASES = {
    "bert-tied": BERT,
    "bert-untied-segments": replace(BERT, tie_embeddings=False, segment_embeddings=True),
    "gpt2-tied": GPT2,
    "gpt2-untied": replace(GPT2, tie_embeddings=False),
    "t5-v1.1": T5_V11,
    "t5-v1.0-tied-relu": T5_V10,
}


@pytest.mark.parametrize("arch", EXPORT_CASES.values(), ids=EXPORT_CASES.keys())
def test_exported_model_gives_our_logits(tmp_path, arch):
    model = make_run(tmp_path / "run", arch)
    out_dir = export_hf(tmp_path / "run", tmp_path / "hf")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in out_dir.iterdir()}

    hf_model = hf_class(arch).from_pretrained(out_dir, local_files_only=True).float().eval()
    batch = make_batch(token_types=arch.segment_embeddings)
    difference = max_difference(our_logits(model.body, model.objective.head, batch), hf_logits(hf_model, batch), batch)
    print(f"export {arch.name}: max |ours - HF| = {difference:.2e}")
    assert difference < TOLERANCE


def test_export_then_import_restores_every_weight(tmp_path):
    for arch in EXPORT_CASES.values():
        run_dir = tmp_path / f"{arch.name}-{arch.tie_embeddings}-{arch.activation}"
        model = make_run(run_dir, arch)
        imported = load_hf_model(export_hf(run_dir, run_dir / "hf"))
        assert imported.dropped == ()
        kept = ("name", "n_layer", "d_model", "n_head", "d_ff", "norm_position", "norm", "norm_eps", "positions",
                "activation", "bias", "tie_embeddings", "segment_embeddings")
        assert {k: getattr(imported.arch, k) for k in kept} == {k: getattr(arch, k) for k in kept}
        assert (imported.arch.n_decoder_layer or arch.n_layer) == (arch.n_decoder_layer or arch.n_layer)
        original = model.body.state_dict()
        restored = imported.body.state_dict()
        assert restored.keys() == original.keys()
        for key, value in original.items():
            torch.testing.assert_close(restored[key], value, rtol=1e-6, atol=1e-6, msg=key)
        head = build_lm_head(imported).state_dict()
        for key, value in model.objective.head.state_dict().items():
            torch.testing.assert_close(head[key], value, rtol=1e-6, atol=1e-6, msg=key)


REFUSED = {
    "post-LN rotary encoder": (replace(BERT, positions="rotary"), None,
                               ["arch.positions=rotary (BertForMaskedLM needs learned)"]),
    "pre-LN rotary rmsnorm encoder": (replace(BERT, norm_position="pre", positions="rotary", norm="rmsnorm"), None,
                                      ["arch.positions=rotary (MegatronBertForMaskedLM needs learned)",
                                       "arch.norm=rmsnorm (MegatronBertForMaskedLM needs layernorm)"]),
    "rmsnorm swiglu decoder": (replace(GPT2, norm="rmsnorm", activation="swiglu", bias=False), None,
                               ["arch.norm=rmsnorm (GPT2LMHeadModel needs layernorm)",
                                "arch.activation=swiglu (GPT2LMHeadModel needs gelu)",
                                "arch.bias=false (GPT2LMHeadModel needs true)"]),
    "BART-like encoder-decoder": (ArchConfig(name="encoder_decoder", **TINY), "bart",
                                  ["arch.norm=layernorm (T5ForConditionalGeneration needs rmsnorm)",
                                   "arch.positions=learned (T5ForConditionalGeneration needs t5_relative_bias)",
                                   "arch.bias=true (T5ForConditionalGeneration needs false)"]),
}


@pytest.mark.parametrize(("arch", "objective", "messages"), REFUSED.values(), ids=REFUSED.keys())
def test_export_refuses_a_nonstandard_variant_naming_each_field(tmp_path, arch, objective, messages):
    make_run(tmp_path / "run", arch, objective)
    with pytest.raises(ValueError, match="cannot export") as error:
        export_hf(tmp_path / "run", tmp_path / "hf")
    for message in messages:
        assert message in str(error.value)
    assert not (tmp_path / "hf").exists()


# ---- import ----------------------------------------------------------------------------------------------------


def tiny_hf_model(kind: str) -> nn.Module:
    size = dict(vocab_size=VOCAB)
    if kind.startswith("bert"):
        config = transformers.BertConfig(
            **size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=16, initializer_range=0.2, tie_word_embeddings=kind != "bert-untied",
            type_vocab_size=1 if kind == "bert-one-token-type" else 2)
        return transformers.BertForMaskedLM(config)
    if kind.startswith("gpt2"):
        config = transformers.GPT2Config(
            **size, n_embd=32, n_layer=2, n_head=4, n_inner=48, n_positions=16, activation_function="gelu",
            initializer_range=0.2, tie_word_embeddings=kind == "gpt2-tied")
        return transformers.GPT2LMHeadModel(config)
    v10 = kind == "t5-v1.0"
    config = transformers.T5Config(
        **size, d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2, num_decoder_layers=2 if v10 else 3,
        relative_attention_num_buckets=8, relative_attention_max_distance=20, decoder_start_token_id=SPECIAL.cls,
        feed_forward_proj="relu" if v10 else "gated-gelu", tie_word_embeddings=v10)
    return transformers.T5ForConditionalGeneration(config)


IMPORT_CASES = ("bert-tied", "bert-untied", "bert-one-token-type", "gpt2-tied", "gpt2-untied", "t5-v1.1", "t5-v1.0")


@pytest.mark.parametrize("kind", IMPORT_CASES)
def test_imported_model_gives_the_hf_logits(tmp_path, kind):
    torch.manual_seed(0)
    hf_model = tiny_hf_model(kind)
    perturb_norms(hf_model)
    hf_model.save_pretrained(tmp_path / "hf")
    hf_model.eval()

    imported = load_hf_model(tmp_path / "hf")
    assert imported.arch.name == {"bert": "encoder", "gpt2": "decoder", "t5": "encoder_decoder"}[kind.split("-")[0]]
    if kind.startswith("bert"):  # a single token type is folded into the position embeddings
        assert imported.arch.segment_embeddings == (kind != "bert-one-token-type")
    batch = make_batch(token_types=kind in ("bert-tied", "bert-untied"))
    ours = our_logits(imported.body, build_lm_head(imported), batch)
    difference = max_difference(ours, hf_logits(hf_model, batch), batch)
    print(f"import {kind}: max |ours - HF| = {difference:.2e}")
    assert difference < TOLERANCE


def test_import_of_a_base_model_has_no_head_and_reports_dropped_weights(tmp_path):
    torch.manual_seed(0)
    config = tiny_hf_model("bert-tied").config
    transformers.BertModel(config).save_pretrained(tmp_path / "hf")  # with a pooler
    imported = load_hf_model(tmp_path / "hf")
    assert imported.head_state is None
    assert imported.dropped == ("pooler.dense.bias", "pooler.dense.weight")
    with pytest.raises(ValueError, match="no LM head"):
        build_lm_head(imported)


UNSUPPORTED = {
    "gpt2 gelu_new": ("GPT2Config", dict(n_embd=32, n_layer=1, n_head=4), "activation_function=gelu_new (needs gelu"),
    "bert relative positions": ("BertConfig", dict(hidden_size=32, num_attention_heads=4,
                                                   position_embedding_type="relative_key"),
                                "position_embedding_type=relative_key (needs absolute)"),
    "t5 heads narrower than d_model": ("T5Config", dict(d_model=32, d_kv=4, num_heads=4),
                                       "d_kv * num_heads = 16 != d_model=32"),
    "roberta": ("RobertaConfig", dict(hidden_size=32, num_attention_heads=4), "model_type=roberta is not supported"),
}


@pytest.mark.parametrize(("config_class", "options", "message"), UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_import_refuses_unsupported_models_clearly(tmp_path, config_class, options, message):
    getattr(transformers, config_class)(**options).save_pretrained(tmp_path / "hf")  # refused before any weight
    with pytest.raises(ValueError, match="cannot import") as error:
        load_hf_model(tmp_path / "hf")
    assert message in str(error.value)


# ---- end to end ------------------------------------------------------------------------------------------------


def test_a_trained_run_exports_with_its_tokenizer(compose_config, tmp_path):
    from tokenizers import Tokenizer

    from pretrainer.pipeline import train

    cfg = compose_config("arch.norm_position=post", "arch.positions=learned",
                         "finetune=none", "trainer.max_steps=2", "data.num_documents=200")
    train(cfg, tmp_path / "run")
    out_dir = export_hf(tmp_path / "run", tmp_path / "hf")

    text = "the quick brown fox jumps over the lazy dog"
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out_dir, local_files_only=True)
    ours = Tokenizer.from_file(str(tmp_path / "run" / "tokenizer" / "tokenizer.json")).encode(text).ids
    assert hf_tokenizer(text)["input_ids"] == ours

    imported = load_hf_model(out_dir)
    hf_model = transformers.BertForMaskedLM.from_pretrained(out_dir, local_files_only=True).eval()
    batch = {"input_ids": torch.tensor([ours]), "attention_mask": torch.ones(1, len(ours), dtype=torch.long)}
    ours_logits = our_logits(imported.body, build_lm_head(imported), batch)
    assert (ours_logits - hf_logits(hf_model, batch)).abs().max().item() < TOLERANCE
