"""Downstream task sources besides the embedded benchmark: GLUE (`glue.py`) and local files (`files.py`).

`load_source_tasks` is the entry point for `finetune.source=glue|files`. The helpers below are
shared by both loaders so that they carve dev sets, subsample the label budget and count empty
texts the same way, and fail with the same error type.
"""

from __future__ import annotations

import random

from pretrainer.config import ConfigError, FinetuneConfig
from pretrainer.data.examples import LabeledExample, TaskSplits


class TaskDataError(ConfigError):
    """A task's data cannot be used as configured; the message names the file or dataset (and
    the line or row) and what would be valid. A ConfigError, so the CLI reports it without a traceback."""


def load_source_tasks(cfg: FinetuneConfig) -> list[TaskSplits]:
    """The tasks of `finetune.source=glue` (one per GLUE name) or `files` (one task from the files)."""
    if not cfg.tasks:
        return []
    # Imported here: the two loaders use the helpers of this module, and only GLUE needs `datasets`.
    if cfg.source == "glue":
        from pretrainer.finetune.glue import load_glue_task

        return [load_glue_task(name, cfg) for name in cfg.tasks]
    if cfg.source == "files":
        from pretrainer.finetune.files import load_file_task

        if len(cfg.tasks) != 1:
            raise ConfigError(f"finetune.source=files reads one task from finetune.train_file/dev_file/test_file; "
                              f"give it one name, e.g. finetune.tasks=[{cfg.tasks[0]}] (got {list(cfg.tasks)})")
        return [load_file_task(cfg.tasks[0], cfg)]
    raise ConfigError(f"finetune.source={cfg.source!r} has no loader here (glue and files do); "
                      "the embedded tasks come from pretrainer.finetune.tasks.load_tasks")


def split_train_indices(num_rows: int, eval_size: int, train_size: int | None, seed: int,
                        where: str, hint: str = "") -> tuple[list[int], list[int]]:
    """Seeded (train, dev) row indices of a labeled training split, each in file order.

    One permutation serves both: dev is its first `eval_size` rows and train the next
    `train_size` (all the rest when None or larger than what is left). So dev does not move
    when the label budget changes, and a smaller budget is a subset of a larger one: runs
    that differ only in `train_size` are comparable. `eval_size=0` only subsamples; `hint`
    ends the error raised when nothing would be left to train on.
    """
    if num_rows == 0:
        raise TaskDataError(f"{where}: no training examples")
    if eval_size >= num_rows:
        raise TaskDataError(f"{where}: finetune.eval_size={eval_size} carves the dev set out of {num_rows} training "
                            f"examples and leaves none to train on; lower finetune.eval_size{hint}")
    order = list(range(num_rows))
    random.Random(seed).shuffle(order)
    dev = order[:eval_size]
    rest = order[eval_size:]
    train = rest if train_size is None else rest[:train_size]
    return sorted(train), sorted(dev)


def count_empty_texts(task: TaskSplits) -> int:
    """Examples (in every set of the task) whose text, or second text of a pair, is blank:
    they are kept, since dropping them would change the benchmark, and reported instead."""
    sets = [task.train, task.dev, task.test, *task.extra_eval.values()]
    return sum(_is_empty(example) for examples in sets for example in examples)


def _is_empty(example: LabeledExample) -> bool:
    return not example.text_a.strip() or (example.text_b is not None and not example.text_b.strip())
