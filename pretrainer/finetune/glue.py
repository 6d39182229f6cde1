"""GLUE tasks via `datasets.load_dataset(finetune.hub_name, task)` (finetune.source=glue).

`hub_name` is the hub repository (default `nyu-mll/glue`) or a local directory in the same
layout, which `load_dataset` reads offline exactly as it reads the hub:

    DIR/README.md                          YAML header `configs:` listing, per task, its splits' files
    DIR/<task>/<split>-00000-of-00001.parquet

That is the hub repository itself: `huggingface-cli download nyu-mll/glue --repo-type dataset
--local-dir DIR` makes such a copy, and the parquet files carry the `datasets` features (the
label's ClassLabel names) in their schema metadata. A copy whose label column is a plain integer
falls back to the official label names below.

GLUE hides its test labels (-1), so the official validation split is the test set here (MNLI:
validation_matched, with validation_mismatched as the extra set `test_mismatched`), and the dev
set that picks the best epoch is `finetune.eval_size` examples carved from the official train split
(null: the task's own `dev_size`, as its conf/finetune/glue/<task>.yaml sets: several tasks at once).
"""

from __future__ import annotations

import math
import os
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pretrainer.config import GLUE_TASKS, FinetuneConfig, check_choice
from pretrainer.data.examples import LabeledExample, TaskSplits
from pretrainer.finetune.sources import TaskDataError, count_empty_texts, split_train_indices


@dataclass(frozen=True)
class GlueTask:
    """How one GLUE config maps onto a TaskSplits."""

    text_a: str  # column of the first sentence
    text_b: str | None  # column of the second sentence of a pair task
    label_names: tuple[str, ...]  # official names, used when the label column is not a ClassLabel
    metrics: tuple[str, ...]  # official metrics; the first picks the best epoch
    description: str
    dev_size: int  # examples carved from train as dev when finetune.eval_size is null (conf/finetune/glue/)
    kind: str = "classification"
    test_split: str = "validation"  # the official split evaluated as test (its labels are public)
    extra_eval: tuple[tuple[str, str], ...] = ()  # (name in the report, official split) evaluated like test


_NLI = ("entailment", "not_entailment")

GLUE: dict[str, GlueTask] = {
    "sst2": GlueTask("sentence", None, ("negative", "positive"), ("accuracy",),
                     "SST-2: sentiment of a movie-review sentence (accuracy)", dev_size=1000),
    "cola": GlueTask("sentence", None, ("unacceptable", "acceptable"), ("mcc",),
                     "CoLA: is the sentence grammatical? (Matthews correlation)", dev_size=1000),
    "mrpc": GlueTask("sentence1", "sentence2", ("not_equivalent", "equivalent"), ("f1", "accuracy"),
                     "MRPC: are the two news sentences paraphrases? (F1, accuracy)", dev_size=400),
    "qqp": GlueTask("question1", "question2", ("not_duplicate", "duplicate"), ("f1", "accuracy"),
                    "QQP: do the two Quora questions ask the same thing? (F1, accuracy)", dev_size=1000),
    "stsb": GlueTask("sentence1", "sentence2", ("label",), ("pearson", "spearman"),
                     "STS-B: similarity of two sentences from 0 to 5 (Pearson, Spearman)", dev_size=500,
                     kind="regression"),
    "mnli": GlueTask("premise", "hypothesis", ("entailment", "neutral", "contradiction"), ("accuracy",),
                     "MNLI: does the premise entail or contradict the hypothesis, or neither? "
                     "(accuracy; test = matched, test_mismatched = other genres)", dev_size=1000,
                     test_split="validation_matched", extra_eval=(("test_mismatched", "validation_mismatched"),)),
    "qnli": GlueTask("question", "sentence", _NLI, ("accuracy",),
                     "QNLI: does the Wikipedia sentence answer the question? (accuracy)", dev_size=1000),
    "rte": GlueTask("sentence1", "sentence2", _NLI, ("accuracy",),
                    "RTE: does the first text entail the second? (accuracy)", dev_size=250),
    "wnli": GlueTask("sentence1", "sentence2", ("not_entailment", "entailment"), ("accuracy",),
                     "WNLI: does the sentence with its pronoun resolved follow? (accuracy)", dev_size=64),
}


def load_glue_task(name: str, cfg: FinetuneConfig) -> TaskSplits:
    """One GLUE task: train and dev from the official train split, test from the official validation."""
    check_choice("finetune.tasks", name, GLUE_TASKS)
    spec = GLUE[name]
    splits = _load_dataset(cfg.hub_name, name)
    where = f"{cfg.hub_name} ({name})"
    train_split = _split(splits, "train", spec, where)
    label_names = _label_names(train_split, spec)
    dev_size = spec.dev_size if cfg.eval_size is None else cfg.eval_size
    train_rows, dev_rows = split_train_indices(len(train_split), dev_size, cfg.train_size, cfg.seed,
                                               f"{where}, split train")
    task = TaskSplits(
        name=name,
        label_names=label_names,
        train=_examples(train_split, train_rows, spec, label_names, f"{where}, split train"),
        dev=_examples(train_split, dev_rows, spec, label_names, f"{where}, split train"),
        test=_examples(_split(splits, spec.test_split, spec, where), None, spec, label_names,
                       f"{where}, split {spec.test_split}"),
        description=spec.description,
        kind=spec.kind,
        metrics=spec.metrics,
        extra_eval={eval_name: _examples(_split(splits, split, spec, where), None, spec, label_names,
                                         f"{where}, split {split}")
                    for eval_name, split in spec.extra_eval},
    )
    task.empty_texts = count_empty_texts(task)
    return task


def _load_dataset(hub_name: str, name: str) -> Any:
    """All splits of one GLUE config; a local copy without the hub's layout gets a pointer to it."""
    import datasets  # heavy: imported only when GLUE is used

    if not Path(hub_name).expanduser().is_dir() and not _hub_offline_mode():
        _check_hub_reachable(hub_name)
    try:
        return datasets.load_dataset(hub_name, name)
    except ConnectionError:
        raise _unreachable(hub_name) from None
    except ValueError as error:
        if "BuilderConfig" not in str(error):
            raise
        raise TaskDataError(f"{hub_name} has no GLUE config {name!r} ({error}). A local copy needs the hub's "
                            "layout: README.md listing the configs, <task>/<split>-*.parquet files "
                            "(see pretrainer/finetune/glue.py)") from None


def _hub_offline_mode() -> bool:
    """HF_HUB_OFFLINE / HF_DATASETS_OFFLINE: the user asked for the local cache only."""
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _check_hub_reachable(hub_name: str, timeout_s: float = 5.0) -> None:
    """One connection attempt to the hub's host before `load_dataset`, whose client retries
    for ~25 s and prints a warning per retry when there is no network."""
    from huggingface_hub import constants

    endpoint, proxies = urlparse(constants.ENDPOINT), urllib.request.getproxies()  # *_PROXY, either case
    if proxies.get("https") or proxies.get("all"):
        return  # behind a proxy a direct connection proves nothing: let the client try
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError:
        raise _unreachable(hub_name) from None


def _unreachable(hub_name: str) -> TaskDataError:
    return TaskDataError(f"cannot reach the Hugging Face hub for {hub_name} (offline?). Where the hub is "
                         f"reachable, run `huggingface-cli download {hub_name} --repo-type dataset --local-dir DIR`, "
                         "then set finetune.hub_name=DIR; a copy already in the datasets cache is used with "
                         "HF_HUB_OFFLINE=1")


def _split(splits: Any, split: str, spec: GlueTask, where: str) -> Any:
    """One official split, checked to hold the task's columns."""
    if split not in splits:
        raise TaskDataError(f"{where}: no split {split!r}; splits: {', '.join(splits)}")
    dataset = splits[split]
    for column in (spec.text_a, spec.text_b, "label"):
        if column is not None and column not in dataset.column_names:
            raise TaskDataError(f"{where}, split {split}: no column {column!r}; columns: "
                                f"{', '.join(dataset.column_names)}")
    return dataset


def _label_names(dataset: Any, spec: GlueTask) -> list[str]:
    """The ClassLabel names of the label column (the dataset's own), else the official ones."""
    names = getattr(dataset.features["label"], "names", None)
    if spec.kind == "classification" and names:
        return list(names)
    return list(spec.label_names)


def _examples(dataset: Any, rows: list[int] | None, spec: GlueTask, label_names: list[str],
              where: str) -> list[LabeledExample]:
    """`rows` of a split (None: all of it) as examples; errors name the row of the official split."""
    columns = [spec.text_a, "label"] + ([spec.text_b] if spec.text_b else [])
    subset = dataset.select_columns(columns)
    if rows is not None:
        subset = subset.select(rows)
    values = subset.to_dict()
    row_numbers = rows if rows is not None else range(len(subset))
    examples = []
    for i, row in enumerate(row_numbers):
        label = _label(values["label"][i], spec, len(label_names), f"{where}, row {row}")
        text_b = _text(values[spec.text_b][i]) if spec.text_b else None
        examples.append(LabeledExample(_text(values[spec.text_a][i]), label, text_b))
    return examples


def _text(value: str | None) -> str:
    return value if value is not None else ""


def _label(value: Any, spec: GlueTask, num_labels: int, where: str) -> int | float:
    """A class id or a score, refusing GLUE's hidden-label marker (-1) and out-of-range ids."""
    if spec.kind == "regression":
        if value is None or not math.isfinite(value) or value < 0:
            raise TaskDataError(f"{where}: score {value} is not a similarity in [0, 5] "
                                "(-1 marks GLUE's hidden test labels)")
        return float(value)
    if value is None or not 0 <= value < num_labels:
        raise TaskDataError(f"{where}: label {value} is not a class id 0..{num_labels - 1} "
                            "(-1 marks GLUE's hidden test labels)")
    return int(value)

