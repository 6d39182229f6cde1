"""Bad input through the CLI: exit code 2, one line that says what and where (file and line
where there is one), no traceback, and nothing expensive done first."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.conftest import RUN, assert_one_line_error

INVALID_VALUES = {  # override -> a fragment of its error
    "trainer.max_steps=0": "trainer.max_steps must be positive",
    "trainer.max_steps=-5": "trainer.max_steps must be positive",
    "trainer.max_tokens=-1": "trainer.max_tokens must be positive",
    "trainer.max_flops=-1e9": "trainer.max_flops must be positive",
    "trainer.warmup_steps=-1": "trainer.warmup_steps must be >= 0",
    "trainer.grad_clip=-1": "trainer.grad_clip must be >= 0",
    "trainer.weight_decay=-0.1": "trainer.weight_decay must be >= 0",
    "trainer.checkpoint_every=-1": "trainer.checkpoint_every must be >= 0",
    "trainer.lr=-1": "trainer.lr must be positive",
    "trainer.lr=0": "trainer.lr must be positive",
    "trainer.lr=nan": "trainer.lr must be positive",
    "trainer.beta2=1.0": "trainer.beta2=1.0 must lie in",
    "trainer.keep_checkpoints=0": "trainer.keep_checkpoints must be positive",
    "trainer.max_skips=0": "trainer.max_skips must be positive",
    "trainer.nonfinite=ignore": "trainer.nonfinite='ignore' is not valid; choose one of: fail, skip",
    "data.decode_errors=ignore": "data.decode_errors='ignore' is not valid; choose one of: strict, replace",
    "data.verify_cache=never": "data.verify_cache='never' is not valid; choose one of: auto, sizes, full",
    "data.max_documents=0": "data.max_documents must be positive",
    "tokenizer.max_document_chars=10": "tokenizer.max_document_chars=10 is too small",
    "finetune.decode_errors=skip": "finetune.decode_errors='skip' is not valid",
}


@pytest.mark.parametrize("override", list(INVALID_VALUES))
def test_an_invalid_value_fails_before_any_work(override, run_cli, tmp_path):
    cache = tmp_path / "cache"
    result = run_cli("train", *RUN, override, f"cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_line_error(result, 2, INVALID_VALUES[override])
    assert not cache.exists()  # no tokenizer trained, no corpus packed


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def corpus_lines(count: int = 200) -> list[str]:
    words = "the cat sat on a mat while dogs ran far and birds sang over green hills".split()
    return [" ".join(words[(i + j) % len(words)] for j in range(12)) for i in range(count)]


def text_files_run(tmp_path: Path, corpus: Path, *overrides: str) -> list[str]:
    return ["train", *RUN, "data=text_files", f"data.paths=[{corpus}]", f"cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}", *overrides]


def test_invalid_utf8_in_a_corpus_names_file_and_line(run_cli, tmp_path):
    lines = [line.encode() for line in corpus_lines()]
    lines[2] = b"caf\xe9 au lait"  # Latin-1, not UTF-8
    corpus = write(tmp_path / "corpus.txt", b"\n".join(lines) + b"\n")
    result = run_cli(*text_files_run(tmp_path, corpus))
    assert_one_line_error(result, 2, f"{corpus}:3", "invalid UTF-8", "data.decode_errors=replace")
    assert not (tmp_path / "run" / "checkpoints").exists()
    replaced = run_cli(*text_files_run(tmp_path, corpus, "data.decode_errors=replace"))
    assert replaced.code == 0, replaced.stderr[-2000:]


def test_a_bad_jsonl_corpus_line_is_one_line(run_cli, tmp_path):
    records = [f'{{"text": "{line}"}}' for line in corpus_lines()]
    records[4] = '{"text": "unterminated'
    corpus = write(tmp_path / "corpus.jsonl", "\n".join(records) + "\n")
    assert_one_line_error(run_cli(*text_files_run(tmp_path, corpus)), 2, f"{corpus}:5", "invalid JSON")


def test_a_corpus_smaller_than_one_block_fails_before_training(run_cli, tmp_path):
    corpus = write(tmp_path / "corpus.txt", "a tiny corpus\nof two lines\n")
    result = run_cli(*text_files_run(tmp_path, corpus, "tokenizer=char", "tokenizer.vocab_size=40"))
    assert_one_line_error(result, 2, "packs into no training block of data.block_size=32")
    assert not (tmp_path / "run" / "checkpoints").exists()


FINETUNE_FILE_FAULTS = {  # name -> (train file content, fragment)
    "missing label column": (b"text_a,target\nsome text,a\n", "no column 'label'"),
    "invalid UTF-8": (b"text_a,label\nsome text,a\ncaf\xe9,b\n", ":3: invalid UTF-8"),
    "unknown label in test": (b"text_a,label\nsome text,a\nother,b\n", None),
}


@pytest.mark.parametrize("fault", list(FINETUNE_FILE_FAULTS))
def test_fine_tune_files_are_checked_before_pretraining(fault, run_cli, tmp_path):
    content, fragment = FINETUNE_FILE_FAULTS[fault]
    train_file = write(tmp_path / "train.csv", content)
    test_file = write(tmp_path / "test.csv", "text_a,label\nsome text,zzz\n")
    cache = tmp_path / "cache"
    result = run_cli("train", *RUN, "finetune=files", "finetune.tasks=[mine]", f"finetune.train_file={train_file}",
                     f"finetune.test_file={test_file}", "finetune.eval_size=1", f"cache_dir={cache}",
                     f"hydra.run.dir={tmp_path / 'run'}")
    expected = fragment or f"{test_file}:2: label 'zzz'"
    assert_one_line_error(result, 2, expected)
    assert not (cache / "tokenizers").exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_a_full_disk_while_packing_is_one_line_and_leaves_no_staging_dir(run_cli, monkeypatch, tmp_path):
    import errno

    from pretrainer.data import packing

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / "blocks" / "train.bin"))

    monkeypatch.setattr(packing, "encode_documents", no_space)
    cache = tmp_path / "cache"
    result = run_cli("train", *RUN, f"cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_line_error(result, 2, "no space left on the device writing", "train.bin", "resume=true")
    assert [p.name for p in (cache / "blocks").iterdir()] == []


def test_a_garbled_tokenizer_of_a_run_is_one_line(run_cli, run_config, tmp_path):
    from pretrainer.pipeline import train

    run_dir = tmp_path / "run"
    train(run_config("arch.norm_position=post", "arch.positions=learned"), run_dir)  # exportable as BertForMaskedLM
    tokenizer = run_dir / "tokenizer" / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text()[:500])
    result = run_cli("finetune", f"init={run_dir}", "finetune.tasks=[topic]", f"hydra.run.dir={tmp_path / 'ft'}")
    assert_one_line_error(result, 2, f"{tokenizer} is not a readable tokenizer.json")
    exported = run_cli("export", str(run_dir))
    assert_one_line_error(exported, 2, f"{tokenizer} is not a readable tokenizer.json")


@pytest.mark.parametrize(("override", "fragments"), [
    ("trainer.lrr=0.1", ["unknown key trainer.lrr (did you mean trainer.lr?)", "valid keys of trainer:", "max_steps"]),
    ("foo=1", ["unknown key foo", "valid top-level keys:", "trainer"]),
    ("finetune.columns.tset.text_a=x", ["did you mean finetune.columns.test?", "valid keys of finetune.columns:"]),
])
def test_an_unknown_key_names_the_valid_ones_instead_of_suggesting_plus(override, fragments, run_cli, tmp_path):
    result = run_cli("train", *RUN, override, f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_line_error(result, 2, *fragments)
    assert "+" not in result.stderr and not (tmp_path / "run").exists()


def test_config_groups_are_not_unknown_keys(run_cli, tmp_path):
    result = run_cli("train", "debug=fast", "experiment=layernorm", "arch/size=mini", "--cfg", "job")
    assert result.code == 0 and "n_layer: 4" in result.stdout, result.stderr[-2000:]


def test_a_config_error_leaves_no_empty_run_dir(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "mine").mkdir(parents=True)  # something of the user's: kept
    result = run_cli("train", *RUN, "objective=clm", "arch=encoder")
    assert_one_line_error(result, 2, "objective=clm cannot train arch=encoder")
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["mine"]  # the refused run's dir is gone
    result = run_cli("train", *RUN, "objective=clm", "arch=encoder")
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["mine"]


def test_an_unreachable_hub_is_one_line_pointing_at_a_local_copy(run_cli, tmp_path, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    result = run_cli("train", *RUN, "finetune=glue/sst2", "finetune.max_length=64", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_line_error(result, 2, "cannot reach the Hugging Face hub for nyu-mll/glue",
                          "finetune.hub_name=DIR", "HF_HUB_OFFLINE=1")
    assert not (tmp_path / "run").exists()  # refused before any work: nothing left behind


def test_a_run_refused_because_another_process_holds_its_dir_never_removes_that_dir(run_cli, tmp_path):
    import fcntl

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")  # another process's run, still packing its corpus
    (run / "cli.log").write_text("")
    with open(run / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # that process holds the dir
        result = run_cli("train", *RUN, f"hydra.run.dir={run}", "resume=true")
        assert result.code == 2 and "in use" in result.stderr
        result = run_cli("train", *RUN, f"hydra.run.dir={run}", "objective=clm", "arch=encoder")  # a config error
        assert result.code == 2
    assert (run / ".hydra" / "config.yaml").is_file() and (run / "cli.log").is_file()
