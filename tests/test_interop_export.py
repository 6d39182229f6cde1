"""Export of the default runs: pre-LN encoders (MegatronBERT), ELECTRA discriminators, and
a decoder tokenizer fit for `generate()`; with the helpers and tolerance of test_interop.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

transformers = pytest.importorskip("transformers")  # optional: `pip install 'pretrainer[hf]'`

from pretrainer.interop import build_lm_head, export_hf, load_hf_model  # noqa: E402
from tests.test_interop import (  # noqa: E402
    BERT,
    GPT2,
    SPECIAL,
    TOLERANCE,
    VOCAB,
    make_batch,
    make_run,
    max_difference,
    our_logits,
    perturb_norms,
)

PRE_LN = replace(BERT, norm_position="pre", norm_eps=1e-5)  # the default encoder, tiny
PRE_LN_WARNING = "without the discriminator head"


@torch.no_grad()
def our_hidden(body: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return body(batch["input_ids"], batch["attention_mask"], token_type_ids=batch.get("token_type_ids"))


@torch.no_grad()
def hf_output(model: torch.nn.Module, batch: dict[str, torch.Tensor]):
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch]
    return model(**{k: batch[k] for k in keys})


def assert_restored(imported, model) -> None:
    """The import of an export holds every one of the run's body weights."""
    original, restored = model.body.state_dict(), imported.body.state_dict()
    assert restored.keys() == original.keys()
    for key, value in original.items():
        torch.testing.assert_close(restored[key], value, rtol=1e-6, atol=1e-6, msg=key)


# ---- pre-LN encoder -> MegatronBertForMaskedLM -----------------------------------------------------------------

PRE_LN_CASES = {"tied": PRE_LN, "untied-segments": replace(PRE_LN, tie_embeddings=False, segment_embeddings=True)}


@pytest.mark.parametrize("arch", PRE_LN_CASES.values(), ids=PRE_LN_CASES.keys())
def test_pre_ln_encoder_exports_as_megatron_bert_with_our_mlm_logits(tmp_path, arch):
    model = make_run(tmp_path / "run", arch)
    out_dir = export_hf(tmp_path / "run", tmp_path / "hf")
    hf_model = transformers.AutoModelForMaskedLM.from_pretrained(out_dir, local_files_only=True).float().eval()
    assert type(hf_model).__name__ == "MegatronBertForMaskedLM"

    batch = make_batch(token_types=arch.segment_embeddings)
    difference = max_difference(our_logits(model.body, model.objective.head, batch), hf_output(hf_model, batch).logits,
                                batch)
    print(f"export pre-LN encoder ({'untied' if not arch.tie_embeddings else 'tied'}): max |ours - HF| = "
          f"{difference:.2e}")
    assert difference < TOLERANCE

    imported = load_hf_model(out_dir)  # and back: the same body, head and arch
    assert (imported.arch.norm_position, imported.arch.segment_embeddings) == ("pre", arch.segment_embeddings)
    assert imported.dropped == ()
    assert_restored(imported, model)
    for key, value in model.objective.head.state_dict().items():
        torch.testing.assert_close(build_lm_head(imported).state_dict()[key], value, rtol=1e-6, atol=1e-6, msg=key)


def test_a_published_megatron_bert_imports_with_its_logits(tmp_path):
    config = transformers.MegatronBertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=16, initializer_range=0.2)
    torch.manual_seed(0)
    hf_model = transformers.MegatronBertForMaskedLM(config)
    perturb_norms(hf_model)
    hf_model.save_pretrained(tmp_path / "hf")

    imported = load_hf_model(tmp_path / "hf")
    assert imported.arch.norm_position == "pre" and imported.arch.segment_embeddings
    batch = make_batch(token_types=True)
    ours = our_logits(imported.body, build_lm_head(imported), batch)
    difference = max_difference(ours, hf_output(hf_model.eval(), batch).logits, batch)
    print(f"import MegatronBertForMaskedLM: max |ours - HF| = {difference:.2e}")
    assert difference < TOLERANCE


# ---- ELECTRA -> ElectraForPreTraining (post-LN) or MegatronBertModel (pre-LN) ----------------------------------


def sharpen_discriminator(model: torch.nn.Module) -> None:
    """nn.Linear's default init leaves the discriminator's logits too flat to tell a wrong mapping from a right one."""
    for layer in model.objective.discriminator_head[0::2]:  # the two Linears around the GELU
        layer.weight.mul_(5.0)


def test_post_ln_electra_exports_the_discriminator_with_our_logits(tmp_path):
    model = make_run(tmp_path / "run", BERT, "electra", adjust=sharpen_discriminator)
    out_dir = export_hf(tmp_path / "run", tmp_path / "hf")
    hf_model = transformers.ElectraForPreTraining.from_pretrained(out_dir, local_files_only=True).float().eval()

    batch = make_batch()
    with torch.no_grad():
        ours = model.objective.discriminator_head(our_hidden(model.body, batch)).squeeze(-1)  # (B, T)
    difference = max_difference(ours, hf_output(hf_model, batch).logits, batch)
    print(f"export ELECTRA discriminator: max |ours - HF| = {difference:.2e}")
    assert difference < TOLERANCE

    imported = load_hf_model(out_dir)  # the discriminator's encoder; its head is named as dropped
    assert imported.head_state is None
    assert imported.dropped == tuple(sorted(f"discriminator_predictions.{layer}.{kind}"
                                            for layer in ("dense", "dense_prediction") for kind in ("bias", "weight")))
    assert_restored(imported, model)


def test_default_pre_ln_electra_exports_its_encoder_and_warns(tmp_path):
    model = make_run(tmp_path / "run", PRE_LN, "electra")
    with pytest.warns(UserWarning, match=PRE_LN_WARNING):
        out_dir = export_hf(tmp_path / "run", tmp_path / "hf")
    hf_model = transformers.AutoModel.from_pretrained(out_dir, local_files_only=True).float().eval()
    assert type(hf_model).__name__ == "MegatronBertModel"

    batch = make_batch()
    real = batch["attention_mask"].bool()
    ours, theirs = our_hidden(model.body, batch)[real], hf_output(hf_model, batch).last_hidden_state[real]
    difference = (ours - theirs).abs().max().item()
    print(f"export pre-LN ELECTRA encoder: max |ours - HF| hidden = {difference:.2e}")
    assert difference < TOLERANCE

    imported = load_hf_model(out_dir)  # MegatronBertModel initialises a pooler we never had, and do not take
    assert imported.head_state is None and imported.dropped == ("pooler.dense.bias", "pooler.dense.weight")
    assert_restored(imported, model)


def test_electra_export_refuses_what_its_class_cannot_hold(tmp_path):
    make_run(tmp_path / "run", replace(PRE_LN, positions="rotary", activation="swiglu", bias=False), "electra")
    with pytest.raises(ValueError, match="cannot export") as error:
        export_hf(tmp_path / "run", tmp_path / "hf")
    for message in ("arch.positions=rotary (MegatronBertModel needs learned)",
                    "arch.activation=swiglu (MegatronBertModel needs gelu)", "arch.bias=false (MegatronBertModel"):
        assert message in str(error.value)


@pytest.mark.parametrize(("config_class", "options", "message"), [
    ("ElectraConfig", dict(embedding_size=16, hidden_size=32, num_attention_heads=4),
     "embedding_size=16 != hidden_size=32"),
    ("RobertaPreLayerNormConfig", dict(hidden_size=32, num_attention_heads=4),
     "model_type=roberta-prelayernorm is not supported"),
], ids=["electra-small-embeddings", "roberta-prelayernorm"])
def test_import_refuses_models_without_an_exact_counterpart(tmp_path, config_class, options, message):
    getattr(transformers, config_class)(**options).save_pretrained(tmp_path / "hf")
    with pytest.raises(ValueError, match="cannot import") as error:
        load_hf_model(tmp_path / "hf")
    assert message in str(error.value)


# ---- decoder tokenizer -----------------------------------------------------------------------------------------


def test_exported_decoder_tokenizer_starts_a_prompt_and_leaves_it_open(tmp_path):
    make_run(tmp_path / "run", GPT2)
    out_dir = export_hf(tmp_path / "run", tmp_path / "hf")
    tokenizer = transformers.AutoTokenizer.from_pretrained(out_dir, local_files_only=True)

    ids = tokenizer("w1 w2 w3")["input_ids"]
    assert ids == [SPECIAL.cls, *tokenizer.convert_tokens_to_ids(["w1", "w2", "w3"])]  # ends with w3, no [SEP]
    pair = tokenizer("w1", "w2")["input_ids"]
    assert pair == [SPECIAL.cls, *tokenizer.convert_tokens_to_ids(["w1"]), SPECIAL.sep,
                    *tokenizer.convert_tokens_to_ids(["w2"])]

    model = transformers.AutoModelForCausalLM.from_pretrained(out_dir, local_files_only=True).eval()
    prompt = tokenizer("w1 w2 w3", return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=3, do_sample=False, pad_token_id=SPECIAL.pad)
    assert generated[0, :len(ids)].tolist() == ids  # the continuation follows the prompt's last token


def test_exported_encoder_tokenizer_keeps_the_classification_template(tmp_path):
    make_run(tmp_path / "run", PRE_LN)
    tokenizer = transformers.AutoTokenizer.from_pretrained(export_hf(tmp_path / "run", tmp_path / "hf"),
                                                           local_files_only=True)
    assert tokenizer("w1")["input_ids"] == [SPECIAL.cls, tokenizer.convert_tokens_to_ids("w1"), SPECIAL.sep]


# ---- end to end ------------------------------------------------------------------------------------------------


def test_an_electra_run_with_learned_positions_exports_and_finetunes_from_it(compose_config, tmp_path):
    """The default encoder uses ALiBi, which no transformers class has; with learned positions the
    composed ELECTRA run exports."""
    from pretrainer.finetune.from_checkpoint import finetune_checkpoint
    from pretrainer.pipeline import train

    train(compose_config("objective=electra", "arch.positions=learned", "finetune=none", "trainer.max_steps=2",
                         "data.num_documents=200"),
          tmp_path / "run")
    with pytest.warns(UserWarning, match=PRE_LN_WARNING):
        hf_dir = export_hf(tmp_path / "run", tmp_path / "hf")
    cfg = compose_config(f"init={hf_dir}", "finetune.tasks=[sentiment]", "finetune.train_size=40",
                         "finetune.eval_size=30", "finetune.epochs=1")
    summary = finetune_checkpoint(cfg, tmp_path / "ft")
    assert summary["choices"] == {"arch": "encoder", "objective": "imported", "tokenizer": "imported"}
    assert set(summary["finetune"]["sentiment"]) >= {"pretrained", "scratch"}
