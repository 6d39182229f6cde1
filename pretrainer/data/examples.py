"""Labeled examples of downstream tasks, shared by task sources and fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LabeledExample:
    """One classification example; `text_b` is set for sentence-pair tasks."""

    text_a: str
    label: int
    text_b: str | None = None


@dataclass
class TaskSplits:
    """A downstream task: its label names and train/dev/test examples."""

    name: str
    label_names: list[str]
    train: list[LabeledExample] = field(default_factory=list)
    dev: list[LabeledExample] = field(default_factory=list)
    test: list[LabeledExample] = field(default_factory=list)
    description: str = ""

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_pair_task(self) -> bool:
        return any(ex.text_b is not None for ex in self.train)
