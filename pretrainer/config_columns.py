"""Per-split column maps of `finetune=files` (`finetune.columns.test.text_a=content`). Part of
the one schema in `pretrainer.config` (its `FinetuneConfig` holds them); here to keep that
module short."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SplitColumns:
    """One split file's own column names (files); null: the task-wide `<name>_column`."""

    text_a: str | None = None
    text_b: str | None = None
    label: str | None = None


@dataclass
class ColumnMaps:
    """Per-split column maps: `finetune.columns.test.text_a=content` when the test file names
    its text column differently from train's."""

    train: SplitColumns = field(default_factory=SplitColumns)
    dev: SplitColumns = field(default_factory=SplitColumns)
    test: SplitColumns = field(default_factory=SplitColumns)
