"""Corpus sources (local files, hub format offline), packing, and the on-disk caches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pretrainer.config import DataConfig, TokenizerConfig
from pretrainer.data.blocks import epoch_order_indices, is_eval_document, load_or_pack
from pretrainer.data.sources import CorpusFormatError, open_corpus
from pretrainer.tokenization import load_or_train_tokenizer, tokenizer_cache_entry, tokenizer_fingerprint

TOKENIZER = TokenizerConfig(vocab_size=200, sample_documents=1000)


def test_txt_has_one_document_per_non_empty_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("first doc\n\n  \nsecond doc\n")
    corpus = open_corpus(DataConfig(source="text_files", paths=[str(path)]))
    assert list(corpus.documents()) == ["first doc", "second doc"]


def test_jsonl_reads_the_text_column_and_max_documents(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(json.dumps({"body": f"doc {i}", "id": i}) for i in range(5)) + "\n")
    corpus = open_corpus(DataConfig(source="text_files", paths=[str(path)], text_column="body", max_documents=3))
    assert list(corpus.documents()) == ["doc 0", "doc 1", "doc 2"]


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": broken\n')
    corpus = open_corpus(DataConfig(source="text_files", paths=[str(path)]))
    with pytest.raises(CorpusFormatError, match=r"bad\.jsonl:2: invalid JSON"):
        list(corpus.documents())


def test_jsonl_missing_column_lists_the_fields(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text('{"content": "x", "id": 1}\n')
    corpus = open_corpus(DataConfig(source="text_files", paths=[str(path)]))
    with pytest.raises(CorpusFormatError, match=r"other\.jsonl:1: no field 'text' \(found: content, id\)"):
        list(corpus.documents())


def test_hub_source_loads_a_local_dataset_directory_offline(tmp_path, offline_hub):
    """The hub path runs `datasets.load_dataset` on a directory laid out like a hub repo."""
    repo = tmp_path / "my_corpus" / "data"
    repo.mkdir(parents=True)
    rows = [{"text": f"document number {i}", "title": f"t{i}"} for i in range(20)] + [{"text": "", "title": "empty"}]
    (repo / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    corpus = open_corpus(DataConfig(source="hub", name=str(tmp_path / "my_corpus"), split="train"))
    docs = list(corpus.documents())
    assert docs == [f"document number {i}" for i in range(20)]  # empty texts skipped
    with pytest.raises(ValueError, match="columns: text, title"):
        open_corpus(DataConfig(source="hub", name=str(tmp_path / "my_corpus"), text_column="body"))


def test_text_file_fingerprint_follows_content(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("one\ntwo\n")
    before = open_corpus(DataConfig(source="text_files", paths=[str(path)])).fingerprint
    path.write_text("one\nthree\n")
    after = open_corpus(DataConfig(source="text_files", paths=[str(path)])).fingerprint
    assert before != after


def test_eval_documents_are_spread_at_the_configured_fraction():
    flags = [is_eval_document(i, 0.02) for i in range(10_000)]
    assert sum(flags) == 200
    assert sum(flags[:5000]) == 100


def test_epoch_order_visits_every_block_once_per_epoch_and_is_pure():
    first_epoch = epoch_order_indices(0, 50, 50, seed=3)
    assert sorted(first_epoch.tolist()) == list(range(50))
    assert np.array_equal(epoch_order_indices(10, 5, 50, seed=3), first_epoch[10:15])
    spanning = epoch_order_indices(45, 10, 50, seed=3)  # crosses into the second epoch
    assert np.array_equal(spanning[:5], first_epoch[45:])
    assert not np.array_equal(epoch_order_indices(0, 50, 50, seed=4), first_epoch)


def _pack(text_corpus, cache_dir, block_size=16):
    corpus = open_corpus(DataConfig(source="text_files", paths=[str(text_corpus)]))
    tokenizer, _ = load_or_train_tokenizer(TOKENIZER, corpus.fingerprint, corpus.documents(), cache_dir)
    packed = load_or_pack(corpus.documents(), tokenizer, corpus.fingerprint, tokenizer_fingerprint(tokenizer),
                          block_size, 0.1, cache_dir)
    return tokenizer, packed


def test_packing_layout_and_reuse(text_corpus, tmp_path):
    tokenizer, packed = _pack(text_corpus, tmp_path)
    assert not packed.from_cache
    blocks = packed.train.gather(np.arange(packed.train.num_blocks)).ids
    assert blocks.shape == (packed.train.num_blocks, 16)
    assert (blocks[:, 0] == tokenizer.token_to_id("[CLS]")).all()
    # The stream is every training document followed by [SEP], nothing dropped but the tail.
    sep = tokenizer.token_to_id("[SEP]")
    stream = blocks[:, 1:].reshape(-1)
    assert (stream == sep).sum() >= 0.85 * 300 * (1 - 0.1) - 2  # documents per block-stream, minus the cut tail
    assert packed.eval.num_blocks > 0
    _, again = _pack(text_corpus, tmp_path)
    assert again.from_cache and again.cache_entry == packed.cache_entry
    # The block size only changes how the cached streams are cut.
    _, other_size = _pack(text_corpus, tmp_path, block_size=32)
    assert other_size.from_cache and other_size.train.block_size == 32


def test_tokenizer_cache_reused_invalidated_and_corruption_detected(text_corpus, tmp_path):
    corpus = open_corpus(DataConfig(source="text_files", paths=[str(text_corpus)]))
    first, cached = load_or_train_tokenizer(TOKENIZER, corpus.fingerprint, corpus.documents(), tmp_path)
    assert not cached
    again, cached = load_or_train_tokenizer(TOKENIZER, corpus.fingerprint, corpus.documents(), tmp_path)
    assert cached and again.to_str() == first.to_str()
    other = TokenizerConfig(vocab_size=250, sample_documents=1000)
    _, cached = load_or_train_tokenizer(other, corpus.fingerprint, corpus.documents(), tmp_path)
    assert not cached
    _, cached = load_or_train_tokenizer(TOKENIZER, "another-corpus", corpus.documents(), tmp_path)
    assert not cached


def test_corrupted_cached_tokenizer_is_rebuilt(text_corpus, tmp_path):
    # Byte-level BPE: WordPiece training in `tokenizers` breaks count ties in hash order
    # (huggingface/tokenizers#1794), so only BPE retrains to the identical file.
    corpus = open_corpus(DataConfig(source="text_files", paths=[str(text_corpus)]))
    bpe = TokenizerConfig(name="bpe", vocab_size=400, sample_documents=1000)
    original, _ = load_or_train_tokenizer(bpe, corpus.fingerprint, corpus.documents(), tmp_path)
    cached_file = tokenizer_cache_entry(bpe, corpus.fingerprint, tmp_path) / "tokenizer.json"
    cached_file.write_text(cached_file.read_text().replace('"[MASK]"', '"[MASQ]"'))
    rebuilt, from_cache = load_or_train_tokenizer(bpe, corpus.fingerprint, corpus.documents(), tmp_path)
    assert not from_cache
    assert rebuilt.to_str() == original.to_str() == cached_file.read_text()


def test_blocks_carry_document_ids_and_word_starts(text_corpus, tmp_path):
    tokenizer, packed = _pack(text_corpus, tmp_path)
    sep = tokenizer.token_to_id("[SEP]")
    batch = packed.train.gather(np.arange(packed.train.num_blocks))
    stream, docs = batch.ids[:, 1:].reshape(-1), batch.doc_ids[:, 1:].reshape(-1)
    # Across the whole split, a document id goes up by one right after each [SEP].
    assert (np.diff(docs) == (stream[:-1] == sep)).all()
    assert (batch.doc_ids[:, 0] == batch.doc_ids[:, 1]).all()  # [CLS] joins the block's first document
    # Word starts follow the tokenizer's pre-tokenization: the first document of the
    # stream starts the first block, and its words begin where its word ids change.
    first_document = text_corpus.read_text().splitlines()[0]
    word_ids = tokenizer.encode(first_document, add_special_tokens=False).word_ids
    expected = [i == 0 or word_ids[i] != word_ids[i - 1] for i in range(min(len(word_ids), 15))]
    assert batch.word_starts[0, 1 : 1 + len(expected)].tolist() == expected
    assert batch.word_starts[batch.ids == sep].all()


def test_a_corpus_knows_its_document_count_where_its_source_does(tmp_path, offline_hub):
    """`expected_documents` gives packing's progress an ETA: the synthetic count (capped by
    data.max_documents), a hub table's rows (an upper bound: empty texts are skipped), none for files."""
    synthetic = open_corpus(DataConfig(source="synthetic", num_documents=30))
    assert synthetic.expected_documents == 30 == len(list(synthetic.documents()))
    capped = open_corpus(DataConfig(source="synthetic", num_documents=30, max_documents=12))
    assert capped.expected_documents == 12 == len(list(capped.documents()))
    repo = tmp_path / "hub" / "data"
    repo.mkdir(parents=True)
    (repo / "train.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for text in ["a b", "", "c d"]))
    hub = open_corpus(DataConfig(source="hub", name=str(tmp_path / "hub"), split="train"))
    assert hub.expected_documents == 3 and len(list(hub.documents())) == 2
    path = tmp_path / "corpus.txt"
    path.write_text("one\ntwo\n")
    assert open_corpus(DataConfig(source="text_files", paths=[str(path)])).expected_documents is None
