"""Packing at corpus scale: batched writes, worker processes, bounded memory, streamed hub data,
and scripts/bench_packing.py."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pretrainer.config import DataConfig, TokenizerConfig
from pretrainer.data import pack_workers, packing
from pretrainer.data.blocks import load_or_pack
from pretrainer.data.pack_workers import pool_packed
from pretrainer.data.packing import SPLITS, document_batches, encode_documents, is_eval_document, pack_to_cache
from pretrainer.data.sources import open_corpus
from pretrainer.errors import ConfigError
from pretrainer.tokenization import train_tokenizer
from tests.test_scripts import SCRIPTS

WORDS = "the cat sat on a mat while dogs ran far and birds sang over green hills near blue lakes".split()
MAX_DOCUMENT_CHARS = 300  # some documents below are longer: they are encoded as pieces
FILES = ("train.bin", "train.words.bin", "eval.bin", "eval.words.bin", "meta.json")


def make_documents(count: int, seed: int = 0) -> list[str]:
    """Short documents, a few long ones, an empty one, and one spelling special tokens."""
    rng = random.Random(seed)
    documents = [" ".join(rng.choice(WORDS) for _ in range(rng.choice([3, 12, 30, 90]))) for _ in range(count)]
    documents[3], documents[4] = "", "a [MASK] b [SEP] c"
    return documents


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TokenizerConfig(vocab_size=200, sample_documents=300), iter(make_documents(300)))


def entry_bytes(entry: Path) -> dict[str, bytes]:
    return {name: (entry / name).read_bytes() for name in FILES}


def test_batched_packing_writes_the_bytes_of_encoding_each_document_alone(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(packing, "ENCODE_BATCH_DOCUMENTS", 64)
    documents = make_documents(500)
    meta = pack_to_cache(documents, tokenizer, 0.1, tmp_path / "entry", MAX_DOCUMENT_CHARS, num_proc=1)
    expected = {split: ([], []) for split in SPLITS}
    sep = tokenizer.token_to_id("[SEP]")
    for index, document in enumerate(documents):
        [(ids, starts)] = encode_documents(tokenizer, [document], MAX_DOCUMENT_CHARS)
        ids_out, starts_out = expected["eval" if is_eval_document(index, 0.1) else "train"]
        ids_out += [*ids, sep]
        starts_out += [*starts.tolist(), 1]
    for split, (ids, starts) in expected.items():
        assert (tmp_path / "entry" / f"{split}.bin").read_bytes() == np.array(ids, dtype=np.uint16).tobytes()
        assert (tmp_path / "entry" / f"{split}.words.bin").read_bytes() == np.array(starts, dtype=np.uint8).tobytes()
        assert meta[f"{split}_tokens"] == len(ids)
    assert meta["documents"] == 500


def test_two_worker_processes_pack_the_bytes_of_one_under_the_same_cache_key(tokenizer, tmp_path, monkeypatch,
                                                                             capfd):
    monkeypatch.setattr(packing, "ENCODE_BATCH_DOCUMENTS", 40)  # many batches in flight across the workers
    pooled = []
    monkeypatch.setattr(packing, "pool_packed", lambda *args: pooled.append(args[2]) or pool_packed(*args))
    documents = make_documents(1000, seed=1)
    tokenizer.encode_batch(documents[:50])  # the tokenizer's threads ran in this process before the workers start

    def pack(num_proc: int, cache_dir: Path):
        return load_or_pack(iter(documents), tokenizer, "corpus", "tokenizer", 16, 0.05, cache_dir,
                            max_document_chars=MAX_DOCUMENT_CHARS, num_proc=num_proc)

    one, two = pack(1, tmp_path / "one"), pack(2, tmp_path / "two")
    assert pooled == [2]  # num_proc=1 packed in this process, num_proc=2 with two workers
    assert one.cache_entry.name == two.cache_entry.name  # num_proc is not part of the cache key
    assert entry_bytes(one.cache_entry) == entry_bytes(two.cache_entry)
    assert one.train.num_blocks > 100 and one.eval.num_blocks > 0
    assert "huggingface/tokenizers" not in capfd.readouterr().err  # no fork-after-parallelism warning


def test_auto_num_proc_packs_a_small_corpus_without_starting_workers(tokenizer, tmp_path, monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("workers started for a corpus smaller than AUTO_POOL_MIN_CHARS")

    monkeypatch.setattr(packing, "pool_packed", no_pool)
    monkeypatch.setattr(packing, "ENCODE_BATCH_DOCUMENTS", 40)
    meta = pack_to_cache(make_documents(300), tokenizer, 0.1, tmp_path / "entry", num_proc=None)
    assert meta["documents"] == 300


def test_batches_end_at_the_document_count_or_the_character_budget(monkeypatch):
    monkeypatch.setattr(packing, "ENCODE_BATCH_DOCUMENTS", 3)
    monkeypatch.setattr(packing, "ENCODE_BATCH_CHARS", 10)
    documents = ["aaaa", "bbbb", "ccc", "d", "e", "f", "g" * 25, "h"]
    batches = list(document_batches(iter(documents)))
    assert batches == [(0, ["aaaa", "bbbb"]), (2, ["ccc", "d", "e"]), (5, ["f"]), (6, ["g" * 25]), (7, ["h"])]


def test_num_proc_must_be_positive_or_null():
    with pytest.raises(ConfigError, match="data.num_proc"):
        DataConfig(num_proc=0)
    with pytest.raises(ConfigError, match="data.num_proc"):
        pack_workers.worker_count(0)
    assert pack_workers.worker_count(None) >= 1


def test_peak_memory_does_not_grow_with_the_corpus(tokenizer, tmp_path, monkeypatch):
    """Documents are streamed from a generator: 10x the documents, the same peak of Python and numpy
    allocations (tracemalloc sees both)."""
    monkeypatch.setattr(packing, "ENCODE_BATCH_DOCUMENTS", 100)

    def peak_bytes(count: int) -> int:
        rng = random.Random(count)
        documents = (" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(count))
        tracemalloc.start()
        try:
            pack_to_cache(documents, tokenizer, 0.1, tmp_path / f"entry-{count}", num_proc=1)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak_bytes(1_000), peak_bytes(10_000)
    assert large < 1.5 * small, f"peak {small:,} bytes for 1,000 documents, {large:,} for 10,000"


# Streaming a hub dataset ---------------------------------------------------------------------------


@pytest.fixture
def hub_directory(tmp_path, offline_hub):
    """A local directory laid out like a hub dataset repo (parquet and jsonl shards), offline."""
    data = tmp_path / "corpus" / "data"
    data.mkdir(parents=True)
    texts = make_documents(1500) + [""]  # one empty text: skipped by both readers
    pq.write_table(pa.table({"text": texts[:800], "id": list(range(800))}), data / "train-00000-of-00002.parquet")
    pq.write_table(pa.table({"text": texts[800:], "id": list(range(800, len(texts)))}),
                   data / "train-00001-of-00002.parquet")
    return tmp_path / "corpus", [text for text in texts if text]


def test_streaming_hub_source_yields_the_documents_of_the_downloaded_one(hub_directory, tmp_path):
    directory, texts = hub_directory
    streamed = open_corpus(DataConfig(source="hub", name=str(directory), streaming=True))
    assert list(streamed.documents()) == texts
    assert not list((tmp_path / "hf_cache").rglob("*.arrow"))  # nothing converted to Arrow on disk
    downloaded = open_corpus(DataConfig(source="hub", name=str(directory)))
    assert list(downloaded.documents()) == texts
    again = open_corpus(DataConfig(source="hub", name=str(directory), streaming=True, max_documents=5))
    assert list(again.documents()) == texts[:5]
    assert open_corpus(DataConfig(source="hub", name=str(directory), streaming=True)).fingerprint \
        == streamed.fingerprint


def test_streaming_hub_source_fingerprint_follows_the_files_and_checks_the_column(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    shard = tmp_path / "corpus" / "data" / "train.jsonl"
    shard.parent.mkdir(parents=True)
    shard.write_text("".join(json.dumps({"text": text, "title": "t"}) + "\n" for text in ["one", "two"]))
    cfg = DataConfig(source="hub", name=str(tmp_path / "corpus"), streaming=True)
    before = open_corpus(cfg).fingerprint
    shard.write_text(shard.read_text() + json.dumps({"text": "three", "title": "t"}) + "\n")
    modified = shard.stat().st_mtime + 2  # the key follows each file's mtime (as datasets' cache does): a new one
    os.utime(shard, (modified, modified))
    after = open_corpus(cfg)
    assert after.fingerprint != before and list(after.documents()) == ["one", "two", "three"]
    with pytest.raises(ConfigError, match="columns: text, title"):
        open_corpus(DataConfig(source="hub", name=str(tmp_path / "corpus"), streaming=True, text_column="body"))


# scripts/bench_packing.py -------------------------------------------------------------------------


def load_bench():
    spec = importlib.util.spec_from_file_location("pretrainer_bench_packing", SCRIPTS / "bench_packing.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_prints_its_table_and_json_at_a_tiny_size(tmp_path, capsys):
    path = tmp_path / "rows.json"
    load_bench().main(["--sizes", "0.05", "--num-proc", "1,2", "--sample-documents", "200",
                       "--workdir", str(tmp_path / "work"), "--json", str(path)])
    out = capsys.readouterr().out
    assert "| corpus MB |" in out and "vs encode" in out and f"JSON: {path}" in out
    rows = json.loads(path.read_text())["rows"]
    assert [row["mode"] for row in rows] == ["encode_batch", "pack num_proc=1", "pack num_proc=2"]
    assert len({row["tokens"] for row in rows}) == 1  # the same text, the same tokens, each way
    assert all(row["mb_per_s"] > 0 and row["rss_mb"] > 0 for row in rows)
    assert rows[2]["worker_rss_mb"] > 0
