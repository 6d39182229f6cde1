"""The pretraining loss curves of the report: per configuration the training loss of every
logged step (`metrics.jsonl`, phase `pretrain`, every `trainer.log_every` steps) and the eval
losses (phase `pretrain_eval`), each at its step and token count, averaged over the
configuration's runs; grouped by objective, whose losses are not comparable with each other.
`plots.loss_figure` draws them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from pretrainer.report.runs import Configuration, Run

Point = tuple[float, float]  # (tokens seen, loss) at one step


@dataclass
class LossCurve:
    """One configuration's loss at the steps all of its runs logged: mean, min and max over the runs."""

    steps: list[int]
    tokens: list[float]  # tokens seen at each step (mean over the runs, which agree unless the batch differs)
    mean: list[float]
    low: list[float]
    high: list[float]
    runs: int


@dataclass
class ConfigCurves:
    config: Configuration
    train: LossCurve | None
    eval: LossCurve | None


def run_losses(run: Run) -> tuple[dict[int, Point], dict[int, Point]]:
    """(train, eval) of one run, each step -> (tokens, loss), read from its metrics.jsonl.

    A step logged twice (a resumed run logs again the steps after its checkpoint) keeps its
    last line; a non-finite loss (written as null) leaves its step out. A run whose
    metrics.jsonl is missing or has no eval lines takes the eval points from summary.json's
    `eval_losses`, at step × tokens per step (the batch is the same every step).
    """
    train: dict[int, Point] = {}
    evals: dict[int, Point] = {}
    path = run.path / "metrics.jsonl"
    for record in _records(path) if path.is_file() else []:
        points = {"pretrain": train, "pretrain_eval": evals}.get(record.get("phase"))
        step, tokens, loss = record.get("step"), record.get("tokens"), record.get("loss")
        if points is None or not isinstance(step, int) or not isinstance(tokens, (int, float)):
            continue
        if isinstance(loss, (int, float)):
            points[step] = (float(tokens), float(loss))
        else:
            points.pop(step, None)
    return train, evals or _summary_evals(run)


def _records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a metrics.jsonl; a line cut short by a crash is skipped."""
    records = []
    with path.open() as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def _summary_evals(run: Run) -> dict[int, Point]:
    steps, tokens = run.pretrain.get("steps"), run.pretrain.get("tokens")
    per_step = tokens / steps if steps and tokens else float("nan")
    return {int(step): (int(step) * per_step, float(loss))
            for step, loss in run.pretrain.get("eval_losses") or [] if loss is not None}


def mean_curve(per_run: list[dict[int, Point]]) -> LossCurve | None:
    """The curve of the runs that logged anything, at the steps all of them logged (a run cut
    short shortens the curve rather than making it jump where its values drop out of the mean)."""
    per_run = [points for points in per_run if points]
    if not per_run:
        return None
    steps = sorted(set.intersection(*(set(points) for points in per_run)))
    if not steps:
        return None
    losses = [[points[step][1] for points in per_run] for step in steps]
    return LossCurve(steps=steps, tokens=[fmean([points[step][0] for points in per_run]) for step in steps],
                     mean=[fmean(values) for values in losses], low=[min(values) for values in losses],
                     high=[max(values) for values in losses], runs=len(per_run))


def config_curves(config: Configuration) -> ConfigCurves:
    losses = [run_losses(run) for run in config.runs]
    return ConfigCurves(config, mean_curve([train for train, _ in losses]), mean_curve([evals for _, evals in losses]))


def objective(config: Configuration) -> str:
    """The pretraining objective of a configuration's runs (summary.json's `choices`, else the override)."""
    names = {(run.summary.get("choices") or {}).get("objective") or config.overrides.get("objective")
             for run in config.runs}
    return "/".join(sorted(name for name in names if name)) or "unknown objective"


def by_objective(configs: list[Configuration]) -> dict[str, list[ConfigCurves]]:
    """Objective -> the curves of its configurations that have any, in order of first appearance."""
    groups: dict[str, list[ConfigCurves]] = {}
    for config in configs:
        curves = config_curves(config)
        if curves.train or curves.eval:
            groups.setdefault(objective(config), []).append(curves)
    return groups


def log_every(groups: dict[str, list[ConfigCurves]]) -> int | None:
    """The smallest gap between two logged training steps: `trainer.log_every` as the runs used it."""
    gaps = [b - a for members in groups.values() for curves in members if curves.train
            for a, b in zip(curves.train.steps, curves.train.steps[1:], strict=False)]
    return min(gaps, default=None)
