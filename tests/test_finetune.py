"""Fine-tuning: metrics on hand-checkable cases, task kinds and heads, the modes (linear
probe, auxiliary LM), seeds, early stopping, predictions, fine-tuning a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrainer.config import ArchConfig, ConfigError, FinetuneConfig, LoggerConfig, TokenizerConfig
from pretrainer.data.examples import LabeledExample, TaskSplits
from pretrainer.errors import CheckpointError
from pretrainer.finetune.classifier import TaskModel, causal_lm_loss
from pretrainer.finetune.metrics import glue_average, glue_score, task_metrics
from pretrainer.finetune.recipe import FinetuneContext, finetune
from pretrainer.finetune.run import aggregate, encode_task
from pretrainer.loggers import RunLogger
from pretrainer.models import build_body
from pretrainer.tokenization import train_tokenizer

WORDS = "the cat dog sat ran on a mat far red big".split()


def test_metrics_on_hand_checkable_cases():
    labels, predictions = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    scores = task_metrics(("accuracy", "f1", "macro_f1", "mcc"), labels, predictions)
    assert scores["accuracy"] == pytest.approx(3 / 5)
    assert scores["f1"] == pytest.approx(2 / 3)  # precision 2/3, recall 2/3
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)  # class 0: precision 1/2, recall 1/2
    assert scores["mcc"] == pytest.approx((2 * 1 - 1 * 1) / np.sqrt(3 * 3 * 2 * 2))  # (TP TN - FP FN) / sqrt(...)
    correlated = task_metrics(("pearson", "spearman"), np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0, 9.0]))
    assert correlated["spearman"] == pytest.approx(1.0) and 0.98 < correlated["pearson"] < 1.0
    assert task_metrics(("pearson",), np.array([1.0, 2.0]), np.array([3.0, 3.0]))["pearson"] == 0.0  # constant
    assert glue_score({"f1": 0.8, "accuracy": 0.7}, ("f1", "accuracy")) == pytest.approx(0.75)
    assert glue_average({"mrpc": 0.75, "cola": 0.25}) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="valid"):
        task_metrics(("bleu",), labels, predictions)


@pytest.fixture(scope="module")
def tokenizer():
    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(WORDS, 12)) for _ in range(200)]
    return train_tokenizer(TokenizerConfig(name="wordpiece", vocab_size=120, min_frequency=1), iter(corpus))


def make_task(kind: str, n: int = 64, seed: int = 0) -> TaskSplits:
    """Learnable toy tasks: label = does the text contain "cat" (classification), the
    number of "dog"s (regression), or each word's first letter class (tagging)."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(n):
        words = list(rng.choice(WORDS, 6))
        if kind == "classification":
            examples.append(LabeledExample(" ".join(words), int("cat" in words)))
        elif kind == "regression":
            examples.append(LabeledExample(" ".join(words), float(words.count("dog"))))
        else:
            examples.append(LabeledExample(" ".join(words), tuple(int(w[0] in "aeiou") for w in words)))
    metrics = {"classification": ("accuracy", "f1"), "regression": ("pearson", "spearman"),
               "tagging": ("accuracy", "macro_f1")}[kind]
    names = [] if kind == "regression" else ["no", "yes"]
    return TaskSplits(f"toy_{kind}", names, examples[: n // 2], examples[n // 2 : 3 * n // 4], examples[3 * n // 4 :],
                      kind=kind, metrics=metrics)


def context(tmp_path: Path) -> FinetuneContext:
    return FinetuneContext(torch.device("cpu"), False, 0, RunLogger(tmp_path, LoggerConfig(), "test", {}))


def body_factory(name: str = "encoder", vocab: int = 120, **arch):
    def make():
        torch.manual_seed(1)
        return build_body(ArchConfig(name=name, n_layer=1, d_model=32, n_head=2, d_ff=64, max_len=64, **arch), vocab)

    return make


RECIPE = {"epochs": 8, "lr": 3e-3, "batch_size": 8, "dropout": 0.0}


@pytest.mark.parametrize("kind", ["classification", "regression", "tagging"])
def test_every_task_kind_fine_tunes_and_reports_its_metrics(tokenizer, tmp_path, kind):
    task = encode_task(make_task(kind, n=160), tokenizer, 32)
    result = finetune(body_factory(), task, FinetuneConfig(**RECIPE), context(tmp_path), "scratch", seed=0)
    assert set(result["test"]) == set(task.metrics)
    assert len(result["predictions"]["test"]) == len(task.test)
    if kind == "tagging":  # one prediction per word of each sentence
        assert [len(p) for p in result["predictions"]["test"]] == [6] * len(task.test)
    floor = {"classification": 0.8, "regression": 0.5, "tagging": 0.8}[kind]
    assert result["test"][task.metrics[0]] > floor  # the toy rules are learnable in a few epochs


def test_linear_probe_freezes_the_body_and_full_fine_tuning_does_not(tokenizer, tmp_path):
    task = encode_task(make_task("classification"), tokenizer, 32)
    for mode, body_changes in (("linear_probe", False), ("full", True)):
        bodies = []

        def keep(bodies=bodies):
            bodies.append(body_factory()())
            return bodies[-1]

        finetune(keep, task, FinetuneConfig(**RECIPE | {"epochs": 2, "mode": mode}), context(tmp_path), "p", 0)
        fresh = body_factory()()
        changed = any(not torch.equal(a, b) for a, b in zip(bodies[0].state_dict().values(),
                                                             fresh.state_dict().values(), strict=True))
        assert changed == body_changes, mode


def test_auxiliary_lm_loss_contributes_gradient(tokenizer):
    torch.manual_seed(0)
    body = body_factory("decoder")()
    model = TaskModel(body, "classification", 2, "mean", 0.0)
    ids = torch.randint(5, 120, (4, 10))
    mask = torch.ones_like(ids, dtype=torch.bool)
    _, hidden = model(ids, mask)
    causal_lm_loss(body, hidden, ids, pad_id=0).backward()
    assert body.tok_emb.weight.grad.abs().sum() > 0 and model.head.proj.weight.grad is None  # LM only, not the head
    with pytest.raises(ConfigError, match="aux_lm"):
        from pretrainer.config import Config

        Config(finetune=FinetuneConfig(mode="aux_lm"))  # the default arch is an encoder


def test_aux_lm_mode_changes_what_the_body_learns(tokenizer, tmp_path):
    task = encode_task(make_task("classification"), tokenizer, 32)
    final = {}
    for mode in ("full", "aux_lm"):
        bodies = []

        def keep(bodies=bodies):
            bodies.append(body_factory("decoder")())
            return bodies[-1]

        finetune(keep, task, FinetuneConfig(**RECIPE | {"epochs": 1, "mode": mode}), context(tmp_path), "p", 0)
        final[mode] = bodies[0].tok_emb.weight.detach().clone()
    assert not torch.allclose(final["full"], final["aux_lm"])  # same seed, data and head: only the LM term differs


def test_early_stopping_waits_patience_epochs_after_the_best(tokenizer, tmp_path):
    task = encode_task(make_task("classification"), tokenizer, 32)
    cfg = FinetuneConfig(**RECIPE | {"lr": 1e-9, "epochs": 10, "patience": 2})  # nothing improves after epoch 1
    result = finetune(body_factory(), task, cfg, context(tmp_path), "p", 0)
    assert result["best_epoch"] == 1 and result["epochs_run"] == 3


def test_progress_counts_every_planned_step_also_when_early_stopping_skips_epochs(tokenizer, tmp_path):
    task = encode_task(make_task("classification"), tokenizer, 32)
    steps = []
    ctx = context(tmp_path)
    ctx.advance = lambda count, timed=True: steps.append(count)
    cfg = FinetuneConfig(**RECIPE | {"lr": 1e-9, "epochs": 10, "patience": 2})
    result = finetune(body_factory(), task, cfg, ctx, "p", 0)
    assert result["epochs_run"] == 3 and steps.count(1) == 3 * 4  # 32 examples / batch 8 = 4 steps per epoch
    assert sum(steps) == 10 * 4  # the 7 skipped epochs complete the bar at once


def test_test_set_is_evaluated_once_from_the_best_dev_epochs_weights(tokenizer, tmp_path, monkeypatch):
    from pretrainer.finetune import recipe

    task = encode_task(make_task("classification", n=160), tokenizer, 32)
    seen = []  # (split, fingerprint of the weights it was evaluated with)
    evaluate = recipe.evaluate

    def recording_evaluate(model, task_, data, batch_size, ctx):
        split = "test" if data is task.test else "dev"
        seen.append((split, sum(float(p.detach().double().sum()) for p in model.parameters())))
        return evaluate(model, task_, data, batch_size, ctx)

    monkeypatch.setattr(recipe, "evaluate", recording_evaluate)
    result = finetune(body_factory(), task, FinetuneConfig(**RECIPE), context(tmp_path), "scratch", seed=0)
    dev_weights = [weights for split, weights in seen if split == "dev"]
    tests = [weights for split, weights in seen if split == "test"]
    assert len(dev_weights) == 8 and len(tests) == 1  # 8 epochs: dev each epoch, test once at the end
    assert result["best_epoch"] < 8 or len(set(dev_weights)) == 8  # the weights change every epoch
    assert tests[0] == dev_weights[result["best_epoch"] - 1]  # test scored the best dev epoch's weights


def test_encoder_decoder_reads_its_decoder_state_with_bart_pooling(tokenizer, tmp_path):
    task = encode_task(make_task("classification", n=96), tokenizer, 32)
    cfg = FinetuneConfig(**RECIPE | {"pooling": "decoder", "epochs": 2})
    result = finetune(body_factory("encoder_decoder"), task, cfg, context(tmp_path), "p", 0)
    assert 0.0 <= result["test"]["accuracy"] <= 1.0


def test_seeds_give_mean_and_std():
    runs = [{"seed": s, "best_epoch": 1, "wall_time_s": 1.0, "test": {"accuracy": a}, "dev": {"accuracy": a}}
            for s, a in enumerate([0.5, 0.7, 0.9])]
    out = aggregate(runs)
    assert out["test"]["accuracy"] == pytest.approx(0.7)
    assert out["test_std"]["accuracy"] == pytest.approx(0.2)  # sample std of 0.5, 0.7, 0.9
    assert [r["seed"] for r in out["seeds"]] == [0, 1, 2]


def test_train_runs_seeds_writes_predictions_and_the_summary(compose_config, tmp_path):
    from pretrainer.pipeline import train

    cfg = compose_config("data.num_documents=200", "finetune.tasks=[topic]", "finetune.train_size=40",
                         "finetune.eval_size=30", "finetune.epochs=2", "finetune.seeds=[0,1]")
    summary = train(cfg, tmp_path / "run")
    topic = summary["finetune"]["topic"]
    assert [r["seed"] for r in topic["pretrained"]["seeds"]] == [0, 1]
    assert topic["metrics"] == ["accuracy", "macro_f1"] and "test_std" in topic["scratch"]
    lines = (tmp_path / "run" / "predictions" / "topic" / "pretrained" / "seed1" / "test.jsonl").read_text()
    first = json.loads(lines.splitlines()[0])
    assert len(lines.splitlines()) == 30 and {"text", "label", "prediction"} <= set(first)


def test_finetune_command_reuses_a_checkpoint(compose_config, tmp_path, monkeypatch):
    from pretrainer.finetune.from_checkpoint import finetune_checkpoint
    from pretrainer.pipeline import train

    pretrained = tmp_path / "pretrained"
    train(compose_config("data.num_documents=200", "finetune=none"), pretrained)
    cfg = compose_config(f"init={pretrained}", "finetune.tasks=[sentiment]", "finetune.train_size=40",
                         "finetune.eval_size=30", "finetune.epochs=1", "finetune.scratch_baseline=false")
    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    summary = finetune_checkpoint(cfg, tmp_path / "ft")
    assert threads == [1]  # trainer.num_threads=1 (the test preset) is honoured, as by `train`
    assert summary["init"].endswith("step_00000004.pt") and "scratch" not in summary["finetune"]["sentiment"]
    assert (tmp_path / "ft" / "summary.json").is_file()
    (pretrained / "tokenizer" / "tokenizer.json").write_text(
        train_tokenizer(TokenizerConfig(name="word", vocab_size=50), iter(["a b c"] * 3)).to_str())
    with pytest.raises(ConfigError, match="fingerprint"):
        finetune_checkpoint(cfg, tmp_path / "ft2")
    with pytest.raises(CheckpointError, match="no such run dir or checkpoint"):
        finetune_checkpoint(compose_config(f"init={tmp_path / 'missing'}"), tmp_path / "ft3")


def test_finetune_checks_the_recipe_against_the_checkpoints_body(compose_config, tmp_path):
    """With init=, the body is the checkpoint's, not the command line's arch: a recipe the
    checkpoint can run is accepted, one it cannot is refused naming it."""
    from pretrainer.finetune.from_checkpoint import finetune_checkpoint
    from pretrainer.pipeline import train

    pretrained = tmp_path / "tied_decoder"  # learned positions, max_len 64 (the tiny test preset)
    train(compose_config("objective=clm", "arch=decoder", "arch.tie_embeddings=true", "data.num_documents=200",
                         "finetune=none"), pretrained)
    recipe = [f"init={pretrained}", "finetune.tasks=[sentiment]", "finetune.train_size=40", "finetune.eval_size=30",
              "finetune.epochs=1", "finetune.scratch_baseline=false"]
    # GPT's auxiliary LM on a tied decoder, though the default arch (an encoder) could not run it
    summary = finetune_checkpoint(compose_config(*recipe, "finetune.mode=aux_lm"), tmp_path / "aux")
    assert summary["choices"]["arch"] == "decoder" and "pretrained" in summary["finetune"]["sentiment"]
    refused = [  # (overrides, the error): naming the command line's arch does not stand in for the body
        (["arch=encoder_decoder", "objective=t5_span", "finetune.pooling=decoder"],
         rf"pooling=decoder .*; init={pretrained} is arch=decoder$"),
        (["finetune.max_length=96"], rf"max_length=96 exceeds arch.max_len=64 of init={pretrained} \(learned"),
    ]
    for overrides, error in refused:
        with pytest.raises(ConfigError, match=error):
            finetune_checkpoint(compose_config(*recipe, *overrides), tmp_path / "refused")
    assert not (tmp_path / "refused" / "summary.json").exists()


def test_the_config_checks_its_own_arch_only_without_init(compose_config):
    with pytest.raises(ConfigError, match="aux_lm .* the config's arch is arch=encoder with arch.tie_embeddings=false"):
        compose_config("finetune.mode=aux_lm")
    assert compose_config("finetune.mode=aux_lm", "init=some/run").init == "some/run"  # checked once it is read
    # only a learned position table stops at max_len: ALiBi (the encoder's default) fine-tunes longer texts
    assert compose_config("finetune.max_length=96").finetune.max_length == 96
    with pytest.raises(ConfigError, match="max_length=96 exceeds arch.max_len=64 of the config's arch"):
        compose_config("finetune.max_length=96", "arch.positions=learned")


def test_train_refuses_init_rather_than_ignoring_it(compose_config, tmp_path):
    from pretrainer.pipeline import train

    with pytest.raises(ConfigError, match="init=runs/x starts `pretrainer finetune` or `evaluate`"):
        train(compose_config("init=runs/x"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_finetune_from_an_exported_hugging_face_directory(compose_config, tmp_path):
    """A published-format checkpoint (here: our run exported as BERT) fine-tunes by the same recipe."""
    pytest.importorskip("transformers")
    from pretrainer.finetune.from_checkpoint import finetune_checkpoint
    from pretrainer.interop import export_hf
    from pretrainer.pipeline import train

    run = tmp_path / "run"
    train(compose_config("arch.norm_position=post", "arch.positions=learned",
                         "data.num_documents=200", "finetune=none"), run)
    hf_dir = export_hf(run, tmp_path / "hf")
    cfg = compose_config(f"init={hf_dir}", "finetune.tasks=[sentiment]", "finetune.train_size=40",
                         "finetune.eval_size=30", "finetune.epochs=1")
    summary = finetune_checkpoint(cfg, tmp_path / "ft")
    assert summary["choices"] == {"arch": "encoder", "objective": "imported", "tokenizer": "imported"}
    assert set(summary["finetune"]["sentiment"]) >= {"pretrained", "scratch"}


def test_glue_average_is_the_mean_of_each_tasks_mean_official_metric():
    from pretrainer.finetune.run import glue_average

    results = {"mrpc": {"metrics": ["f1", "accuracy"], "pretrained": {"test": {"f1": 0.8, "accuracy": 0.6}},
                        "scratch": {"test": {"f1": 0.4, "accuracy": 0.2}}},
               "cola": {"metrics": ["mcc"], "pretrained": {"test": {"mcc": 0.3}}, "scratch": {"test": {"mcc": 0.1}}}}
    assert glue_average(results) == pytest.approx({"pretrained": (0.7 + 0.3) / 2, "scratch": (0.3 + 0.1) / 2})
