"""A downstream task from local files (finetune.source=files): one CSV, TSV or JSONL file per split.

The format follows the extension: `.csv` (comma, RFC 4180 quoting), `.tsv` (tab, no quoting:
a quote character is text, as in the original GLUE files) or `.jsonl` (an object per line).
Files are read with the standard library, so any size works (a field too: csv's 131,072-character
cap is raised) and there is nothing to install. Quoting is read strictly: a quote left open, or text after
a closing quote (`"y" z`), is an error naming the line its record starts on, not a field that
swallows the rest of the file or silently loses a character.
Columns `text_a_column`, optional `text_b_column` (pairs) and `label_column` are mapped onto
examples according to `task_type` (a split whose file names them differently has its own map:
`finetune.columns.test.text_a=content`):

- classification: the label is a string (or a JSON integer) from `label_names`, or, when that
  is empty, from the sorted labels seen in train (numerically sorted when all are integers);
- regression: the label is a number;
- tagging: the label holds one tag per word of text_a, space-separated (or a JSON list).

Without `dev_file`, the dev set is `eval_size` examples carved from train (seeded). Every error
names the file and line; empty texts are kept and counted in `TaskSplits.empty_texts`. Files are
UTF-8 (a byte-order mark is skipped); invalid UTF-8 is an error naming file and line, or with
`decode_errors=replace` becomes U+FFFD.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pretrainer.config import FinetuneConfig, SplitColumns
from pretrainer.data.examples import LabeledExample, TaskSplits
from pretrainer.data.text import decoded_lines
from pretrainer.finetune.sources import TaskDataError, count_empty_texts, split_train_indices

DELIMITERS = {".csv": ",", ".tsv": "\t", ".jsonl": None}
FIELD_SIZE_LIMIT = 2**31 - 1  # characters a CSV field may hold (csv takes a C long: 32 bits on Windows)
METRICS = {
    "classification": ("accuracy", "macro_f1"),  # macro-F1 does not depend on which label is "positive"
    "regression": ("pearson", "spearman"),
    "tagging": ("accuracy", "macro_f1"),  # over words (flattened tags)
}


@dataclass(frozen=True)
class RawRow:
    """One record as read, before its label is checked against the label set."""

    text_a: str
    text_b: str | None
    label: Any  # the label column's value: a string, or a JSON number or list
    line: int  # line of the file (a CSV record spanning lines: its last line)


def load_file_task(name: str, cfg: FinetuneConfig) -> TaskSplits:
    """The task `name` from `cfg.train_file`, `cfg.dev_file` (optional) and `cfg.test_file`."""
    if not cfg.train_file or not cfg.test_file:
        raise TaskDataError("finetune.source=files needs finetune.train_file and finetune.test_file")
    train_path = _checked_path("finetune.train_file", cfg.train_file)
    test_path = _checked_path("finetune.test_file", cfg.test_file)
    dev_path = _checked_path("finetune.dev_file", cfg.dev_file) if cfg.dev_file else None

    train_rows = read_rows(train_path, cfg, "train")
    label_names = _label_set(cfg, train_rows, train_path)
    convert = _label_converter(cfg, label_names)

    def split_examples(path: Path, split: str) -> list[LabeledExample]:
        rows = train_rows if split == "train" else read_rows(path, cfg, split)
        return _examples(rows, path, convert, cfg.split_columns(split))

    train = split_examples(train_path, "train")  # all rows: the whole file is checked
    carve = 0 if dev_path else cfg.eval_size
    train_ids, dev_ids = split_train_indices(len(train), carve, cfg.train_size, cfg.seed, str(train_path),
                                             hint=" or give finetune.dev_file")
    dev = split_examples(dev_path, "dev") if dev_path else [train[i] for i in dev_ids]
    task = TaskSplits(
        name=name,
        label_names=label_names,
        train=[train[i] for i in train_ids],
        dev=dev,
        test=split_examples(test_path, "test"),
        description=f"{name}: {cfg.task_type} from {train_path.name}",
        kind=cfg.task_type,
        metrics=METRICS[cfg.task_type],
    )
    task.empty_texts = count_empty_texts(task)
    return task


def _checked_path(field_name: str, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise TaskDataError(f"{field_name}: {path} is not a file")
    if path.suffix.lower() not in DELIMITERS:
        raise TaskDataError(f"{field_name}: {path} must end in {', '.join(DELIMITERS)} (the format follows it)")
    return path


# Reading ---------------------------------------------------------------------------------------


def read_rows(path: Path, cfg: FinetuneConfig, split: str = "train") -> list[RawRow]:
    """Every record of one split file (train, dev or test), its columns picked by the split's map."""
    names = cfg.split_columns(split)
    columns = [names.text_a, names.label] + ([names.text_b] if names.text_b else [])
    delimiter = DELIMITERS[path.suffix.lower()]
    lines = (line for _, line in decoded_lines(path, cfg.decode_errors, "finetune.decode_errors", TaskDataError))
    records = _jsonl_records(path, lines, columns, split) if delimiter is None else \
        _delimited_records(path, lines, delimiter, columns, split)
    rows = []
    for line, record in records:
        text_b = _text(record[names.text_b], path, line, names.text_b) if names.text_b else None
        rows.append(RawRow(_text(record[names.text_a], path, line, names.text_a), text_b, record[names.label], line))
    return rows


def _delimited_records(path: Path, lines: Iterable[str], delimiter: str, columns: list[str],
                       split: str) -> Iterator[tuple[int, dict]]:
    """CSV / TSV records with a header row; a row with too few or too many fields is an error.

    `lines` are the file's physical lines with their endings, so `reader.line_num` counts lines
    of the file, also across a quoted field that spans lines."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    # csv's default cap of 131,072 characters a field is process-wide; a long document is a
    # legitimate text. strict: an unclosed quote is an error, not a field that swallows the
    # rest of the file (the default reader's reading).
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_SIZE_LIMIT))
    reader = csv.DictReader(lines, delimiter=delimiter, quoting=quoting, strict=True)
    start = 1  # the first line of the record being read
    try:
        header = reader.fieldnames
        if not header:
            raise TaskDataError(f"{path}: empty file (a header row naming the columns comes first)")
        _check_columns(path, None, columns, header, split)
        start = reader.line_num + 1
        for record in reader:
            if None in record or None in record.values():
                raise TaskDataError(f"{path}:{reader.line_num}: {_field_count(record)} fields where the header "
                                    f"has {len(header)}")
            yield reader.line_num, record
            start = reader.line_num + 1
    except csv.Error as error:
        raise TaskDataError(f"{path}:{start}: not a valid CSV record from this line on ({error}, at line "
                            f"{reader.line_num}); a field holding the delimiter, a quote or a line break is "
                            "quoted as a whole, its own quotes doubled") from None


def _field_count(record: dict) -> int:
    extra = record.get(None) or []
    return sum(value is not None for key, value in record.items() if key is not None) + len(extra)


def _jsonl_records(path: Path, lines: Iterable[str], columns: list[str], split: str) -> Iterator[tuple[int, dict]]:
    """One JSON object per non-blank line."""
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise TaskDataError(f"{path}:{line}: invalid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise TaskDataError(f"{path}:{line}: a JSON object is expected, got {type(record).__name__}")
        _check_columns(path, line, columns, list(record), split)
        yield line, record


def _check_columns(path: Path, line: int | None, needed: list[str], available: list[str], split: str) -> None:
    missing = [column for column in needed if column not in available]
    if missing:
        place = f"{path}:{line}" if line is not None else str(path)
        raise TaskDataError(f"{place}: no column {missing[0]!r} (columns: {', '.join(available)}); "
                            "map the columns with finetune.text_a_column / text_b_column / label_column, or "
                            f"this file's alone with finetune.columns.{split}.text_a / text_b / label")


def _text(value: Any, path: Path, line: int, column: str) -> str:
    """A text field; JSON null reads as the empty text (counted, not dropped)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TaskDataError(f"{path}:{line}: column {column!r} holds {type(value).__name__} {value!r}, not text")
    return value


# Labels ----------------------------------------------------------------------------------------


def _label_set(cfg: FinetuneConfig, train_rows: list[RawRow], train_path: Path) -> list[str]:
    """Class or tag names: `label_names` when given, else those seen in train; regression: the column."""
    if cfg.task_type == "regression":
        return [cfg.split_columns("train").label]
    if cfg.label_names:
        return [str(name) for name in cfg.label_names]
    seen: set[str] = set()
    for row in train_rows:
        keys = _tags(row, train_path) if cfg.task_type == "tagging" else [_class_key(row.label, train_path, row.line)]
        seen.update(keys)
    return sorted(seen, key=int) if seen and all(_is_integer(key) for key in seen) else sorted(seen)


def _is_integer(key: str) -> bool:
    try:
        int(key)
    except ValueError:
        return False
    return True


def _label_converter(cfg: FinetuneConfig, label_names: list[str]) -> Callable[[RawRow, Path, SplitColumns], Any]:
    """(row, path, the file's columns) -> the example's label, raising an error that names the file and line."""
    index = {name: i for i, name in enumerate(label_names)}
    valid = ", ".join(label_names)

    def class_id(key: str, path: Path, line: int) -> int:
        if key not in index:
            origin = "finetune.label_names" if cfg.label_names else f"the labels of {cfg.train_file}"
            raise TaskDataError(f"{path}:{line}: label {key!r} is not one of {origin}: {valid}")
        return index[key]

    def classification(row: RawRow, path: Path, columns: SplitColumns) -> int:
        return class_id(_class_key(row.label, path, row.line), path, row.line)

    def regression(row: RawRow, path: Path, columns: SplitColumns) -> float:
        return _score(row.label, path, row.line, columns.label)

    def tagging(row: RawRow, path: Path, columns: SplitColumns) -> tuple[int, ...]:
        tags = _tags(row, path)
        words = row.text_a.split()
        if len(tags) != len(words):
            raise TaskDataError(f"{path}:{row.line}: {len(tags)} tags in column {columns.label!r} for "
                                f"{len(words)} words in column {columns.text_a!r}")
        return tuple(class_id(tag, path, row.line) for tag in tags)

    return {"classification": classification, "regression": regression, "tagging": tagging}[cfg.task_type]


def _class_key(value: Any, path: Path, line: int) -> str:
    """A class label as its name: strings stripped, JSON integers as their digits."""
    key = value.strip() if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        key = str(value)
    if key:
        return key
    if key == "":
        raise TaskDataError(f"{path}:{line}: empty label")
    raise TaskDataError(f"{path}:{line}: label {value!r} is not a class name (a string or an integer)")


def _tags(row: RawRow, path: Path) -> list[str]:
    if isinstance(row.label, str):
        return row.label.split()
    if isinstance(row.label, list):
        return [_class_key(tag, path, row.line) for tag in row.label]
    raise TaskDataError(f"{path}:{row.line}: tags must be space-separated text or a list, got {row.label!r}")


def _score(value: Any, path: Path, line: int, column: str) -> float:
    """A finite regression target from a number or numeric text."""
    score = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        score = float(value)
    elif isinstance(value, str):
        try:
            score = float(value)  # surrounding whitespace is accepted
        except ValueError:
            pass
    if not math.isfinite(score):
        raise TaskDataError(f"{path}:{line}: label {value!r} in column {column!r} is not a number")
    return score


def _examples(rows: list[RawRow], path: Path, convert: Callable[[RawRow, Path, SplitColumns], Any],
              columns: SplitColumns) -> list[LabeledExample]:
    return [LabeledExample(row.text_a, convert(row, path, columns), row.text_b) for row in rows]
