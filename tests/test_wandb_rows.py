"""What reaches wandb: charts against the record's own step, a job type, sweep run names."""

from __future__ import annotations

import sys
import types

from pretrainer.config import LoggerConfig
from pretrainer.loggers import RunLogger, wandb_row


class FakeRun:
    def __init__(self):
        self.logged, self.metrics, self.summary, self.finished = [], [], {}, False

    def define_metric(self, name, step_metric=None):
        self.metrics.append((name, step_metric))

    def log(self, values):
        self.logged.append(values)

    def finish(self):
        self.finished = True


def test_history_rows_carry_the_step_and_tokens_as_their_x_axis(tmp_path, monkeypatch):
    run, inits = FakeRun(), []
    fake = types.SimpleNamespace(init=lambda **kwargs: inits.append(kwargs) or run)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    with RunLogger(tmp_path, LoggerConfig(name="wandb"), "objective=clm", {}, job_type="finetune") as logger:
        logger.log({"phase": "pretrain", "step": 10, "loss": 5.0, "tokens": 2560, "lr": 1e-3})
        logger.log({"phase": "pretrain", "step": 20, "loss": 4.0, "tokens": 5120, "lr": 2e-3})
        logger.log({"phase": "finetune", "task": "topic", "init": "scratch", "seed": 0, "step": 1, "loss": 2.0})
    assert inits[0]["job_type"] == "finetune" and inits[0]["name"] == "objective=clm"
    assert run.logged[1] == {"pretrain/step": 20, "pretrain/loss": 4.0, "pretrain/tokens": 5120, "pretrain/lr": 2e-3}
    assert run.logged[2]["finetune/topic/scratch/step"] == 1
    assert run.metrics == [("pretrain/step", None), ("pretrain/*", "pretrain/step"),  # once per chart group
                           ("finetune/topic/scratch/step", None),
                           ("finetune/topic/scratch/*", "finetune/topic/scratch/step")]
    assert run.finished


def test_a_row_keeps_numbers_only():
    prefix, values = wandb_row({"phase": "pretrain_eval", "step": 300, "eval_loss": 3.9, "note": "x", "ok": True})
    assert prefix == "pretrain_eval" and values == {"pretrain_eval/step": 300, "pretrain_eval/eval_loss": 3.9}


def test_without_a_terminal_progress_is_a_line_with_eta_at_an_interval(monkeypatch, capsys):
    from pretrainer import loggers

    monkeypatch.setattr(loggers.ProgressBar, "LINE_EVERY_S", 0.0)  # every update, for the test
    bar = loggers.ProgressBar("pretrain", 10)
    assert bar._plain  # pytest's captured output is not a terminal
    bar.update(5, loss=4.25)
    bar.advance(5)
    bar.close()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pretrain ")]
    assert lines[0].startswith("pretrain 5/10 (50%)  loss 4.250  elapsed 0:00:00  ETA 0:00:0")
    assert lines[1].startswith("pretrain 10/10 (100%)") and "ETA 0:00:00" in lines[1]


def test_a_resumed_bar_does_not_count_earlier_steps_as_done_in_no_time(monkeypatch, capsys):
    from pretrainer import loggers

    monkeypatch.setattr(loggers.ProgressBar, "LINE_EVERY_S", 0.0)
    bar = loggers.ProgressBar("pretrain", 6000, start=5000)  # resumed at step 5000
    bar.update(5000)
    bar.close()
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("pretrain 5000/6000"))
    assert line.endswith("ETA ?")  # no step timed yet: no estimate, not "ETA 0:00:00"
