"""finetune=files with per-split column maps: a test file that names its columns differently."""

from __future__ import annotations

import pytest

from pretrainer.config import ColumnMaps, ConfigError, SplitColumns
from pretrainer.data.examples import LabeledExample
from pretrainer.finetune.files import load_file_task
from pretrainer.finetune.sources import TaskDataError
from tests.test_task_sources import files_config, write_delimited, write_jsonl


def sentiment_files(tmp_path):
    """train.tsv names its columns (sentence, label); dev.jsonl and test.csv (content, gold)."""
    write_delimited(tmp_path / "train.tsv", ["sentence", "label"],
                    [[f"good {i}", "pos"] if i % 2 else [f"bad {i}", "neg"] for i in range(6)], delimiter="\t")
    write_jsonl(tmp_path / "dev.jsonl", [{"content": "fine", "gold": "pos"}])
    write_delimited(tmp_path / "test.csv", ["id", "content", "gold"], [["1", "awful", "neg"], ["2", "great", "pos"]])
    return tmp_path / "train.tsv", tmp_path / "dev.jsonl", tmp_path / "test.csv"


def test_each_split_reads_its_own_column_names(tmp_path):
    train, dev, test = sentiment_files(tmp_path)
    other = SplitColumns(text_a="content", label="gold")
    cfg = files_config(train, test, dev=dev, text_a_column="sentence", columns=ColumnMaps(dev=other, test=other))
    task = load_file_task("sst", cfg)
    assert task.label_names == ["neg", "pos"] and len(task.train) == 6
    assert task.dev == [LabeledExample("fine", 1)]
    assert task.test == [LabeledExample("awful", 0), LabeledExample("great", 1)]


def test_without_a_map_the_differently_named_file_fails_naming_the_split_key(tmp_path):
    train, dev, test = sentiment_files(tmp_path)
    cfg = files_config(train, test, text_a_column="sentence", columns=ColumnMaps(test=SplitColumns(text_a="content")))
    with pytest.raises(TaskDataError, match=r"test\.csv: no column 'label' .*finetune\.columns\.test\.text_a"):
        load_file_task("sst", cfg)  # the test map names its text but not its label column


def test_a_pair_task_needs_a_second_text_in_every_split():
    with pytest.raises(ConfigError, match=r"finetune\.columns\.dev\.text_b: train has second text but dev has none"):
        pairs = SplitColumns(text_b="h")
        files_config("a.csv", "b.csv", columns=ColumnMaps(train=pairs, test=pairs))
    with pytest.raises(ConfigError, match=r"finetune\.columns\.dev\.text_b: train has no second text"):
        files_config("a.csv", "b.csv", columns=ColumnMaps(dev=SplitColumns(text_b="h")))


def test_a_split_map_is_one_override_on_the_command_line(compose_config, tmp_path):
    cfg = compose_config("finetune=files", f"finetune.train_file={tmp_path / 'a.csv'}",
                         f"finetune.test_file={tmp_path / 'b.csv'}", "finetune.columns.test.text_a=content")
    assert cfg.finetune.split_columns("test") == SplitColumns("content", None, "label")
    assert cfg.finetune.split_columns("train") == SplitColumns("text_a", None, "label")
