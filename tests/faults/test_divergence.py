"""Non-finite losses and gradients: `trainer.nonfinite=fail` stops with the last good state saved,
`skip` drops the step (weights, optimizer moments and lr unchanged) and fails after too many in a
row; summaries and metrics stay valid JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pretrainer.errors import DivergenceError
from pretrainer.loggers import write_summary
from pretrainer.pipeline import train
from pretrainer.training.checkpoint import load_checkpoint
from pretrainer.training.loop import PretrainingModel
from tests.faults.conftest import RUN, assert_one_line_error, finished_run


def strict_json(path: Path):
    """json.loads that refuses NaN / Infinity, as every other JSON reader does."""
    return json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{path} holds {name}"))


def inject_nonfinite(monkeypatch, steps: set[int], where: str) -> None:
    """Make the training forward of each step in `steps` (1-based) produce a NaN loss, or a
    finite loss whose gradient is NaN."""
    real_forward = PretrainingModel.forward
    calls = {"n": 0}

    def forward(self, batch):
        out = real_forward(self, batch)
        if not self.training:
            return out
        calls["n"] += 1
        if calls["n"] in steps:
            if where == "loss":
                out.loss = out.loss * math.nan
            else:
                weight = self.body.tok_emb.weight
                handle = weight.register_hook(lambda grad: (handle.remove(), grad * math.nan)[1])
        return out

    monkeypatch.setattr(PretrainingModel, "forward", forward)


def step_payload(run_dir: Path, step: int) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / f"step_{step:08d}.pt")


def assert_same_state(a: dict, b: dict) -> None:
    """Weights, optimizer moments, lr schedule, RNG and train state (timings aside) are equal."""
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for param, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][param][name]), (param, name)
    assert a["scheduler"] == b["scheduler"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert {k: v for k, v in a["train_state"].items() if k != "train_time_s"} == \
        {k: v for k, v in b["train_state"].items() if k != "train_time_s"}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, shared_cache) -> Path:
    """RUN without faults, checkpointed after every step."""
    return finished_run(tmp_path_factory, shared_cache, "clean", "trainer.checkpoint_every=1",
                        "trainer.keep_checkpoints=20")


@pytest.mark.parametrize("where, message", [("loss", "non-finite loss"), ("grad", "non-finite gradient norm")])
def test_fail_saves_the_state_before_the_bad_step_and_stops(where, message, run_config, monkeypatch, clean_run,
                                                            tmp_path):
    inject_nonfinite(monkeypatch, {5}, where)
    run_dir = tmp_path / "run"
    with pytest.raises(DivergenceError, match=f"{message} .* at step 5") as error:
        train(run_config(), run_dir)
    assert error.value.exit_code == 3 and "step_00000004.pt" in str(error.value)
    assert_same_state(step_payload(run_dir, 4), step_payload(clean_run, 4))
    assert not (run_dir / "checkpoints" / "step_00000005.pt").exists()
    summary = strict_json(run_dir / "summary.json")
    assert summary["status"] == "diverged" and "step 5" in summary["error"] and summary["finetune"] == {}


def test_skip_leaves_weights_moments_and_lr_unchanged(run_config, monkeypatch, clean_run, tmp_path):
    inject_nonfinite(monkeypatch, {5}, "loss")
    run_dir = tmp_path / "run"
    summary = train(run_config("trainer.nonfinite=skip", "trainer.checkpoint_every=1", "trainer.keep_checkpoints=20"),
                    run_dir)
    assert summary["pretrain"]["steps"] == 8 and summary["pretrain"]["skipped_steps"] == [5]
    before, after = step_payload(run_dir, 4), step_payload(run_dir, 5)
    for key, value in before["model"].items():
        assert torch.equal(value, after["model"][key]), key
    for param, state in before["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, after["optimizer"]["state"][param][name]), (param, name)
    assert before["scheduler"]["last_epoch"] == after["scheduler"]["last_epoch"] == 4  # lr did not advance
    assert_same_state(before, step_payload(clean_run, 4))
    embedding = "body.tok_emb.weight"
    assert not torch.equal(after["model"][embedding], step_payload(run_dir, 6)["model"][embedding])  # step 6 applied
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    step5 = next(r for r in lines if r["phase"] == "pretrain" and r["step"] == 5)
    assert step5["loss"] is None  # NaN is written as null: the log stays strict JSON
    strict_json(run_dir / "summary.json")


def test_skip_fails_after_max_skips_in_a_row(run_config, monkeypatch, clean_run, tmp_path):
    inject_nonfinite(monkeypatch, {3, 4, 5, 6}, "loss")
    run_dir = tmp_path / "run"
    with pytest.raises(DivergenceError, match=r"at step 5 \(3 in a row, more than trainer.max_skips=2\)"):
        train(run_config("trainer.nonfinite=skip", "trainer.max_skips=2"), run_dir)
    saved = step_payload(run_dir, 4)  # the state before step 5: steps 3 and 4 skipped, step 5 not yet
    assert saved["train_state"]["skipped_steps"] == [3, 4] and saved["train_state"]["consecutive_skips"] == 2
    for key, value in step_payload(clean_run, 2)["model"].items():  # nothing applied since step 2
        assert torch.equal(value, saved["model"][key]), key


def test_a_diverging_cli_run_exits_3_with_a_valid_summary(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", *RUN, "trainer.lr=1e4", f"hydra.run.dir={run_dir}")
    # warnings=1: the 8-step preset evaluates twice and says so (fewer than 3 evaluations)
    assert_one_line_error(result, 3, "pretraining diverged", "resume_allow_changes=[trainer.lr]", warnings=1)
    summary = strict_json(run_dir / "summary.json")
    assert summary["status"] == "diverged" and summary["pretrain"]["final_eval_loss"] is None
    refused = run_cli("train", *RUN, "trainer.lr=2e-3", "resume=true", f"hydra.run.dir={run_dir}")
    assert_one_line_error(refused, 2, "resume refused", "trainer.lr (10000.0 -> 0.002)")


def test_non_finite_summary_values_become_null_with_the_reason(tmp_path):
    class NoLogger:
        def summarize(self, summary):
            self.summary = summary

    logger = NoLogger()
    write_summary(tmp_path, {"pretrain": {"final_eval_loss": math.nan}, "scores": [1.0, math.inf]}, logger)
    summary = strict_json(tmp_path / "summary.json")
    assert summary["pretrain"]["final_eval_loss"] is None and summary["scores"] == [1.0, None]
    assert summary["nonfinite"] == {"pretrain/final_eval_loss": "nan", "scores/1": "inf"}
    assert logger.summary == summary


def test_a_rerun_sweep_still_reports_its_diverged_job(run_cli, tmp_path):
    command = ["train", "-m", *RUN, "trainer.lr=2e-3,1e4", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    first = run_cli(*command)
    assert first.code == 1 and "1 job(s) of the sweep failed" in first.stderr
    again = run_cli(*command)
    assert again.code == 1, again.stderr[-2000:]
    assert "already diverged" in again.stderr and "already completed" in again.stdout
