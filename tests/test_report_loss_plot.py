"""loss.png: the training loss of metrics.jsonl with the eval points on top, against steps and
against tokens, mean over a configuration's seeds, one row of panels per objective. Checked on the
Figure the report draws (its axes, labels and plotted data), on hand-written run dirs and on a real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pretrainer.pipeline import train
from pretrainer.report import write_report
from pretrainer.report.loss_curves import by_objective, run_losses
from pretrainer.report.plots import loss_figure
from pretrainer.report.runs import find_runs, group_runs, label_configurations, varying_keys
from tests.test_report import MLM, quiet, select, write_run

TOKENS_PER_STEP = 512
TRAIN_STEPS = list(range(10, 101, 10))
EVAL_STEPS = [50, 100]
START = {"mlm": 9.0, "clm": 5.0}  # mlm losses all above 7, clm ones below 5: rows must not share a y-axis


def train_loss(objective: str, seed: int, step: int) -> float:
    return START[objective] - step / 50 + 0.1 * seed


def eval_loss(objective: str, seed: int, step: int) -> float:
    return train_loss(objective, seed, step) + 0.25


def write_metrics(path: Path, objective: str, seed: int) -> None:
    lines = []
    for step in TRAIN_STEPS:
        lines.append({"phase": "pretrain", "step": step, "loss": train_loss(objective, seed, step), "lr": 1e-3,
                      "grad_norm": 1.0, "tokens": step * TOKENS_PER_STEP, "tokens_per_s": 1000.0})
        if step in EVAL_STEPS:
            lines.append({"phase": "pretrain_eval", "step": step, "loss": eval_loss(objective, seed, step),
                          "tokens": step * TOKENS_PER_STEP})
    lines.append({"phase": "finetune", "task": "topic", "init": "pretrained", "seed": seed, "step": 1, "loss": 0.01})
    (path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def fake_run(root: Path, objective: str, seed: int) -> Path:
    evals = [[step, eval_loss(objective, seed, step)] for step in EVAL_STEPS]
    path = write_run(root / f"{objective}{seed}", [f"objective={objective}", f"seed={seed}"], select(MLM, [seed]),
                     eval_losses=evals, tokens=100 * TOKENS_PER_STEP)
    summary = json.loads((path / "summary.json").read_text())
    summary["choices"]["objective"] = objective
    summary["pretrain"]["steps"] = TRAIN_STEPS[-1]
    (path / "summary.json").write_text(json.dumps(summary))
    write_metrics(path, objective, seed)
    return path


def configurations(root: Path):
    configs = group_runs(find_runs([root]))
    label_configurations(configs, varying_keys(configs))
    return configs


def lines_of(axes) -> tuple[list, list]:
    """(training lines, eval lines) of one panel: the eval line is the one with markers."""
    lines = axes.get_lines()
    return [line for line in lines if line.get_marker() in ("None", None, "")], \
        [line for line in lines if line.get_marker() == "o"]


@pytest.fixture
def two_objectives(tmp_path) -> Path:
    for objective in ("mlm", "clm"):
        for seed in (0, 1):
            fake_run(tmp_path, objective, seed)
    return tmp_path


def test_one_row_per_objective_against_steps_and_tokens(two_objectives):
    figure = loss_figure(configurations(two_objectives))
    assert len(figure.axes) == 4  # 2 objectives x (steps, tokens)
    rows = {row[0].get_ylabel(): row for row in (figure.axes[0:2], figure.axes[2:4])}
    assert set(rows) == {"mlm loss", "clm loss"}
    for objective in ("mlm", "clm"):
        row = rows[f"{objective} loss"]
        assert [axes.get_xlabel() for axes in row] == ["step", "tokens seen"]
        assert all(axes.get_title().startswith(f"{objective}:") for axes in row)
        for axes, scale in zip(row, (1, TOKENS_PER_STEP), strict=True):
            (train_line,), (eval_line,) = lines_of(axes)
            assert list(train_line.get_xdata()) == [step * scale for step in TRAIN_STEPS]
            assert list(train_line.get_ydata()) == pytest.approx(
                [np.mean([train_loss(objective, seed, step) for seed in (0, 1)]) for step in TRAIN_STEPS])
            assert list(eval_line.get_xdata()) == [step * scale for step in EVAL_STEPS]
            assert list(eval_line.get_ydata()) == pytest.approx(
                [np.mean([eval_loss(objective, seed, step) for seed in (0, 1)]) for step in EVAL_STEPS])
    assert rows["mlm loss"][0].get_ylim()[0] > 5 and rows["clm loss"][0].get_ylim()[1] < 7  # each row its own scale
    title = figure.get_suptitle()
    assert "mean over 2 runs" in title and "logged every 10 steps" in title


def test_a_single_objective_is_one_row(tmp_path):
    for seed in (0, 1, 2):
        fake_run(tmp_path, "mlm", seed)
    figure = loss_figure(configurations(tmp_path))
    assert len(figure.axes) == 2
    assert [axes.get_xlabel() for axes in figure.axes] == ["step", "tokens seen"]
    (train_line,), _ = lines_of(figure.axes[0])
    assert train_line.get_ydata()[-1] == pytest.approx(np.mean([train_loss("mlm", s, 100) for s in (0, 1, 2)]))
    assert "mean over 3 runs" in figure.get_suptitle()


def test_resumed_and_crashed_lines(tmp_path):
    """A step logged twice keeps its last line (the resumed run), a null loss drops its step, a cut line is skipped."""
    path = fake_run(tmp_path, "mlm", 0)
    with (path / "metrics.jsonl").open("a") as out:
        out.write(json.dumps({"phase": "pretrain", "step": 90, "loss": 1.5, "tokens": 90 * TOKENS_PER_STEP}) + "\n")
        out.write(json.dumps({"phase": "pretrain", "step": 100, "loss": None, "tokens": 100 * TOKENS_PER_STEP}) + "\n")
        out.write('{"phase": "pretrain", "step": 110, "lo')
    run = find_runs([path])[0]
    train_points, eval_points = run_losses(run)
    assert sorted(train_points) == TRAIN_STEPS[:-1]
    assert train_points[90] == (90 * TOKENS_PER_STEP, 1.5)
    assert sorted(eval_points) == EVAL_STEPS


def test_runs_without_metrics_file_plot_the_summary_eval_points(tmp_path):
    for objective in ("mlm", "clm"):
        (fake_run(tmp_path, objective, 0) / "metrics.jsonl").unlink()
    groups = by_objective(configurations(tmp_path))
    assert sorted(groups) == ["clm", "mlm"]
    curves = groups["mlm"][0]
    assert curves.train is None
    assert curves.eval.steps == EVAL_STEPS and curves.eval.tokens == [s * TOKENS_PER_STEP for s in EVAL_STEPS]
    figure = loss_figure(configurations(tmp_path))
    assert len(figure.axes) == 4 and lines_of(figure.axes[0])[0] == []


def test_report_writes_loss_png_and_drops_the_retired_eval_loss_png(two_objectives):
    from PIL import Image

    (two_objectives / "eval_loss.png").write_bytes(b"an earlier report's plot")
    result = write_report([two_objectives], console=quiet())
    assert two_objectives / "loss.png" in result.plots
    assert not (two_objectives / "eval_loss.png").exists()
    with Image.open(two_objectives / "loss.png") as image:
        assert image.size[0] > 800 and image.size[1] > 500


def test_a_real_run_is_read_from_its_metrics(compose_config, tmp_path):
    """The record keys the training loop writes: every step (log_every=1), evals every 2 steps."""
    cfg = compose_config("finetune.tasks=[]")
    train(cfg, tmp_path / "run")
    run = find_runs([tmp_path / "run"])[0]
    train_points, eval_points = run_losses(run)
    per_step = cfg.trainer.batch_size * cfg.data.block_size
    assert sorted(train_points) == [1, 2, 3, 4] and sorted(eval_points) == [2, 4]
    assert [train_points[step][0] for step in (1, 2, 3, 4)] == [step * per_step for step in (1, 2, 3, 4)]
    summary_evals = dict(run.pretrain["eval_losses"])
    assert {step: loss for step, (_, loss) in eval_points.items()} == pytest.approx(summary_evals)
    figure = loss_figure(configurations(tmp_path))
    assert len(figure.axes) == 2 and cfg.objective.name in figure.axes[0].get_title()
