"""Shortening a run keeps it meaningful: warm-up and evaluation intervals follow the budget
unless set, and a run that ends inside warm-up or with fewer than 3 evaluations says so."""

from __future__ import annotations

import json

from pretrainer.config import TrainerConfig


def test_the_default_intervals_scale_with_the_budget_and_keep_the_demos():
    cfg = TrainerConfig(warmup_ratio=0.0833, evals_per_run=4)
    assert (cfg.warmup_for(1200), cfg.eval_interval(1200)) == (100, 300)  # the demo's schedule, as before
    assert (cfg.warmup_for(100), cfg.eval_interval(100)) == (8, 25)
    assert (cfg.warmup_for(3), cfg.eval_interval(3)) == (0, 1)
    fixed = TrainerConfig(warmup_steps=50, eval_every=7)
    assert (fixed.warmup_for(100), fixed.eval_interval(100)) == (50, 7)  # given numbers win


def run(compose_config, tmp_path, capsys, *overrides):
    from pretrainer.pipeline import train

    capsys.readouterr()
    train(compose_config("finetune=none", "zero_shot.suite=none", "data.num_documents=200", *overrides,
                         tiny=False), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return " ".join(capsys.readouterr().err.split()), records


def test_a_shortened_default_run_warms_up_and_evaluates_within_its_budget(compose_config, tmp_path, capsys):
    err, records = run(compose_config, tmp_path, capsys, "trainer.max_steps=40", "arch.n_layer=1",
                       "arch.d_model=32", "arch.n_head=2", "arch.d_ff=64")
    evals = [r["step"] for r in records if r.get("phase") == "pretrain_eval"]
    assert evals[:3] == [10, 20, 30] and "warm-up" not in err and "evaluation(s)" not in err
    lrs = [r["lr"] for r in records if r.get("phase") == "pretrain" and "lr" in r]
    assert max(lrs) > 0.9 * 2e-3  # the peak is reached (warm-up: 3 of 40 steps)


def test_intervals_that_do_not_fit_the_run_are_warned_about(compose_config, tmp_path, capsys):
    err, _ = run(compose_config, tmp_path, capsys, "trainer.max_steps=20", "trainer.warmup_steps=100",
                 "trainer.eval_every=300", "arch.n_layer=1", "arch.d_model=32", "arch.n_head=2", "arch.d_ff=64")
    assert "the run ends inside warm-up (100 warm-up steps of 20)" in err
    assert "1 evaluation(s) in 20 steps (trainer.eval_every=300)" in err
