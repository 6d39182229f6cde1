"""Where downstream tasks come from (`finetune.source`)."""

from __future__ import annotations

from pretrainer.config import FinetuneConfig
from pretrainer.data.examples import TaskSplits


def load_tasks(cfg: FinetuneConfig) -> list[TaskSplits]:
    if not cfg.tasks:
        return []
    from pretrainer.data.synthetic import generate_task

    return [generate_task(name, cfg.seed, cfg.train_size, cfg.eval_size) for name in cfg.tasks]


def chance_accuracy(task: TaskSplits) -> float:
    """Accuracy of always predicting the most frequent test label."""
    if not task.test:
        return 0.0
    counts = [0] * task.num_labels
    for example in task.test:
        counts[example.label] += 1
    return max(counts) / len(task.test)
