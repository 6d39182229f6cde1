"""Differences between configurations with 95% bootstrap confidence intervals over seeds.

Why a percentile bootstrap: with three to five seeds a t-interval leans on normality that
fine-tuning scores (bounded, sometimes bimodal when a seed fails) do not have. Each
interval draws from a fresh generator with the same seed, so a report is reproducible and
no number depends on the order in which the comparisons were computed.

Pairing: two configurations fine-tuned with the same seeds share the task sample, head
init and data order per seed, so the per-seed differences cancel that noise (paired
bootstrap). With different seed sets the seeds are independent draws: the bootstrap then
resamples each side on its own (unpaired). One seed gives no interval at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pretrainer.report.runs import Configuration, Scores

RESAMPLES = 10_000
RNG_SEED = 0
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Difference:
    """estimate = mean(a) - mean(b), with its bootstrap interval when one is defined."""

    estimate: float
    low: float | None
    high: float | None
    paired: bool
    n_a: int
    n_b: int  # for a paired difference: the number of pairs, as n_a
    note: str = ""  # why there is no interval

    @property
    def excludes_zero(self) -> bool | None:
        """Whether the interval lies wholly on one side of zero (None without an interval)."""
        if self.low is None or self.high is None:
            return None
        return self.low > 0 or self.high < 0


def bootstrap_paired(differences: Sequence[float]) -> tuple[float, float]:
    """Percentile interval of the mean per-seed difference, resampling seeds (pairs) with replacement."""
    d = np.asarray(differences, dtype=float)
    rng = np.random.default_rng(RNG_SEED)
    index = rng.integers(0, len(d), size=(RESAMPLES, len(d)))
    return _percentile_interval(d[index].mean(axis=1))


def bootstrap_unpaired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Percentile interval of mean(a) - mean(b), resampling each side independently."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(RNG_SEED)
    index_a = rng.integers(0, len(x), size=(RESAMPLES, len(x)))
    index_b = rng.integers(0, len(y), size=(RESAMPLES, len(y)))
    return _percentile_interval(x[index_a].mean(axis=1) - y[index_b].mean(axis=1))


def _percentile_interval(statistics: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(statistics, [tail, 100 - tail])
    return float(low), float(high)


def paired_difference(a: dict, b: dict, seeds: list) -> Difference:
    """a - b over the given seeds (keys of both)."""
    differences = [a[seed] - b[seed] for seed in seeds]
    estimate = float(np.mean(differences))
    if len(differences) < 2:
        return Difference(estimate, None, None, True, len(differences), len(differences),
                          "undefined: a single seed")
    low, high = bootstrap_paired(differences)
    return Difference(estimate, low, high, True, len(differences), len(differences))


def unpaired_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    estimate = float(np.mean(a) - np.mean(b))
    if min(len(a), len(b)) < 2:
        return Difference(estimate, None, None, False, len(a), len(b), "undefined: a single seed on one side")
    low, high = bootstrap_unpaired(a, b)
    return Difference(estimate, low, high, False, len(a), len(b))


def difference_to_baseline(scores: Scores, baseline: Scores) -> Difference:
    """Paired by seed when both ran exactly the same seeds, otherwise unpaired."""
    mine, theirs = scores.by_seed(), baseline.by_seed()
    if mine is not None and theirs is not None and set(mine) == set(theirs):
        return paired_difference(mine, theirs, list(theirs))
    return unpaired_difference(scores.values, baseline.values)


def pretrained_gain(pretrained: Scores, scratch: Scores) -> Difference:
    """Pretrained minus scratch, paired on the seeds both inits ran (they come from the same
    runs, so normally all of them); unpaired only when seeds cannot be told apart."""
    mine, theirs = pretrained.by_seed(), scratch.by_seed()
    if mine is None or theirs is None:
        return unpaired_difference(pretrained.values, scratch.values)
    common = [seed for seed in mine if seed in theirs]
    if not common:
        return unpaired_difference(pretrained.values, scratch.values)
    return paired_difference(mine, theirs, common)


@dataclass(frozen=True)
class Comparison:
    """One row of a difference table: `label` versus `reference` on one task."""

    label: str
    reference: str  # the baseline's label, or "scratch"
    task: str
    metric: str
    difference: Difference


def compare_to_baseline(configs: list[Configuration], baseline: Configuration,
                        tasks: dict[str, str]) -> list[Comparison]:
    """Every other configuration's pretrained test score minus the baseline's, per task both ran."""
    comparisons = []
    for config in configs:
        if config is baseline:
            continue
        for task, metric in tasks.items():
            mine, theirs = config.scores[task].get("pretrained"), baseline.scores[task].get("pretrained")
            if mine and theirs:
                comparisons.append(Comparison(config.label, baseline.label, task, metric,
                                              difference_to_baseline(mine, theirs)))
    return comparisons


def pretrained_gains(configs: list[Configuration], tasks: dict[str, str]) -> list[Comparison]:
    """What pretraining buys: pretrained minus scratch per configuration and task (where scratch ran)."""
    gains = []
    for config in configs:
        for task, metric in tasks.items():
            pretrained, scratch = config.scores[task].get("pretrained"), config.scores[task].get("scratch")
            if pretrained and scratch:
                gains.append(Comparison(config.label, "scratch", task, metric, pretrained_gain(pretrained, scratch)))
    return gains
