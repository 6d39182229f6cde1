"""Prediction files name the labels: `label_name` and `prediction_name` beside the ids for
classification (one name) and tagging (one per word); regression has none."""

from __future__ import annotations

import json
from pathlib import Path

from pretrainer.data.synthetic import generate_task
from pretrainer.data.synthetic.tagging import TAGS
from pretrainer.finetune.classifier import EncodedExamples
from pretrainer.finetune.recipe import EncodedTask
from pretrainer.finetune.run import _write_predictions
from pretrainer.pipeline import train


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def encoded(kind: str, labels: list) -> EncodedExamples:
    return EncodedExamples(ids=[[1, 2]] * len(labels), type_ids=[[0, 0]] * len(labels), labels=labels,
                           texts=[f"text {i}" for i in range(len(labels))])


def test_a_fine_tuned_synthetic_task_names_gold_and_predicted_labels(compose_config, tmp_path):
    cfg = compose_config("finetune.tasks=[sentiment,tagging]", "finetune.train_size=16", "finetune.eval_size=8",
                         "finetune.epochs=1")
    train(cfg, tmp_path / "run")
    sentiment = generate_task("sentiment", cfg.finetune.seed, 16, 8)
    assert sentiment.label_names == ["negative", "positive"]
    files = sorted((tmp_path / "run" / "predictions").glob("*/*/seed*/*.jsonl"))
    assert {path.relative_to(tmp_path / "run" / "predictions").parts[:2] for path in files} == {
        (task, init) for task in ("sentiment", "tagging") for init in ("pretrained", "scratch")}
    for path in files:
        lines = read_jsonl(path)
        assert len(lines) == 8
        for line in lines:
            if path.parts[-4] == "sentiment":
                assert line["label_name"] == sentiment.label_names[line["label"]]
                assert line["prediction_name"] == sentiment.label_names[line["prediction"]]
            else:  # one tag name per word, in the word order of the ids
                assert len(line["label"]) == len(line["text"].split()) == len(line["prediction"])
                assert line["label_name"] == [TAGS[tag] for tag in line["label"]]
                assert line["prediction_name"] == [TAGS[tag] for tag in line["prediction"]]
    test_gold = [line["label_name"] for line in read_jsonl(next(p for p in files if "sentiment" in p.parts
                                                                and p.name == "test.jsonl"))]
    assert test_gold == [sentiment.label_names[example.label] for example in sentiment.test]


def test_regression_has_no_names_and_an_unnamed_id_reads_as_its_number(tmp_path):
    empty = encoded("classification", [])
    stsb = EncodedTask("stsb", "regression", 1, ("pearson",), empty, encoded("regression", [0.5, 4.0]), empty)
    _write_predictions(tmp_path / "stsb", {"dev": [1.25, 3.5]}, stsb, ["label"])
    assert read_jsonl(tmp_path / "stsb" / "dev.jsonl") == [
        {"index": 0, "text": "text 0", "label": 0.5, "prediction": 1.25},
        {"index": 1, "text": "text 1", "label": 4.0, "prediction": 3.5}]

    three = EncodedTask("nli", "classification", 3, ("accuracy",), empty, empty, encoded("classification", [2, 0]))
    _write_predictions(tmp_path / "nli", {"test": [0, 3]}, three, ["entailment", "neutral", "contradiction"])
    assert [(line["label_name"], line["prediction_name"]) for line in read_jsonl(tmp_path / "nli" / "test.jsonl")] \
        == [("contradiction", "entailment"), ("entailment", "3")]
    assert list(read_jsonl(tmp_path / "nli" / "test.jsonl")[0]) == ["index", "text", "label", "label_name",
                                                                      "prediction", "prediction_name"]


def test_tagging_names_skip_the_ignored_sub_tokens(tmp_path):
    empty = encoded("tagging", [])
    pos = EncodedTask("pos", "tagging", 3, ("accuracy",), empty, encoded("tagging", [[-100, 0, -100, 2, 1, -100]]),
                      empty)
    _write_predictions(tmp_path / "pos", {"dev": [[0, 1, 1]]}, pos, ["DET", "NOUN", "VERB"])
    (line,) = read_jsonl(tmp_path / "pos" / "dev.jsonl")
    assert line["label"] == [0, 2, 1] and line["label_name"] == ["DET", "VERB", "NOUN"]
    assert line["prediction_name"] == ["DET", "NOUN", "NOUN"]
