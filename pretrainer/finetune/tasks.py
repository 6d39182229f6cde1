"""Where downstream tasks come from (`finetune.source`): the embedded benchmark, GLUE
(hub or a local copy) or local files."""

from __future__ import annotations

from collections import Counter

import numpy as np

from pretrainer.config import FinetuneConfig
from pretrainer.data.examples import TaskSplits
from pretrainer.finetune.metrics import task_metrics


def load_tasks(cfg: FinetuneConfig) -> list[TaskSplits]:
    if not cfg.tasks:
        return []
    if cfg.source != "synthetic":
        from pretrainer.finetune.sources import load_source_tasks

        return load_source_tasks(cfg)
    from pretrainer.data.synthetic import generate_task

    tasks = [generate_task(name, cfg.seed, cfg.train_size or 200, cfg.eval_size) for name in cfg.tasks]
    for task in tasks:  # macro-F1 too where accuracy alone hides a neglected class
        task.metrics = ("accuracy", "macro_f1") if task.num_labels > 2 else ("accuracy",)
    return tasks


def chance_score(task: TaskSplits) -> float | None:
    """The primary metric of always predicting the most frequent training label (the
    training mean for regression); None when undefined (correlations of a constant)."""
    if not task.test or not task.train:
        return None
    if task.kind == "regression":
        return None
    if task.kind == "tagging":
        gold = np.array([tag for ex in task.test for tag in ex.label])
        majority = Counter(tag for ex in task.train for tag in ex.label).most_common(1)[0][0]
    else:
        gold = np.array([ex.label for ex in task.test])
        majority = Counter(ex.label for ex in task.train).most_common(1)[0][0]
    return task_metrics(task.metrics[:1], gold, np.full_like(gold, majority))[task.metrics[0]]
