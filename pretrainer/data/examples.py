"""Labeled examples of downstream tasks, shared by task sources and fine-tuning.

Three task kinds:
- `classification`: `label` is a class id (single sentences, or pairs with `text_b`);
- `regression`: `label` is a float score (STS-B);
- `tagging`: `text_a` is whitespace-separated words and `label` one tag id per word.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TASK_KINDS = ("classification", "regression", "tagging")


@dataclass(frozen=True)
class LabeledExample:
    """One example; `text_b` is set for sentence-pair tasks."""

    text_a: str
    label: int | float | tuple[int, ...]
    text_b: str | None = None


@dataclass
class TaskSplits:
    """A downstream task: its kind, label names, metrics and train/dev/test examples.

    `metrics` names the scores to report (see `pretrainer.finetune.metrics`); the first
    is the one that picks the best epoch on dev. `extra_eval` holds further labeled sets
    evaluated like test (MNLI's mismatched set).
    """

    name: str
    label_names: list[str]
    train: list[LabeledExample] = field(default_factory=list)
    dev: list[LabeledExample] = field(default_factory=list)
    test: list[LabeledExample] = field(default_factory=list)
    description: str = ""
    kind: str = "classification"
    metrics: tuple[str, ...] = ("accuracy",)
    extra_eval: dict[str, list[LabeledExample]] = field(default_factory=dict)
    empty_texts: int = 0  # examples whose text was empty (kept, and reported)

    @property
    def num_labels(self) -> int:
        """Classes, tags, or 1 for a regression target."""
        return 1 if self.kind == "regression" else len(self.label_names)

    @property
    def is_pair_task(self) -> bool:
        return any(ex.text_b is not None for ex in self.train)
