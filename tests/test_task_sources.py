"""Downstream task sources: GLUE from a local copy in the hub's layout, and CSV / TSV / JSONL files.

Offline: every GLUE copy is written here in the official format (columns, ClassLabel features,
hidden test labels), and sockets are blocked so that a stray hub request fails the test.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import socket

import numpy as np
import pytest

from pretrainer.cli import CONF_DIR
from pretrainer.config import GLUE_TASKS, ConfigError, FinetuneConfig
from pretrainer.data.examples import LabeledExample
from pretrainer.finetune.files import load_file_task, read_rows
from pretrainer.finetune.glue import GLUE, load_glue_task
from pretrainer.finetune.sources import TaskDataError, load_source_tasks, split_train_indices

ROWS = 20  # per official split

# The official format, written independently of the library's table: columns and label names
# (None: a float score), and the splits of each config.
OFFICIAL = {
    "cola": (("sentence",), ["unacceptable", "acceptable"]),
    "sst2": (("sentence",), ["negative", "positive"]),
    "mrpc": (("sentence1", "sentence2"), ["not_equivalent", "equivalent"]),
    "qqp": (("question1", "question2"), ["not_duplicate", "duplicate"]),
    "stsb": (("sentence1", "sentence2"), None),
    "mnli": (("premise", "hypothesis"), ["entailment", "neutral", "contradiction"]),
    "qnli": (("question", "sentence"), ["entailment", "not_entailment"]),
    "rte": (("sentence1", "sentence2"), ["entailment", "not_entailment"]),
    "wnli": (("sentence1", "sentence2"), ["not_entailment", "entailment"]),
}
MNLI_SPLITS = ("train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched")
EXPECTED_METRICS = {"cola": ("mcc",), "mrpc": ("f1", "accuracy"), "qqp": ("f1", "accuracy"),
                    "stsb": ("pearson", "spearman")}  # the others: accuracy


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path_factory, monkeypatch):
    """`datasets` writes its Arrow cache here, not under the home directory."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.getbasetemp() / "hf_datasets")


def official_text(name: str, split: str, column: str, row: int) -> str:
    return f"{name} {split} {column} {row}"


def official_label(name: str, split: str, row: int) -> int | float:
    names = OFFICIAL[name][1]
    if split.startswith("test"):
        return -1 if names else -1.0  # GLUE hides its test labels
    return row % len(names) if names else (row % 11) * 0.5


def write_glue_config(root, name: str, splits=None, columns=None, label_feature=None, rows=ROWS, text=None,
                      label=None) -> None:
    """One config of a GLUE copy as the hub stores it: <name>/<split>-00000-of-00001.parquet with features."""
    from datasets import ClassLabel, Dataset, Features, Value

    official_columns, names = OFFICIAL[name]
    columns = columns or official_columns
    splits = splits or (MNLI_SPLITS if name == "mnli" else ("train", "validation", "test"))
    if label_feature is None:
        label_feature = ClassLabel(names=names) if names else Value("float32")
    features = Features({**{column: Value("string") for column in columns}, "label": label_feature,
                         "idx": Value("int32")})
    text = text or official_text
    label = label or official_label
    (root / name).mkdir(parents=True, exist_ok=True)
    for split in splits:
        data = {column: [text(name, split, column, i) for i in range(rows)] for column in columns}
        data["label"] = [label(name, split, i) for i in range(rows)]
        data["idx"] = list(range(rows))
        path = root / name / f"{split}-00000-of-00001.parquet"
        Dataset.from_dict(data, features=features).to_parquet(str(path))
    _add_to_readme(root, name, splits)


def _add_to_readme(root, name: str, splits) -> None:
    """The dataset card's YAML header lists each config's files per split, as on the hub."""
    readme = root / "README.md"
    entries = readme.read_text().split("---\n")[1] if readme.exists() else "configs:\n"
    entries += f"- config_name: {name}\n  data_files:\n"
    entries += "".join(f"  - split: {split}\n    path: {name}/{split}-*\n" for split in splits)
    readme.write_text(f"---\n{entries}---\n# GLUE (a local copy)\n")


@pytest.fixture(scope="module")
def local_glue(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    for name in OFFICIAL:
        write_glue_config(root, name)
    return root


def glue_config(root, name: str, **overrides) -> FinetuneConfig:
    return FinetuneConfig(**{"source": "glue", "tasks": [name], "hub_name": str(root), "eval_size": 5,
                             "train_size": None, **overrides})


def test_glue_table_matches_the_config_choices():
    assert set(GLUE) == set(GLUE_TASKS)
    for name, spec in GLUE.items():  # eval_size=null carves what finetune=glue/<task> carves alone
        assert f"\neval_size: {spec.dev_size} " in (CONF_DIR / "finetune" / "glue" / f"{name}.yaml").read_text()


def test_glue_tasks_at_once_carve_each_its_own_dev_set(local_glue, monkeypatch):
    """finetune.eval_size=null: one number cannot suit MNLI (393k examples) and WNLI (635)."""
    for name, size in (("rte", 3), ("cola", 7)):
        monkeypatch.setitem(GLUE, name, dataclasses.replace(GLUE[name], dev_size=size))
    cfg = FinetuneConfig(source="glue", tasks=["rte", "cola"], hub_name=str(local_glue), eval_size=None,
                         train_size=None)
    assert [(task.name, len(task.dev), len(task.train)) for task in load_source_tasks(cfg)] == [
        ("rte", 3, ROWS - 3), ("cola", 7, ROWS - 7)]
    with pytest.raises(ConfigError, match=r"eval_size=null .* is for finetune=glue"):
        FinetuneConfig(source="synthetic", tasks=["topic"], eval_size=None)


@pytest.mark.parametrize("name", GLUE_TASKS)
def test_glue_task_from_a_local_copy_in_the_hub_layout(local_glue, name):
    columns, names = OFFICIAL[name]
    task = load_glue_task(name, glue_config(local_glue, name, seed=3))
    assert task.name == name
    assert task.kind == ("regression" if names is None else "classification")
    assert task.metrics == EXPECTED_METRICS.get(name, ("accuracy",))
    if names is not None:
        assert task.label_names == names  # from the ClassLabel feature
        assert task.num_labels == len(names)
    # test = the official validation split (MNLI: matched), whole and in order, labels included
    test_split = "validation_matched" if name == "mnli" else "validation"
    assert [ex.text_a for ex in task.test] == [official_text(name, test_split, columns[0], i) for i in range(ROWS)]
    assert [ex.label for ex in task.test] == pytest.approx([official_label(name, test_split, i) for i in range(ROWS)])
    if len(columns) == 2:
        assert [ex.text_b for ex in task.test] == [official_text(name, test_split, columns[1], i) for i in range(ROWS)]
    else:
        assert all(ex.text_b is None for ex in task.test)
    # dev = eval_size examples of the official train split, disjoint from train, together all of it
    train_texts = [ex.text_a for ex in task.train]
    dev_texts = [ex.text_a for ex in task.dev]
    assert len(dev_texts) == 5 and len(train_texts) == ROWS - 5
    assert not set(train_texts) & set(dev_texts)
    assert set(train_texts) | set(dev_texts) == {official_text(name, "train", columns[0], i) for i in range(ROWS)}
    for example in task.train + task.dev:
        row = int(example.text_a.rsplit(" ", 1)[1])
        assert example.label == pytest.approx(official_label(name, "train", row))
    assert isinstance(task.train[0].label, float if names is None else int)
    if name == "mnli":
        mismatched = task.extra_eval["test_mismatched"]
        assert [ex.text_a for ex in mismatched] == [official_text(name, "validation_mismatched", "premise", i)
                                                   for i in range(ROWS)]
    else:
        assert task.extra_eval == {}
    assert task.empty_texts == 0


def test_glue_dev_is_fixed_by_the_seed_and_train_size_takes_nested_subsets(local_glue):
    def texts(examples):
        return [ex.text_a for ex in examples]

    full = load_glue_task("sst2", glue_config(local_glue, "sst2", seed=1))
    small = load_glue_task("sst2", glue_config(local_glue, "sst2", seed=1, train_size=4))
    again = load_glue_task("sst2", glue_config(local_glue, "sst2", seed=1, train_size=4))
    other_seed = load_glue_task("sst2", glue_config(local_glue, "sst2", seed=2))
    assert texts(small.dev) == texts(full.dev)  # the label budget does not move dev
    assert len(small.train) == 4 and set(texts(small.train)) <= set(texts(full.train))
    assert texts(again.train) == texts(small.train)
    assert texts(other_seed.dev) != texts(full.dev)


def test_load_source_tasks_loads_each_glue_task_in_order(local_glue):
    cfg = FinetuneConfig(source="glue", tasks=["rte", "cola"], hub_name=str(local_glue), eval_size=5)
    assert [task.name for task in load_source_tasks(cfg)] == ["rte", "cola"]
    assert load_source_tasks(FinetuneConfig(source="glue", tasks=[])) == []


def test_glue_hidden_labels_in_the_evaluated_split_are_refused(tmp_path):
    write_glue_config(tmp_path, "sst2", label=lambda name, split, row: -1 if split == "validation" else row % 2)
    with pytest.raises(TaskDataError, match=r"split validation, row 0: label -1 .*hidden test labels"):
        load_glue_task("sst2", glue_config(tmp_path, "sst2"))


def test_glue_missing_column_names_the_columns(tmp_path):
    write_glue_config(tmp_path, "rte", columns=("premise", "hypothesis"))
    with pytest.raises(TaskDataError, match=r"no column 'sentence1'; columns: premise, hypothesis, label, idx"):
        load_glue_task("rte", glue_config(tmp_path, "rte"))


def test_glue_plain_integer_labels_get_the_official_names_and_empty_texts_are_counted(tmp_path):
    from datasets import Value

    write_glue_config(tmp_path, "mrpc", label_feature=Value("int64"),
                      text=lambda name, split, column, row: "" if row == 0 and column == "sentence2" else "a b")
    task = load_glue_task("mrpc", glue_config(tmp_path, "mrpc"))
    assert task.label_names == ["not_equivalent", "equivalent"]
    assert task.empty_texts == 2  # row 0 of train (in train or dev) and of validation (test); kept
    assert len(task.train) + len(task.dev) == ROWS and len(task.test) == ROWS


def test_glue_eval_size_larger_than_train_is_an_error(local_glue):
    with pytest.raises(TaskDataError, match=r"eval_size=20 .* leaves none to train on"):
        load_glue_task("wnli", glue_config(local_glue, "wnli", eval_size=20))


def test_glue_copy_without_the_config_points_to_the_layout(local_glue, tmp_path):
    write_glue_config(tmp_path, "sst2")
    with pytest.raises(TaskDataError, match=r"no GLUE config 'cola'.*README.md listing the configs"):
        load_glue_task("cola", glue_config(tmp_path, "cola"))


def test_glue_option_files_compose(compose_config):
    for name in GLUE_TASKS:
        cfg = compose_config(f"finetune=glue/{name}", tiny=False).finetune
        assert (cfg.source, cfg.tasks, cfg.hub_name) == ("glue", [name], "nyu-mll/glue")
        assert (cfg.train_size, cfg.epochs, cfg.lr, cfg.batch_size, cfg.max_length) == (None, 3, 5e-5, 32, 128)
    assert compose_config("finetune=glue/wnli", tiny=False).finetune.eval_size < 635  # WNLI's train size


def test_files_option_needs_the_files_and_composes_with_them(compose_config, tmp_path):
    with pytest.raises(ConfigError, match="needs finetune.train_file and finetune.test_file"):
        compose_config("finetune=files")
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    for path in (train, test):
        write_delimited(path, ["text_a", "label"], [[f"text {i}", "yes" if i % 2 else "no"] for i in range(8)])
    cfg = compose_config("finetune=files", f"finetune.train_file={train}", f"finetune.test_file={test}",
                         "finetune.eval_size=2").finetune
    [task] = load_source_tasks(cfg)
    assert (task.name, task.label_names, len(task.train), len(task.dev), len(task.test)) == \
        ("custom", ["no", "yes"], 6, 2, 8)


# Local files -------------------------------------------------------------------------------------


def write_delimited(path, header, rows, delimiter=",") -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def files_config(train, test, dev=None, **overrides) -> FinetuneConfig:
    return FinetuneConfig(**{"source": "files", "tasks": ["mine"], "train_file": str(train), "test_file": str(test),
                             "dev_file": str(dev) if dev else None, "train_size": None, "eval_size": 2,
                             **overrides})


def test_csv_classification_maps_columns_and_carves_dev(tmp_path):
    rows = [[f"review {i}", "pos" if i % 3 else "neg", "x"] for i in range(10)]
    write_delimited(tmp_path / "train.csv", ["review", "sentiment", "extra"], rows)
    write_delimited(tmp_path / "test.csv", ["sentiment", "review"], [["pos", "good, \"quoted\" film"], ["neg", ""]])
    cfg = files_config(tmp_path / "train.csv", tmp_path / "test.csv", text_a_column="review",
                       label_column="sentiment", eval_size=3, seed=4)
    task = load_file_task("reviews", cfg)
    assert (task.name, task.kind, task.label_names, task.metrics) == \
        ("reviews", "classification", ["neg", "pos"], ("accuracy", "macro_f1"))
    assert len(task.train) == 7 and len(task.dev) == 3
    assert {ex.text_a for ex in task.train} | {ex.text_a for ex in task.dev} == {f"review {i}" for i in range(10)}
    assert not {ex.text_a for ex in task.train} & {ex.text_a for ex in task.dev}
    assert task.test[0].text_a == 'good, "quoted" film' and task.test[0].label == 1
    assert task.test[0].text_b is None and not task.is_pair_task
    assert task.empty_texts == 1  # the empty test review: kept and counted
    small = load_file_task("reviews", files_config(tmp_path / "train.csv", tmp_path / "test.csv",
                                                   text_a_column="review", label_column="sentiment",
                                                   eval_size=3, seed=4, train_size=2))
    assert small.dev == task.dev and len(small.train) == 2 and set(small.train) <= set(task.train)


def test_tsv_pairs_with_a_dev_file_and_given_label_names(tmp_path):
    header = ["premise", "hypothesis", "gold"]
    # TSV has no quoting: a quote character is text (as in the original GLUE files)
    write_delimited(tmp_path / "train.tsv", header, [['a "quote', f"h {i}", ["yes", "no", "maybe"][i % 3]]
                                                     for i in range(6)], delimiter="\t")
    (tmp_path / "dev.tsv").write_text('premise\thypothesis\tgold\nsaid "hi\tthere\tmaybe\n')
    write_delimited(tmp_path / "test.tsv", header, [["p", "h", "no"]], delimiter="\t")
    cfg = files_config(tmp_path / "train.tsv", tmp_path / "test.tsv", dev=tmp_path / "dev.tsv",
                       text_a_column="premise", text_b_column="hypothesis", label_column="gold",
                       label_names=["yes", "maybe", "no"])
    task = load_file_task("nli", cfg)
    assert task.label_names == ["yes", "maybe", "no"] and task.num_labels == 3
    assert len(task.train) == 6  # a dev file: nothing carved
    assert task.dev == [LabeledExample('said "hi', 1, "there")]
    assert task.test == [LabeledExample("p", 2, "h")]
    assert task.is_pair_task


def test_jsonl_regression_reads_numbers_and_numeric_text(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"s1": f"a {i}", "s2": f"b {i}", "score": i / 2} for i in range(6)])
    write_jsonl(tmp_path / "test.jsonl", [{"s1": "x", "s2": None, "score": " 4.5 "},
                                          {"s1": "y", "s2": "z", "score": 0}])
    cfg = files_config(tmp_path / "train.jsonl", tmp_path / "test.jsonl", task_type="regression",
                       text_a_column="s1", text_b_column="s2", label_column="score")
    task = load_file_task("similarity", cfg)
    assert (task.kind, task.metrics, task.num_labels, task.label_names) == \
        ("regression", ("pearson", "spearman"), 1, ["score"])
    assert task.test == [LabeledExample("x", 4.5, ""), LabeledExample("y", 0.0, "z")]
    assert sorted(ex.label for ex in task.train + task.dev) == [i / 2 for i in range(6)]
    assert task.empty_texts == 1  # JSON null reads as an empty text


def test_tagging_from_csv_and_jsonl_lists(tmp_path):
    write_delimited(tmp_path / "train.csv", ["tokens", "tags"],
                    [["John lives in Paris", "PER O O LOC"], ["Mary left", "PER O"], ["it rains", "O O"],
                     ["", ""]])
    write_jsonl(tmp_path / "test.jsonl", [{"tokens": "Anna saw Rome", "tags": ["PER", "O", "LOC"]}])
    cfg = files_config(tmp_path / "train.csv", tmp_path / "test.jsonl", task_type="tagging", text_a_column="tokens",
                       label_column="tags", eval_size=1)
    task = load_file_task("ner", cfg)
    assert (task.kind, task.label_names, task.metrics) == ("tagging", ["LOC", "O", "PER"], ("accuracy", "macro_f1"))
    assert task.test == [LabeledExample("Anna saw Rome", (2, 1, 0))]
    by_text = {ex.text_a: ex.label for ex in task.train + task.dev}
    assert by_text["John lives in Paris"] == (2, 1, 1, 0) and by_text[""] == ()
    assert task.empty_texts == 1


def test_integer_class_labels_are_sorted_as_numbers(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text_a": f"t{i}", "label": label} for i, label in
                                           enumerate([10, 2, "2", 0, 10])])
    write_jsonl(tmp_path / "test.jsonl", [{"text_a": "t", "label": 2}])
    task = load_file_task("numbers", files_config(tmp_path / "train.jsonl", tmp_path / "test.jsonl", eval_size=1))
    assert task.label_names == ["0", "2", "10"]
    assert task.test[0].label == 1


def test_files_source_reads_one_task(tmp_path):
    cfg = FinetuneConfig(source="files", tasks=["a", "b"], train_file="x.csv", test_file="y.csv")
    with pytest.raises(ConfigError, match=r"one name"):
        load_source_tasks(cfg)


# Bad data: every message names the file (and line) and what is valid ------------------------------------


def _train_and_test(tmp_path, train_rows, test_rows=None, header=("text_a", "label"), suffix=".csv"):
    train, test = tmp_path / f"train{suffix}", tmp_path / f"test{suffix}"
    write_delimited(train, list(header), train_rows)
    write_delimited(test, list(header), test_rows or train_rows[:1])
    return train, test


def test_missing_csv_column_names_the_file_and_the_available_columns(tmp_path):
    train, test = _train_and_test(tmp_path, [["a", "x"]] * 4, header=("sentence", "label"))
    with pytest.raises(TaskDataError, match=r"train\.csv: no column 'text_a' \(columns: sentence, label\)"):
        load_file_task("t", files_config(train, test))


def test_missing_jsonl_field_names_the_line_and_the_fields(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text_a": "a", "label": "x"}] * 3 + [{"text": "b", "label": "x"}])
    with pytest.raises(TaskDataError, match=r"train\.jsonl:4: no column 'text_a' \(columns: text, label\)"):
        load_file_task("t", files_config(tmp_path / "train.jsonl", tmp_path / "train.jsonl"))


def test_label_outside_the_given_label_set_names_row_and_valid_labels(tmp_path):
    train, test = _train_and_test(tmp_path, [["a", "pos"], ["b", "neg"], ["c", "pos"], ["d", "neutral"]])
    with pytest.raises(TaskDataError, match=r"train\.csv:5: label 'neutral' is not one of finetune\.label_names: "
                                            r"neg, pos"):
        load_file_task("t", files_config(train, test, label_names=["neg", "pos"]))


def test_test_label_unseen_in_train_names_the_test_file_and_line(tmp_path):
    train, test = _train_and_test(tmp_path, [["a", "pos"], ["b", "neg"]] * 2, [["a", "pos"], ["b", "meh"]])
    with pytest.raises(TaskDataError, match=r"test\.csv:3: label 'meh' is not one of the labels of .*train\.csv: "
                                            r"neg, pos"):
        load_file_task("t", files_config(train, test))


def test_non_numeric_regression_label_names_file_and_line(tmp_path):
    train, test = _train_and_test(tmp_path, [["a", "1.5"], ["b", "2"], ["c", "high"], ["d", "3"]])
    with pytest.raises(TaskDataError, match=r"train\.csv:4: label 'high' in column 'label' is not a number"):
        load_file_task("t", files_config(train, test, task_type="regression"))


def test_tag_count_mismatch_names_file_and_line(tmp_path):
    train, test = _train_and_test(tmp_path, [["a b", "X Y"], ["c d e", "X Y"]], header=("words", "tags"))
    with pytest.raises(TaskDataError, match=r"train\.csv:3: 2 tags in column 'tags' for 3 words in column 'words'"):
        load_file_task("t", files_config(train, test, task_type="tagging", text_a_column="words",
                                         label_column="tags"))


def test_malformed_rows_and_files(tmp_path):
    train, test = _train_and_test(tmp_path, [["a", "x"], ["b", "y"]])
    bad_train_files = [  # (file, its content, the error naming it)
        ("short.csv", "text_a,label\na,x\nb\n", r"short\.csv:3: 1 fields where the header has 2"),
        ("broken.jsonl", '{"text_a": "a", "label": "x"}\n{"text_a": \n', r"broken\.jsonl:2: invalid JSON"),
        ("blank.csv", "text_a,label\na, \n", r"blank\.csv:2: empty label"),
        ("data.parquet", "", r"finetune\.train_file: .*data\.parquet must end in \.csv, \.tsv, \.jsonl"),
    ]
    for name, content, error in bad_train_files:
        (tmp_path / name).write_text(content)
        with pytest.raises(TaskDataError, match=error):
            load_file_task("t", files_config(tmp_path / name, test))
    with pytest.raises(TaskDataError, match=r"finetune\.test_file: .*missing\.csv is not a file"):
        load_file_task("t", files_config(train, tmp_path / "missing.csv"))
    with pytest.raises(TaskDataError, match=r"eval_size=2 .* leaves none to train on; lower finetune\.eval_size "
                                            r"or give finetune\.dev_file"):
        load_file_task("t", files_config(train, test))


def test_an_unclosed_quote_is_an_error_naming_where_the_record_starts(tmp_path):
    """Read leniently, the quote opened on line 3 would swallow lines 4-6 into one text."""
    bad = [("unclosed.csv", 'text_a,label\nfine,pos\n"great film,pos\nawful,neg\nfine,pos\nbad,neg\n', 3),
           ("text_after_quote.csv", 'text_a,label\nfine,pos\n"quoted" tail,neg\n', 3),
           ("unclosed_last_column.csv", 'label,text_a\npos,fine\npos,"great film\nneg,awful\n', 3)]
    for name, content, line in bad:
        (tmp_path / name).write_text(content)
        with pytest.raises(TaskDataError, match=rf"{name}:{line}: not a valid CSV record from this line on"):
            read_rows(tmp_path / name, files_config(tmp_path / name, tmp_path / name))


def test_csv_quotes_that_are_text_still_read(tmp_path):
    """strict parsing refuses only broken quoting: doubled quotes, and quotes inside an
    unquoted field, are text as before."""
    path = tmp_path / "train.csv"
    path.write_text('text_a,label\nhe said "hi" there,pos\n"a ""quoted"" word, and a comma",neg\n')
    rows = read_rows(path, files_config(path, path))
    assert [(row.text_a, row.label, row.line) for row in rows] == [
        ('he said "hi" there', "pos", 2), ('a "quoted" word, and a comma', "neg", 3)]


def test_a_csv_field_longer_than_csvs_default_cap_is_read(tmp_path):
    """csv caps a field at 131,072 characters by default; a long document is a text like any other."""
    path = tmp_path / "train.csv"
    long_text = "word " * 40_000  # 200,000 characters
    write_delimited(path, ["text_a", "label"], [[long_text, "pos"], ["short", "neg"]])
    rows = read_rows(path, files_config(path, path))
    assert [(len(row.text_a), row.line) for row in rows] == [(len(long_text), 2), (5, 3)]


def test_split_indices_are_disjoint_seeded_and_nested():
    train, dev = split_train_indices(100, 10, None, seed=0, where="x")
    assert len(dev) == 10 and len(train) == 90 and not set(train) & set(dev)
    assert set(train) | set(dev) == set(range(100)) and train == sorted(train)
    small, same_dev = split_train_indices(100, 10, 20, seed=0, where="x")
    assert same_dev == dev and set(small) <= set(train) and len(small) == 20
    assert split_train_indices(100, 10, None, seed=1, where="x")[1] != dev
    assert split_train_indices(5, 0, 50, seed=0, where="x") == ([0, 1, 2, 3, 4], [])


def test_training_on_local_glue_tasks_reports_the_glue_average(local_glue, compose_config, tmp_path):
    """The whole path a real GLUE run takes (load, fine-tune, metrics, GLUE average), offline."""
    from pretrainer.pipeline import train

    cfg = compose_config("finetune=glue/stsb", f"finetune.hub_name={local_glue}", "finetune.tasks=[cola,stsb,mnli]",
                         "finetune.eval_size=4", "finetune.epochs=1", "finetune.max_length=32",
                         "data.num_documents=200", "trainer.max_steps=2")
    summary = train(cfg, tmp_path / "run")
    results = summary["finetune"]
    assert results["stsb"]["kind"] == "regression" and set(results["stsb"]["pretrained"]["test"]) == {
        "pearson", "spearman"}
    assert "test_mismatched" in results["mnli"]["pretrained"]  # MNLI's second evaluation set
    expected = np.mean([np.mean([results[t]["pretrained"]["test"][m] for m in results[t]["metrics"]])
                        for t in ("cola", "stsb", "mnli")])
    assert summary["glue_average"]["pretrained"] == pytest.approx(expected)
