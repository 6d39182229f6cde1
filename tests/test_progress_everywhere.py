"""Progress and console output where stdout is not a terminal (a log file, SLURM, `| tee`):
tokenizer training and packing print progress lines with their counts, and tables and long
lines are printed whole, not cut or wrapped at 80 columns. pytest's captured stdout is not a
terminal, which is what these tests rely on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pretrainer import loggers
from pretrainer.config import TokenizerConfig
from pretrainer.data import packing
from pretrainer.tokenization import train_tokenizer

WORDS = "the cat sat on a mat while rangers walked past old red barns near quiet rivers".split()


def documents(n: int) -> list[str]:
    return [" ".join(WORDS[(i + k) % len(WORDS)] for k in range(8 + i % 5)) + " ." for i in range(n)]


@pytest.fixture
def every_update(monkeypatch):
    """A progress line at every update, as a log would get one every LINE_EVERY_S."""
    monkeypatch.setattr(loggers.ProgressBar, "LINE_EVERY_S", 0.0)
    monkeypatch.delenv("COLUMNS", raising=False)


def out_lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_tokenizer_training_counts_the_sample_as_it_is_read(every_update, capsys):
    tokenizer = train_tokenizer(TokenizerConfig(name="word", vocab_size=40, sample_documents=1000),
                                iter(documents(250)))
    lines = out_lines(capsys)
    sample = [line for line in lines if line.startswith("tokenizer sample ")]
    # Every 100 documents against the cap of 1000, then the corpus ended: 250 of 250, done.
    assert [line.split("  ")[0] for line in sample] == [
        "tokenizer sample 100/1000 documents (10%)", "tokenizer sample 200/1000 documents (20%)",
        "tokenizer sample 250/1000 documents (25%)", "tokenizer sample 250/250 documents (100%)"]
    assert all("elapsed 0:00:0" in line and " ETA " in line for line in sample)
    assert any(line.startswith("tokenizer: training word (vocab_size 40) on 250 documents (") for line in lines)
    assert f"tokenizer: trained word, {tokenizer.get_vocab_size()} tokens, in " in "\n".join(lines)
    assert not any("━" in line for line in lines)  # no frame of a live bar in a log


def test_without_a_line_interval_reached_a_log_still_gets_the_final_counts(monkeypatch, capsys):
    monkeypatch.setattr(loggers.ProgressBar, "LINE_EVERY_S", 3600.0)
    train_tokenizer(TokenizerConfig(name="char", vocab_size=40, sample_documents=50), iter(documents(300)))
    sample = [line for line in out_lines(capsys) if line.startswith("tokenizer sample ")]
    assert len(sample) == 1 and sample[0].startswith("tokenizer sample 50/50 documents (100%)")


def pack(tmp_path: Path, docs, num_proc: int) -> dict:
    tokenizer = train_tokenizer(TokenizerConfig(name="word", vocab_size=40, sample_documents=100), iter(documents(100)))
    return packing.pack_to_cache(docs, tokenizer, 0.1, tmp_path / "blocks" / "entry", num_proc=num_proc)


@pytest.mark.parametrize("num_proc", [1, 2])
def test_packing_counts_documents_and_tokens_as_each_batch_is_written(every_update, capsys, monkeypatch, tmp_path,
                                                                      num_proc):
    monkeypatch.setattr(packing, "ENCODE_BATCH_DOCUMENTS", 40)  # batches are cut in the parent, workers or not
    monkeypatch.setattr(packing, "AUTO_POOL_MIN_CHARS", 0)
    meta = pack(tmp_path, iter(documents(130)), num_proc)  # a stream: no total, no ETA
    lines = out_lines(capsys)
    progress = [line for line in lines if line.startswith("pack ")]
    counts = [int(re.match(r"pack (\d+)", line)[1]) for line in progress]
    assert counts == [40, 80, 120, 130, 130]  # one line per batch written, then the final figures
    assert "ETA" not in progress[0] and progress[-1].startswith("pack 130/130 documents (100%)")
    tokens = meta["train_tokens"] + meta["eval_tokens"]
    assert f"  {tokens:,} tokens  " in progress[-1] and " tok/s" in progress[-1]
    assert meta["documents"] == 130
    assert f"packed 130 documents: {meta['train_tokens']:,} train + {meta['eval_tokens']:,} eval tokens in " \
        in "\n".join(lines)


def test_packing_a_sized_corpus_gives_an_eta(every_update, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(packing, "ENCODE_BATCH_DOCUMENTS", 50)
    pack(tmp_path, documents(100), num_proc=1)
    progress = [line for line in out_lines(capsys) if line.startswith("pack ")]
    assert progress[0].startswith("pack 50/100 documents (50%)") and " ETA 0:00:0" in progress[0]


def wide_summary() -> dict:
    task = "a_task_with_a_name_long_enough_that_its_row_is_wider_than_eighty_columns"
    scores = {"dev": {"accuracy": 0.5}, "test": {"accuracy": 0.625}}
    return {"run_name": "wide", "finetune": {task: {"metrics": ["accuracy"], "chance": 0.5, "pretrained": scores,
                                                    "scratch": scores}}}


def test_a_table_in_a_log_is_printed_whole_on_one_line_per_row(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    loggers.print_results_table(wide_summary())
    row = next(line for line in out_lines(capsys) if "a_task_with_a_name" in line)
    assert len(row) > 120  # was cut to 80 columns, the task name folded over three lines
    assert "a_task_with_a_name_long_enough_that_its_row_is_wider_than_eighty_columns" in row
    assert row.rstrip().endswith("0.625 │")  # every column there, the last one included


def test_a_long_message_in_a_log_is_one_line(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    message = "results in " + "/very/long/run/dir" * 10
    loggers.info(message)
    assert out_lines(capsys) == [message]


def test_columns_is_honoured_off_a_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert loggers.console.width == 100
    monkeypatch.delenv("COLUMNS")
    assert loggers.console.width == loggers.LOG_WIDTH


def test_the_report_prints_to_a_log_unwrapped(capsys, monkeypatch, tmp_path):
    from pretrainer.report import build

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(build, "write_plots", lambda *args: ([], []))  # the plots are not what is tested
    scores = {"dev": {"accuracy": 0.5}, "test": {"accuracy": 0.6}, "dev_std": {}, "test_std": {}, "seeds": []}
    for number, objective in enumerate(["mlm", "clm"]):
        run = tmp_path / str(number)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(f"- objective={objective}\n")
        (run / "summary.json").write_text(json.dumps({
            "run_name": run.name, "choices": {"objective": objective}, "pretrain": {}, "wall_time_s": 1.0,
            "finetune": {"topic": {"kind": "classification", "metrics": ["accuracy"], "chance": 0.5,
                                   "pretrained": scores, "scratch": scores}}}))
    build.write_report([tmp_path])  # to the shared console: stdout, not a terminal here
    lines = out_lines(capsys)
    assert any(len(line) > 80 and line.startswith("Test score of each task's primary metric") for line in lines)
    assert lines[-1].startswith("wrote ") and lines[-1].endswith("report.csv")  # the file list on one line
