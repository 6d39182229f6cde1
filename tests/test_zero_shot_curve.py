"""zero_shot.every: the minimal pairs scored during pretraining (a curve of when the model
learns each phenomenon), kept across a resume, left out of training itself, and drawn by
the report."""

from __future__ import annotations

import json

import pytest
import torch

from pretrainer.config import ConfigError
from pretrainer.evaluation.minimal_pairs import pair_accuracies, pair_suite
from pretrainer.evaluation.run import load_scorer, run_pairs
from pretrainer.pipeline import train
from pretrainer.training import loop
from tests.test_pipeline import SMALL_DATA, newest_checkpoint, read_jsonl
from tests.test_report import MLM, quiet, write_run

# Dropout on: a probe that left the model in eval mode would change the training that follows.
RUN = [*SMALL_DATA, "finetune=none", "trainer.max_steps=6", "trainer.eval_every=3", "trainer.checkpoint_every=2",
       "trainer.keep_checkpoints=5", "arch.dropout=0.1"]


def curve_of(run_dir) -> list[dict]:
    return json.loads((run_dir / "summary.json").read_text())["zero_shot"]["curve"]


def test_curve_points_are_the_checkpoints_scores_and_leave_training_unchanged(compose_config, tmp_path):
    cfg = compose_config(*RUN, "zero_shot.every=2")
    summary = train(cfg, tmp_path / "curve")
    train(compose_config(*RUN), tmp_path / "plain")

    records = read_jsonl(tmp_path / "curve" / "metrics.jsonl")
    plain = read_jsonl(tmp_path / "plain" / "metrics.jsonl")
    losses = [(r["step"], r["loss"]) for r in records if r["phase"] in ("pretrain", "pretrain_eval")]
    assert losses == [(r["step"], r["loss"]) for r in plain]  # scoring draws no randomness and changes no weight
    weights = [newest_checkpoint(tmp_path / run)["model"] for run in ("curve", "plain")]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[1])
    assert "curve" not in json.loads((tmp_path / "plain" / "summary.json").read_text())["zero_shot"]

    curve = summary["zero_shot"]["curve"]
    assert [(p["step"], p["tokens"]) for p in curve] == [(s, s * 8 * 32) for s in (2, 4, 6)]
    assert curve[-1]["phenomena"] == summary["zero_shot"]["phenomena"]  # the last point is the final evaluation
    logged = [r for r in records if r["phase"] == "zero_shot"]
    assert [r["step"] for r in logged] == [2, 4]
    assert {k: v for k, v in logged[0].items() if k not in ("phase", "step", "tokens", "mean")} == curve[0]["phenomena"]

    # Each point is what scoring that step's checkpoint gives (the probe saw the weights of that step).
    suite = pair_suite(cfg.zero_shot, cfg.data.source, cfg.data.seed)
    for point in curve[:2]:
        checkpoint = tmp_path / "curve" / "checkpoints" / f"step_{point['step']:08d}.pt"
        scorer, tokenizer, _, _ = load_scorer(str(checkpoint), torch.device("cpu"))
        assert pair_accuracies(scorer, tokenizer, suite, torch.device("cpu"))["phenomena"] == point["phenomena"]


def test_a_resumed_run_keeps_the_points_before_it_and_scores_none_twice(compose_config, tmp_path, monkeypatch):
    train(compose_config(*RUN, "zero_shot.every=2"), tmp_path / "straight")
    cfg = compose_config(*RUN, "zero_shot.every=2", "resume=true")
    run_dir = tmp_path / "interrupted"
    real_step = loop._optimizer_step

    def crash_at_step_5(*args, **kwargs):
        if args[-1] == 4:  # the step argument: the checkpoint of step 4, and its point, are written
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "_optimizer_step", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run_dir)
    monkeypatch.setattr(loop, "_optimizer_step", real_step)
    train(cfg, run_dir)

    assert curve_of(run_dir) == curve_of(tmp_path / "straight")
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["phase"] == "zero_shot"] == [2, 4]


def test_a_run_that_does_not_end_on_the_interval_ends_its_curve_with_the_final_point(compose_config, tmp_path,
                                                                                     capsys):
    assert [p["step"] for p in train(compose_config(*RUN, "zero_shot.every=4"), tmp_path / "a")["zero_shot"]["curve"]] \
        == [4, 6]
    assert [p["step"] for p in train(compose_config(*RUN, "zero_shot.every=6"), tmp_path / "b")["zero_shot"]["curve"]] \
        == [6]
    assert "no point before the end" in capsys.readouterr().err


def test_bad_zero_shot_every_is_refused_before_any_work(compose_config, tmp_path):
    with pytest.raises(ConfigError, match="zero_shot.every must be >= 0"):
        compose_config("zero_shot.every=-1")
    with pytest.raises(ConfigError, match="no minimal pairs to score"):
        train(compose_config(*RUN, "zero_shot.every=2", "zero_shot.suite=none"), tmp_path / "run")
    assert not (tmp_path / "run" / "tokenizer").exists()  # refused before the tokenizer and the corpus
    fsdp = compose_config("zero_shot.every=2", "trainer.parallel=fsdp")
    with pytest.raises(ConfigError, match="use trainer.parallel=ddp"):
        run_pairs(fsdp, distributed=True)
    run_pairs(fsdp, distributed=False)  # one process holds the whole model
    run_pairs(compose_config("zero_shot.suite=none"), distributed=True)  # no curve asked for


def write_curve_run(path, objective: str, seed: int, points: dict[int, float]) -> None:
    """A run whose summary holds a zero-shot curve: tokens -> agreement accuracy."""
    run = write_run(path, [f"objective={objective}", f"seed={seed}"], MLM)
    summary = json.loads((run / "summary.json").read_text())
    curve = [{"step": tokens // 100, "tokens": tokens, "phenomena": {"agreement": value}, "mean": value}
             for tokens, value in points.items()]
    summary["zero_shot"] = {"phenomena": curve[-1]["phenomena"], "pairs": {"agreement": 100}, "mean": curve[-1]["mean"],
                            "curve": curve}
    (run / "summary.json").write_text(json.dumps(summary))


def test_report_draws_the_curves_mean_over_seeds_at_shared_points(tmp_path):
    from pretrainer.report import write_report
    from pretrainer.report.zero_shot import curve

    write_curve_run(tmp_path / "mlm-0", "mlm", 0, {1000: 0.5, 2000: 0.7, 3000: 0.9})
    write_curve_run(tmp_path / "mlm-1", "mlm", 1, {1000: 0.6, 2000: 0.8})  # stopped early: 3000 is not shared
    write_curve_run(tmp_path / "clm-0", "clm", 0, {1000: 0.8, 3000: 0.95})
    result = write_report([tmp_path], console=quiet())
    by_objective = {config.overrides["objective"]: config for config in result.configurations}
    mlm = curve(by_objective["mlm"], "agreement")
    assert [tokens for tokens, _, _ in mlm] == [1000, 2000]
    assert mlm[0][1] == pytest.approx(0.55) and mlm[0][2] == pytest.approx(0.0707, abs=1e-4)
    assert curve(by_objective["clm"], "agreement") == [(1000, 0.8, 0.0), (3000, 0.95, 0.0)]
    assert "zero_shot_curve.png" in {p.name for p in result.plots}


def test_report_without_curves_says_why_there_is_no_curve_plot(tmp_path):
    from pretrainer.report import write_report

    write_run(tmp_path / "run", ["objective=mlm"], MLM)
    (tmp_path / "zero_shot_curve.png").write_bytes(b"an earlier report's plot")
    result = write_report([tmp_path], console=quiet())
    assert "zero_shot_curve.png" not in {p.name for p in result.plots}
    assert not (tmp_path / "zero_shot_curve.png").exists()
    assert any("zero_shot.every=0" in note for note in result.notes)


def test_a_blimp_phenomenon_may_not_take_a_results_key(tmp_path):
    from pretrainer.config import ZeroShotConfig
    from pretrainer.evaluation.minimal_pairs import PairFileError

    path = tmp_path / "mean.jsonl"
    path.write_text(json.dumps({"sentence_good": "dogs ran .", "sentence_bad": "ran dogs ."}) + "\n")
    with pytest.raises(PairFileError, match="'mean' is reserved"):
        pair_suite(ZeroShotConfig(suite="none", blimp_files=[str(path)]), "none", 0)
