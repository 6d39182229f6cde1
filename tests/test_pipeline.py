"""End to end: `train(cfg)` and the `pretrainer` CLI on tiny configurations."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pretrainer.pipeline import train
from pretrainer.training import loop
from pretrainer.training.checkpoint import CHECKPOINT_FORMAT, resolve_checkpoint
from tests.conftest import TINY

SMALL_DATA = ["data.num_documents=300", "finetune.train_size=40", "finetune.eval_size=40", "finetune.epochs=2"]


def newest_checkpoint(run_dir: Path) -> dict:
    """The payload of a run's newest (verified) checkpoint."""
    return resolve_checkpoint(str(run_dir))[1]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_writes_the_run_dir_and_loss_goes_down(compose_config, tmp_path):
    cfg = compose_config(*SMALL_DATA, "trainer.max_steps=60", "trainer.eval_every=30", "trainer.lr=2e-3",
                         "finetune.tasks=[topic,entailment]")
    run_dir = tmp_path / "run"
    summary = train(cfg, run_dir)

    assert (run_dir / "tokenizer" / "tokenizer.json").is_file()
    records = read_jsonl(run_dir / "metrics.jsonl")
    pretrain = [r for r in records if r["phase"] == "pretrain"]
    assert [r["step"] for r in pretrain] == list(range(1, 61))
    assert {"loss", "lr", "tokens", "tokens_per_s"} <= set(pretrain[0])
    evals = [r["loss"] for r in records if r["phase"] == "pretrain_eval"]
    assert len(evals) == 2 and evals[1] < evals[0]
    # The first step predicts ~uniformly (loss ~ ln V = 5.7); the trained model must be far below.
    assert pretrain[0]["loss"] == pytest.approx(math.log(cfg.tokenizer.vocab_size), abs=0.3)
    assert evals[-1] < pretrain[0]["loss"] - 0.3

    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["pretrain"]["tokens"] == 60 * 8 * 32
    for task in ("topic", "entailment"):
        for init in ("pretrained", "scratch"):
            result = summary["finetune"][task][init]
            assert 0.0 <= result["test"]["accuracy"] <= 1.0 and 1 <= result["best_epoch"] <= 2
    assert "macro_f1" in summary["finetune"]["entailment"]["pretrained"]["test"]  # 3 classes

    checkpoint = newest_checkpoint(run_dir)
    assert checkpoint["format"] == CHECKPOINT_FORMAT
    assert checkpoint["train_state"]["step"] == 60
    assert checkpoint["tokenizer_fingerprint"] == summary["tokenizer"]["fingerprint"]
    assert checkpoint["config"]["objective"]["name"] == "mlm"
    assert {"model", "optimizer", "scheduler", "rng"} <= set(checkpoint)


# Each objective draws its own randomness: masks and 80/10/10 (mlm), span lengths (span_mlm,
# t5_span, bart), the generator's samples (electra); a rerun of the same seed repeats them all.
@pytest.mark.parametrize("objective", ["mlm", "span_mlm", "electra", "t5_span", "bart", "clm"])
def test_same_seed_gives_identical_losses(compose_config, tmp_path, objective):
    cfg = compose_config(*SMALL_DATA, "finetune=none", f"objective={objective}")
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")

    def losses(run: str) -> list[float]:
        return [r["loss"] for r in read_jsonl(tmp_path / run / "metrics.jsonl")]

    assert losses("a") == losses("b")


@pytest.mark.parametrize("objective", ["mlm", "t5_span"])  # AdamW, and T5's Adafactor (no betas to put back)
def test_interrupted_run_keeps_its_checkpoint_and_resumes_exactly(compose_config, tmp_path, monkeypatch, objective):
    overrides = [*SMALL_DATA, "finetune=none", "trainer.max_steps=6", "trainer.eval_every=100",
                 f"objective={objective}"]
    train(compose_config(*overrides), tmp_path / "straight")

    cfg = compose_config(*overrides, "trainer.checkpoint_every=3", "resume=true")
    run_dir = tmp_path / "interrupted"
    real_step = loop._optimizer_step

    def crash_at_step_4(*args, **kwargs):
        if args[-1] == 4:  # the step argument
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "_optimizer_step", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run_dir)
    assert newest_checkpoint(run_dir)["train_state"]["step"] == 3
    monkeypatch.setattr(loop, "_optimizer_step", real_step)
    train(cfg, run_dir)

    straight = newest_checkpoint(tmp_path / "straight")
    resumed = newest_checkpoint(run_dir)
    assert resumed["train_state"]["step"] == 6
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRETRAINER_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "pretrainer.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_train_on_a_local_text_file_with_bpe_and_decoder(text_corpus, tmp_path):
    result = run_cli("train", *TINY, "tokenizer=bpe", "objective=clm", "arch=decoder", "data=text_files",
                     f"data.paths=[{text_corpus}]", "finetune=none", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["choices"] == {"tokenizer": "bpe", "arch": "decoder", "objective": "clm", "data": "text_files"}
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()
    assert not (Path.cwd() / "metrics.jsonl").exists()  # Hydra did not chdir into the run dir


def test_cli_incompatible_pair_fails_fast_with_a_clear_message(tmp_path):
    result = run_cli("train", "objective=clm", "arch=encoder", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "compatible architectures: decoder" in result.stderr
    assert not (tmp_path / "run" / "tokenizer").exists()  # no work was done


@pytest.mark.parametrize("flag", ["--help"])
def test_cli_help_lists_groups(flag, tmp_path):
    result = run_cli("train", flag, cwd=tmp_path)
    assert result.returncode == 0
    for group in ("tokenizer:", "arch:", "arch/size:", "objective:", "data:", "finetune:", "trainer:", "logger:"):
        assert group in result.stdout


def test_cli_sweep_survives_a_failed_job_and_a_rerun_skips_the_completed_ones(text_corpus, tmp_path):
    other, tiny = tmp_path / "other.txt", tmp_path / "tiny.txt"
    other.write_text(text_corpus.read_text().upper())
    tiny.write_text("too short\n")  # fails when the job runs: smaller than one block
    args = ["train", "-m", *TINY, "objective=clm", "data=text_files", f"data.paths=[{text_corpus}],[{other}],[{tiny}]",
            "finetune=none"]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert "1 job(s) of the sweep failed" in result.stderr and "tiny.txt" in result.stderr
    assert "job 3 of 3" in result.stdout
    (sweep,) = (tmp_path / "multirun").iterdir()  # one stable directory per sweep command
    assert (sweep / "0" / "summary.json").is_file() and (sweep / "1" / "summary.json").is_file()
    assert not (sweep / "2" / "summary.json").exists()
    rerun = run_cli(*args, cwd=tmp_path)
    assert rerun.returncode == 1 and "1 job(s) of the sweep failed" in rerun.stderr
    assert rerun.stdout.count("already completed") == 2 and "job 3 of 3" in rerun.stdout
    assert len((sweep / "0" / "metrics.jsonl").read_text().splitlines()) == len(
        (sweep / "1" / "metrics.jsonl").read_text().splitlines())  # not appended to by the skipped re-run
    assert [p.name for p in (tmp_path / "multirun").iterdir()] == [sweep.name]


def test_cli_sweep_with_an_invalid_job_fails_before_any_job_runs(text_corpus, tmp_path):
    result = run_cli("train", "-m", *TINY, "objective=clm,prefix_lm,mlm", "arch=decoder", "data=text_files",
                     f"data.paths=[{text_corpus}]", "finetune=none", cwd=tmp_path)
    assert result.returncode == 2
    assert "1 of the sweep's 3 jobs have an invalid config; no job was run" in result.stderr
    assert "job 3 (objective=mlm): objective=mlm cannot train arch=decoder" in result.stderr
    assert "job 1 of" not in result.stdout and not (tmp_path / "multirun").exists()


def test_a_sweep_checks_each_jobs_optimizer_group_before_any_job_runs():
    """trainer.optimizer=adamw as a key leaves t5_span's Adafactor lr: refused in the job, so
    also in the check before the first job (the mlm job ran in full before, then this failed)."""
    from pretrainer.cli import CONF_DIR, _validate_job
    from pretrainer.cli_sweeps import expanded_jobs, invalid_jobs

    jobs = expanded_jobs(CONF_DIR, ["-m", "objective=mlm,t5_span", "trainer.optimizer=adamw"])
    problems = invalid_jobs(CONF_DIR, jobs, _validate_job)
    assert len(problems) == 1, problems
    assert problems[0].startswith("job 2 (objective=t5_span): trainer.optimizer=adamw was set as a key")


def test_a_presets_own_sweep_is_counted_and_without_m_said_to_be_skipped(tmp_path):
    """experiment=mlm_vs_scratch sweeps seed=0,1,2 from its file: -m counts its three jobs;
    without -m the one run says that the sweep was not run."""
    from pretrainer.cli import CONF_DIR
    from pretrainer.cli_sweeps import expanded_jobs

    assert expanded_jobs(CONF_DIR, ["-m", "experiment=mlm_vs_scratch", "trainer.lr=0.01"]) == [
        ["seed=0", "experiment=mlm_vs_scratch", "trainer.lr=0.01"],
        ["seed=1", "experiment=mlm_vs_scratch", "trainer.lr=0.01"],
        ["seed=2", "experiment=mlm_vs_scratch", "trainer.lr=0.01"]]
    assert expanded_jobs(CONF_DIR, ["experiment=mlm_vs_scratch", "seed=5,6"]) == [  # the command line's value wins
        ["seed=5", "experiment=mlm_vs_scratch"], ["seed=6", "experiment=mlm_vs_scratch"]]  # at the param's place
    single = run_cli("train", *TINY, "experiment=mlm_vs_scratch", "trainer.max_steps=2", "finetune=none",
                     "zero_shot.suite=none", "data.num_documents=200", f"hydra.run.dir={tmp_path / 'run'}",
                     cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-2000:]
    assert "this config defines a sweep (seed=0,1,2); without -m one run" in " ".join(single.stderr.split())


def test_cli_sweep_across_families_picks_each_natural_arch_and_writes_one_summary(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("train", "-m", *TINY, *SMALL_DATA, "objective=mlm,clm,t5_span", "finetune.tasks=[topic]",
                     "finetune.scratch_baseline=false", f"hydra.sweep.dir={sweep}", f"cache_dir={tmp_path / 'cache'}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summaries = [json.loads((sweep / str(job) / "summary.json").read_text()) for job in range(3)]
    assert [s["choices"]["arch"] for s in summaries] == ["encoder", "decoder", "encoder_decoder"]
    # runs are named by what the sweep varies, not by every override of the command line
    assert [s["run_name"] for s in summaries] == ["objective=mlm", "objective=clm", "objective=t5_span"]
    table = (sweep / "sweep_summary.md").read_text().splitlines()
    assert "topic (pretrained / scratch)" in table[0] and len(table) == 2 + 3
    assert all(f"objective={name}" in row for name, row in zip(["mlm", "clm", "t5_span"], table[2:], strict=True))
    assert "/ —" in table[2]  # no scratch baseline in this sweep
    assert "sweep summary" in result.stdout
    report = run_cli("report", str(sweep), "--baseline", "clm", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "objective=t5_span" in (sweep / "report.md").read_text() and (sweep / "loss.png").is_file()
    assert run_cli("report", str(tmp_path / "nothing"), cwd=tmp_path).returncode == 2


def test_wandb_logger_writes_an_offline_run_in_the_run_dir(text_corpus, tmp_path):
    result = run_cli("train", *TINY, "logger=wandb", "data=text_files", f"data.paths=[{text_corpus}]",
                     "finetune=none", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


@pytest.mark.parametrize("objective", ["t5_span", "mlm_sop", "electra"])
def test_objectives_with_their_own_bodies_fine_tune_end_to_end(compose_config, tmp_path, objective):
    """Encoder-decoder (classifies from its encoder), token types (pairs as A / B), ELECTRA
    (fine-tunes the discriminator): each pretrains and fine-tunes on a pair task."""
    from tokenizers import Tokenizer

    cfg = compose_config(*SMALL_DATA, f"objective={objective}", "trainer.max_steps=6", "finetune.tasks=[entailment]")
    summary = train(cfg, tmp_path / "run")
    result = summary["finetune"]["entailment"]
    assert 0.0 <= result["pretrained"]["test"]["accuracy"] <= 1.0 and "scratch" in result
    tokenizer = Tokenizer.from_file(str(tmp_path / "run" / "tokenizer" / "tokenizer.json"))
    has_sentinels = tokenizer.token_to_id("<extra_id_0>") is not None
    assert has_sentinels == (objective == "t5_span")
    checkpoint = newest_checkpoint(tmp_path / "run")
    assert any(k.startswith("objective.generator.") for k in checkpoint["model"]) == (objective == "electra")


def test_cli_tokenizer_sweep_prints_one_comparison_table(text_corpus, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("tokenizer", "-m", "tokenizer=bpe,word,unigram", "tokenizer.vocab_size=300", "data=text_files",
                     f"data.paths=[{text_corpus}]", "data.eval_fraction=0.1", 'tokenizer.show="the cat sat"',
                     f"hydra.sweep.dir={sweep}", f"cache_dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    table = (sweep / "sweep_summary.md").read_text().splitlines()
    assert "tokens/word" in table[0] and [row.split(" | ")[2] for row in table[2:]] == ["bpe", "word", "unigram"]
    report = json.loads((sweep / "0" / "tokenizer_report.json").read_text())
    assert report["documents"] == 30 and report["unk_rate"] == 0.0  # every 10th of 300 documents is held out
    assert report["samples"][0]["text"] == "the cat sat" and (sweep / "0" / "tokenizer" / "tokenizer.json").is_file()
    assert not (sweep / "0" / "checkpoints").exists()  # no model was trained


def test_bpe_dropout_changes_only_the_pretraining_segmentation(compose_config, tmp_path):
    plain = train(compose_config("tokenizer=bpe", "finetune=none", "data.num_documents=200"), tmp_path / "plain")
    dropped = train(compose_config("tokenizer=bpe", "tokenizer.bpe_dropout=0.2", "finetune=none",
                                   "data.num_documents=200"), tmp_path / "dropped")
    assert dropped["tokenizer"]["fingerprint"] == plain["tokenizer"]["fingerprint"]  # same saved tokenizer
    assert dropped["data"]["train_blocks"] > plain["data"]["train_blocks"]  # the corpus fell into more pieces


def test_cli_plan_sweep_prints_one_table_without_training(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("plan", "-m", "arch/size=tiny,base", "objective=mlm", "plan.flops_per_s=1e12",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = (sweep / "sweep_summary.md").read_text().splitlines()[2:]
    assert len(rows) == 2 and "arch/size=base" in rows[1]
    base = json.loads((sweep / "1" / "plan.json").read_text())
    assert base["non_embedding_params"] > 80_000_000 and base["wall_time_s"] > 0
    assert not (sweep / "1" / "checkpoints").exists()


def test_cli_export_writes_a_transformers_directory_or_names_the_differing_fields(compose_config, tmp_path):
    pytest.importorskip("transformers")
    run = tmp_path / "run"
    train(compose_config("arch.norm_position=post", "arch.positions=learned", "data.num_documents=200",
                         "finetune=none"), run)
    exported = run_cli("export", str(run), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (run / "hf").iterdir()}
    rotary = tmp_path / "rotary"
    train(compose_config("arch.positions=rotary", "data.num_documents=200", "finetune=none"), rotary)
    refused = run_cli("export", str(rotary), cwd=tmp_path)
    assert refused.returncode == 2 and "arch.positions=rotary" in refused.stderr
    assert "arch.positions=learned" in refused.stderr  # says what to train with instead


def test_debug_fast_runs_every_stage_once(tmp_path, capsys):
    """`pretrainer train debug=fast`: tokenizer, packing, pretraining with evaluation and a
    checkpoint, zero-shot pairs, and fine-tuning of every task, from one override."""
    from tests.faults.conftest import invoke_cli

    run = tmp_path / "run"
    assert invoke_cli("train", "debug=fast", f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}") == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["pretrain"]["steps"] == 20 and len(summary["pretrain"]["eval_losses"]) == 4
    assert list(summary["finetune"]) == ["topic", "sentiment", "agreement", "entailment", "tagging"]
    assert all(result["train_size"] == 32 for result in summary["finetune"].values())
    assert summary["zero_shot"]["pairs"] and set(summary["zero_shot"]["pairs"].values()) == {10}
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt"))  # a checkpoint was written


def test_debug_fast_reads_300_documents_from_any_source(compose_config, text_corpus, tmp_path):
    """Not only the embedded corpus (data.num_documents): a text file or hub dataset is cut too."""
    from pretrainer.data.sources import open_corpus

    big = tmp_path / "big.txt"
    big.write_text(text_corpus.read_text() * 2)  # 600 documents
    cfg = compose_config("debug=fast", "data=text_files", f"data.paths=[{big}]")
    assert sum(1 for _ in open_corpus(cfg.data).documents()) == 300
