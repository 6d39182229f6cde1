"""Find the runs under some directories and group them into configurations.

A configuration is a run's command-line overrides once the seed keys are dropped: the
runs of `-m seed=0,1,2 objective=mlm,clm` make two configurations of three seeds each.
Every number of the report is about a configuration, never about a single run, because a
difference between two runs that only differ in their seed is noise, not a finding.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Keys that choose a seed: runs differing only in these are repeats of one configuration.
SEED_KEYS = frozenset({"seed", "trainer.seed", "finetune.seed", "finetune.seeds"})
# Keys that name or place a run without changing what it measures.
IGNORED_KEYS = frozenset({"run_name", "cache_dir", "resume", "resume_allow_changes"})
IGNORED_PREFIXES = ("hydra.", "logger.")
INITS = ("pretrained", "scratch")


class ReportError(ValueError):
    """Nothing (or something unreadable) to report on; the message says which directory."""


@dataclass
class Run:
    """One run dir: its summary and the overrides it was started with."""

    path: Path
    summary: dict[str, Any]
    overrides: dict[str, str]  # every override, key -> value as typed
    has_overrides: bool  # False when `.hydra/overrides.yaml` is missing (counted as no overrides)

    @property
    def config_overrides(self) -> dict[str, str]:
        """The overrides that define the configuration: no seeds, no bookkeeping keys."""
        return {k: v for k, v in self.overrides.items() if not (k in SEED_KEYS or _ignored(k))}

    @property
    def seed_overrides(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((k, v) for k, v in self.overrides.items() if k in SEED_KEYS))

    @property
    def pretrain(self) -> dict[str, Any]:
        return self.summary.get("pretrain") or {}

    @property
    def representation(self) -> dict[str, Any]:
        """The representation checks (`pretrain.representation`); {} for a run without them."""
        return self.pretrain.get("representation") or {}


@dataclass
class Scores:
    """The primary test metric of one configuration, task and init: one value per seed,
    pooled over the configuration's runs and over the seeds inside each run."""

    metric: str
    keys: list[Any]  # each value's seed identity (the fine-tuning seed, see `_seed_keys`)
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return float(sum(self.values) / len(self.values)) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1, as the fine-tuning summary uses); None for one seed."""
        if len(self.values) < 2:
            return None
        mean = sum(self.values) / len(self.values)
        return math.sqrt(sum((v - mean) ** 2 for v in self.values) / (len(self.values) - 1))

    def by_seed(self) -> dict[Any, float] | None:
        """Seed -> value, or None when two values share a seed (then nothing can be paired)."""
        if len(set(self.keys)) != len(self.keys):
            return None
        return dict(zip(self.keys, self.values, strict=True))


@dataclass
class Configuration:
    index: int
    overrides: dict[str, str]
    runs: list[Run]
    label: str = ""  # the overrides that vary across configurations, set by `label_configurations`
    scores: dict[str, dict[str, Scores]] = field(default_factory=dict)  # task -> init -> scores

    def pretrain_values(self, key: str) -> list[float]:
        """A pretraining figure of every run that pretrained (fine-tune-only runs have none)."""
        return [float(run.pretrain[key]) for run in self.runs if run.pretrain.get(key) is not None]

    def wall_times(self) -> list[float]:
        return [float(run.summary["wall_time_s"]) for run in self.runs if run.summary.get("wall_time_s") is not None]

    def budget_kind(self) -> str | None:
        """summary.pretrain.budget.kind ("steps" when a run predates budgets); None without pretraining."""
        kinds = {(run.pretrain.get("budget") or {}).get("kind", "steps") for run in self.runs if run.pretrain}
        return "/".join(sorted(kinds)) or None

    def train_size(self, task: str) -> float | None:
        """Mean labeled-example count of a task over the runs (the actual size, also for train_size=null)."""
        sizes = [run.summary["finetune"][task].get("train_size") for run in self.runs
                 if task in run.summary.get("finetune", {})]
        sizes = [s for s in sizes if s is not None]
        return sum(sizes) / len(sizes) if sizes else None

    def chance(self, task: str) -> float | None:
        values = [run.summary["finetune"][task].get("chance") for run in self.runs
                  if task in run.summary.get("finetune", {})]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    def n_seeds(self) -> int:
        """Distinct seeds of the pretrained body's fine-tuning (runs, when nothing was fine-tuned)."""
        keys = {key for task in self.scores.values() if "pretrained" in task for key in task["pretrained"].keys}
        return len(keys) or len(self.runs)


def find_runs(dirs: list[Path]) -> list[Run]:
    """Every run (a directory with `summary.json`) under `dirs`, each directory searched
    recursively in natural order (so sweep job 10 comes after job 9, not after job 1)."""
    if not dirs:
        raise ReportError("give at least one run or sweep directory")
    seen: set[Path] = set()
    runs = []
    for directory in map(Path, dirs):
        if not directory.is_dir():
            raise ReportError(f"{directory}: no such directory")
        paths = sorted(directory.rglob("summary.json"), key=natural_key)
        if not paths:
            raise ReportError(f"no summary.json under {directory}: give a run directory or a directory holding "
                              "runs (a sweep); a run writes summary.json when it finishes")
        for path in paths:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                runs.append(load_run(path.parent))
    return runs


def load_run(run_dir: Path) -> Run:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ReportError(f"{run_dir / 'summary.json'}: unreadable ({error})") from error
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = parse_overrides(_read_yaml_list(overrides_file)) if overrides_file.is_file() else {}
    return Run(run_dir, summary, overrides, overrides_file.is_file())


def parse_overrides(items: list[str]) -> dict[str, str]:
    """Hydra override strings -> key: value. `+key`/`++key` count as `key`; `~key` deletes
    the key and reads as key: "~"."""
    parsed = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if key.startswith("~"):
            parsed[key.lstrip("~")] = "~" + value if sep else "~"
        else:
            parsed[key.lstrip("+")] = value
    return parsed


def _read_yaml_list(path: Path) -> list[str]:
    try:
        items = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError) as error:
        raise ReportError(f"{path}: unreadable ({error})") from error
    if not isinstance(items, list):
        raise ReportError(f"{path}: expected a list of override strings")
    return [str(item) for item in items]


def _ignored(key: str) -> bool:
    return key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES)


def natural_key(path: Path) -> list[Any]:
    """Sort key treating digit runs as numbers: multirun/.../2 before multirun/.../10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def group_runs(runs: list[Run]) -> list[Configuration]:
    """Runs with equal configuration overrides form one configuration, in order of first appearance."""
    groups: dict[frozenset, Configuration] = {}
    for run in runs:
        key = frozenset(run.config_overrides.items())
        if key not in groups:
            groups[key] = Configuration(len(groups), run.config_overrides, [])
        groups[key].runs.append(run)
    return list(groups.values())


def varying_keys(configs: list[Configuration]) -> list[str]:
    """Override keys whose value (or presence) differs between configurations."""
    keys = list(dict.fromkeys(key for config in configs for key in config.overrides))
    return [key for key in keys if len({config.overrides.get(key) for config in configs}) > 1]


def constant_overrides(configs: list[Configuration]) -> dict[str, str]:
    """Overrides every configuration shares: said once above the table rather than in every row."""
    varying = set(varying_keys(configs))
    return {k: v for k, v in configs[0].overrides.items() if k not in varying} if configs else {}


def label_configurations(configs: list[Configuration], varying: list[str]) -> None:
    for config in configs:
        parts = [f"{key}={config.overrides[key]}" for key in varying if key in config.overrides]
        config.label = " ".join(parts) or "(defaults)"


def task_metrics(runs: list[Run]) -> dict[str, str]:
    """Task -> primary metric (the first of its `metrics`), in order of first appearance."""
    tasks: dict[str, str] = {}
    for run in runs:
        for task, result in (run.summary.get("finetune") or {}).items():
            tasks.setdefault(task, (result.get("metrics") or ["accuracy"])[0])
    return tasks


def collect_scores(config: Configuration, tasks: dict[str, str]) -> None:
    """Fill `config.scores` with every seed's primary test metric, per task and init."""
    for task, metric in tasks.items():
        per_init = {}
        for init in INITS:
            samples = [(run, seed, value) for run in config.runs
                       for seed, value in _run_samples(run, task, init, metric)]
            if samples:
                per_init[init] = Scores(metric, _seed_keys(samples), [value for _, _, value in samples])
        config.scores[task] = per_init


def _run_samples(run: Run, task: str, init: str, metric: str) -> list[tuple[Any, float]]:
    """(fine-tuning seed, test score) per seed of one run; a summary without a `seeds` list
    (written before seeds were recorded) contributes its mean once, with seed None."""
    result = (run.summary.get("finetune") or {}).get(task, {}).get(init)
    if not result:
        return []
    if result.get("seeds"):
        samples = [(entry.get("seed"), entry.get("test", {}).get(metric)) for entry in result["seeds"]]
    else:
        samples = [(None, result.get("test", {}).get(metric))]
    return [(seed, float(value)) for seed, value in samples if value is not None]


def _seed_keys(samples: list[tuple[Run, Any, float]]) -> list[Any]:
    """A value's seed identity: its fine-tuning seed, so `seed=0,1,2` sweeps and one run with
    `finetune.seeds=[0,1,2]` pair up. When runs of a configuration repeat a fine-tuning seed
    (e.g. `trainer.seed=1,2` with one fine-tuning seed) the run's seed overrides qualify it."""
    seeds = [seed for _, seed, _ in samples]
    if len(set(seeds)) == len(seeds):
        return seeds
    return [(run.seed_overrides, seed) for run, seed, _ in samples]
