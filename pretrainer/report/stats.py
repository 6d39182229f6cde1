"""Differences between configurations with 95% confidence intervals over seeds.

Which interval: with fewer than `MIN_BOOTSTRAP` (5) seeds a bootstrap has too few distinct
resamples (3 seeds: 10) and its intervals come out far too narrow, so small samples get a
t-interval — on the per-seed differences when paired, Welch's when not. From 5 seeds on,
the bias-corrected and accelerated (BCa) bootstrap of `scipy.stats.bootstrap`, which leans
less on normality (fine-tuning scores are bounded and sometimes bimodal when a seed fails).
Each `Difference` says which interval it carries. Bootstrap draws come from a fresh
generator with the same seed, so a report is reproducible and no number depends on the
order in which the comparisons were computed.

Pairing: two configurations fine-tuned with the same seeds share the task sample, head
init and data order per seed, so the per-seed differences cancel that noise. With
different seed sets the seeds are independent draws (unpaired). One seed gives no interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from pretrainer.report.runs import Configuration, Scores

RESAMPLES = 10_000
RNG_SEED = 0
CONFIDENCE = 0.95
MIN_BOOTSTRAP = 5  # seeds per side from which the BCa bootstrap is used instead of a t-interval
T_INTERVAL, BCA = "t", "BCa bootstrap"


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
    method: str = ""  # T_INTERVAL or BCA; empty without an interval

    @property
    def excludes_zero(self) -> bool | None:
        """Whether the interval lies wholly on one side of zero (None without an interval)."""
        if self.low is None or self.high is None:
            return None
        return self.low > 0 or self.high < 0


def paired_interval(differences: Sequence[float]) -> tuple[float, float, str]:
    """(low, high, method) for the mean of per-seed differences (at least 2). When nothing varies,
    the one value every seed gave (scipy would warn of lost precision, or give NaN)."""
    d = np.asarray(differences, dtype=float)
    method = T_INTERVAL if len(d) < MIN_BOOTSTRAP else BCA
    if np.ptp(d) == 0:
        return float(d[0]), float(d[0]), method
    found = (stats.ttest_1samp(d, 0.0).confidence_interval(CONFIDENCE) if method == T_INTERVAL
             else _bca((d,), np.mean))
    return float(found.low), float(found.high), method


def unpaired_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, str]:
    """(low, high, method) for mean(a) - mean(b), each side at least 2 values (Welch's t-interval
    below MIN_BOOTSTRAP on either side); the one difference when neither side varies."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    method = T_INTERVAL if min(len(x), len(y)) < MIN_BOOTSTRAP else BCA
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return float(x[0] - y[0]), float(x[0] - y[0]), method
    found = (stats.ttest_ind(x, y, equal_var=False).confidence_interval(CONFIDENCE) if method == T_INTERVAL
             else _bca((x, y), lambda p, q, axis: np.mean(p, axis=axis) - np.mean(q, axis=axis)))
    return float(found.low), float(found.high), method


def _bca(samples: tuple[np.ndarray, ...], statistic):
    """scipy's BCa bootstrap interval of `statistic`, from a fixed generator."""
    return stats.bootstrap(samples, statistic, n_resamples=RESAMPLES, confidence_level=CONFIDENCE, method="BCa",
                           vectorized=True, paired=False, rng=np.random.default_rng(RNG_SEED)).confidence_interval


def paired_difference(a: dict, b: dict, seeds: list) -> Difference:
    """a - b over the given seeds (keys of both)."""
    differences = [a[seed] - b[seed] for seed in seeds]
    estimate = float(np.mean(differences))
    if len(differences) < 2:
        return Difference(estimate, None, None, True, len(differences), len(differences),
                          "undefined: a single seed")
    low, high, method = paired_interval(differences)
    return Difference(estimate, low, high, True, len(differences), len(differences), method=method)


def unpaired_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    estimate = float(np.mean(a) - np.mean(b))
    if min(len(a), len(b)) < 2:
        return Difference(estimate, None, None, False, len(a), len(b), "undefined: a single seed on one side")
    low, high, method = unpaired_interval(a, b)
    return Difference(estimate, low, high, False, len(a), len(b), method=method)


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
