"""The zero-shot minimal-pair accuracies in the report: one table row per configuration
(mean ± std over its runs, per phenomenon) and CSV columns; `plots.plot_zero_shot` draws them,
and `plots.plot_zero_shot_curve` the curves of runs that scored them during pretraining
(zero_shot.every)."""

from __future__ import annotations

import math
from typing import Any

from pretrainer.report.runs import Configuration

CHANCE = 0.5


def phenomena(configs: list[Configuration]) -> list[str]:
    """Every phenomenon scored by some run, in order of first appearance, then the mean."""
    names = [name for config in configs for run in config.runs
             for name in ((run.summary.get("zero_shot") or {}).get("phenomena") or {})]
    return list(dict.fromkeys(names)) + (["mean"] if names else [])


def _accuracy(results: dict[str, Any], name: str) -> float | None:
    """A phenomenon's accuracy in a result or a curve point ("mean": their mean), None if not scored."""
    return results.get("mean") if name == "mean" else (results.get("phenomena") or {}).get(name)


def accuracies(config: Configuration, name: str) -> list[float]:
    """One accuracy per run of the configuration ("mean": the run's mean over its phenomena)."""
    values = []
    for run in config.runs:
        value = _accuracy(run.summary.get("zero_shot") or {}, name)
        if value is not None:
            values.append(float(value))
    return values


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def table_rows(configs: list[Configuration], varying: list[str], names: list[str]) -> list[list[str]]:
    rows = []
    for config in configs:
        row = [str(config.index), *[config.overrides.get(key, "(default)") for key in varying],
               str(max((len(accuracies(config, name)) for name in names), default=0))]
        for name in names:
            mean, std = mean_std(accuracies(config, name))
            row.append("—" if mean is None else f"{mean:.3f}" + ("" if std is None else f" ± {std:.3f}"))
        rows.append(row)
    return rows


def csv_columns(config: Configuration, names: list[str]) -> dict[str, Any]:
    columns = {}
    for name in names:
        mean, std = mean_std(accuracies(config, name))
        columns |= {f"zero_shot_{name}_mean": mean, f"zero_shot_{name}_std": std}
    return columns


def curve(config: Configuration, name: str) -> list[tuple[int, float, float]]:
    """(tokens seen, mean, std) over the configuration's runs at each point of their zero-shot
    curves (summary.json's zero_shot.curve) that every one of those runs scored; [] without curves."""
    by_tokens: dict[int, list[float]] = {}
    runs = 0
    for run in config.runs:
        points = (run.summary.get("zero_shot") or {}).get("curve") or []
        if not points:
            continue
        runs += 1
        for point in points:
            value = _accuracy(point, name)
            if value is not None:
                by_tokens.setdefault(int(point["tokens"]), []).append(float(value))
    rows = []
    for tokens, values in sorted(by_tokens.items()):
        if len(values) == runs:
            mean, std = mean_std(values)
            rows.append((tokens, mean, std or 0.0))
    return rows
