"""Downstream metrics, computed by scikit-learn and scipy (never by hand).

`task_metrics(names, labels, predictions)` returns the named scores; for tagging, labels
and predictions are flattened word-level tags. The first name of a task's `metrics` is
its dev-selection metric. `glue_score` averages a task's metrics when it has two (MRPC,
QQP, STS-B), as the GLUE leaderboard does; `glue_average` is the mean over tasks.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def _correlation(function, labels: np.ndarray, predictions: np.ndarray) -> float:
    if np.std(labels) == 0 or np.std(predictions) == 0:
        return 0.0  # undefined for a constant series: count it as no correlation
    return float(function(labels, predictions)[0])


METRICS = {
    "accuracy": lambda y, p: float(accuracy_score(y, p)),
    "f1": lambda y, p: float(f1_score(y, p, average="binary", pos_label=1, zero_division=0)),
    "macro_f1": lambda y, p: float(f1_score(y, p, average="macro", zero_division=0)),
    "mcc": lambda y, p: float(matthews_corrcoef(y, p)),
    "pearson": lambda y, p: _correlation(pearsonr, y, p),
    "spearman": lambda y, p: _correlation(spearmanr, y, p),
}


def task_metrics(names: tuple[str, ...] | list[str], labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
    return {name: METRICS[name](labels, predictions) for name in names}


def glue_score(metrics: dict[str, float], names: tuple[str, ...] | list[str]) -> float:
    """One number per task: the mean of its official metrics."""
    return float(np.mean([metrics[name] for name in names]))


def glue_average(per_task: dict[str, float]) -> float:
    return float(np.mean(list(per_task.values())))
