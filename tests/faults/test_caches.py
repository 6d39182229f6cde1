"""Faults in the on-disk caches: a damaged block or tokenizer entry is reported and rebuilt,
never used; a failed pack leaves no staging directory; a failed atomic write leaves no temp file."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from pretrainer.config import DataConfig, TokenizerConfig
from pretrainer.data import blocks, packing
from pretrainer.data.blocks import CacheCorruptError, load_or_pack
from pretrainer.data.sources import open_corpus
from pretrainer.errors import ConfigError
from pretrainer.hashing import write_text_atomic
from pretrainer.tokenization import cache as tokenizer_cache
from pretrainer.tokenization import (
    load_or_train_tokenizer,
    tokenizer_cache_entry,
    tokenizer_fingerprint,
    train_tokenizer,
)

TOKENIZER = TokenizerConfig(vocab_size=300, sample_documents=200)
BLOCK_SIZE = 16


@pytest.fixture(scope="module")
def corpus():
    return open_corpus(DataConfig(num_documents=200))


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return train_tokenizer(TOKENIZER, corpus.documents())


@pytest.fixture
def warnings(monkeypatch) -> list[str]:
    """The warnings `load_or_pack` and the tokenizer cache print, collected instead."""
    messages: list[str] = []
    monkeypatch.setattr(blocks, "warn", messages.append)
    monkeypatch.setattr(tokenizer_cache, "warn", messages.append)
    return messages


def pack(corpus, tokenizer, cache_dir, **options):
    return load_or_pack(corpus.documents(), tokenizer, corpus.fingerprint, tokenizer_fingerprint(tokenizer),
                        BLOCK_SIZE, 0.1, cache_dir, **options)


def contents(packed) -> dict[str, np.ndarray]:
    """Copies (not memory maps) of everything a pack hands out, to compare across rebuilds."""
    out = {}
    for name, split in (("train", packed.train), ("eval", packed.eval)):
        batch = split.gather(np.arange(split.num_blocks))
        out |= {f"{name}.ids": batch.ids, f"{name}.words": batch.word_starts, f"{name}.docs": batch.doc_ids}
    return out


@pytest.fixture(scope="module")
def clean(corpus, tokenizer, tmp_path_factory):
    return contents(pack(corpus, tokenizer, tmp_path_factory.mktemp("clean")))


def flip_bytes(path, mask: int, count: int = 16, stride: int = 1) -> None:
    """XOR `count` bytes from the middle of `path` (an even offset: a whole uint16 token) with `mask`."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 & ~1
    for i in range(middle, middle + count * stride, stride):
        data[i] ^= mask
    path.write_bytes(bytes(data))


def truncate_half(path) -> None:
    os.truncate(path, path.stat().st_size // 2)


# (fault, what it does to the entry, the reason the warning gives)
CACHE_FAULTS = [
    ("train.bin truncated", lambda e: truncate_half(e / "train.bin"), r"train\.bin: \d+ bytes, expected \d+"),
    ("eval.bin deleted", lambda e: (e / "eval.bin").unlink(), r"eval\.bin missing"),
    ("train.bin bytes flipped", lambda e: flip_bytes(e / "train.bin", 0xFF), r"train\.bin: sha256 differs"),
    ("meta.json garbled", lambda e: flip_bytes(e / "meta.json", 0xA5), r"meta\.json unreadable"),
    ("meta.json deleted", lambda e: (e / "meta.json").unlink(), r"meta\.json missing"),
    ("words file truncated", lambda e: truncate_half(e / "train.words.bin"), r"train\.words\.bin: \d+ bytes"),
]


@pytest.mark.parametrize(("fault", "damage", "reason"), CACHE_FAULTS, ids=[f[0] for f in CACHE_FAULTS])
def test_a_damaged_block_cache_entry_is_reported_and_rebuilt(corpus, tokenizer, clean, warnings, tmp_path,
                                                             fault, damage, reason):
    entry = pack(corpus, tokenizer, tmp_path).cache_entry
    damage(entry)
    rebuilt = pack(corpus, tokenizer, tmp_path)
    assert not rebuilt.from_cache and rebuilt.cache_entry == entry
    assert len(warnings) == 1
    assert warnings[0].startswith(f"cache entry {entry} failed verification (")
    assert warnings[0].endswith("); rebuilding")
    assert re.search(reason, warnings[0])
    again = contents(rebuilt)
    assert again.keys() == clean.keys()
    for name, array in clean.items():
        np.testing.assert_array_equal(again[name], array, err_msg=name)
    # The rebuilt entry passes a full check: reused with no further warning.
    assert pack(corpus, tokenizer, tmp_path, verify="full").from_cache and len(warnings) == 1
    assert sorted(p.name for p in (tmp_path / "blocks").iterdir()) == [entry.name]  # nothing set aside is left


# Flipped bytes keep every size: only the sha256 (verify=full, or auto on an entry up to 1 GiB)
# notices them. With verify=sizes the entry is used; a flip that leaves every id inside the
# vocabulary is then read silently, one that does not is refused by BlockSet.gather.
FLIPS = [  # (verify, XOR mask on the low byte of 8 tokens or on 16 whole bytes, outcome)
    ("sizes", "in range", "used"),
    ("sizes", "out of range", "refused by gather"),
    ("full", "in range", "rebuilt"),
    ("auto", "out of range", "rebuilt"),
]


@pytest.mark.parametrize(("verify", "flip", "outcome"), FLIPS)
def test_flipped_token_bytes_by_verify_mode(corpus, tokenizer, clean, warnings, tmp_path, verify, flip, outcome):
    entry = pack(corpus, tokenizer, tmp_path).cache_entry
    if flip == "in range":
        flip_bytes(entry / "train.bin", 0x01, count=8, stride=2)  # id ^ 1: < 300 stays < 300
    else:
        flip_bytes(entry / "train.bin", 0xFF)  # ids become >= 0xFE00
    packed = pack(corpus, tokenizer, tmp_path, verify=verify)
    assert packed.from_cache == (outcome != "rebuilt")
    assert len(warnings) == (outcome == "rebuilt")
    everything = np.arange(packed.train.num_blocks)
    if outcome == "refused by gather":
        with pytest.raises(CacheCorruptError, match=rf"{entry / 'train.bin'}: token id \d+ in block \d+ is outside "
                                                    r"the vocabulary \(300 tokens\)") as error:
            packed.train.gather(everything)
        assert isinstance(error.value, ConfigError)
        return
    ids = packed.train.gather(everything).ids
    assert (ids < tokenizer.get_vocab_size()).all()
    assert np.array_equal(ids, clean["train.ids"]) == (outcome == "rebuilt")  # "used": 8 ids differ, unnoticed
    if outcome == "used":
        assert (ids != clean["train.ids"]).sum() == 8


def test_a_tokenizer_cache_entry_with_flipped_bytes_is_retrained(corpus, warnings, tmp_path):
    original, cached = load_or_train_tokenizer(TOKENIZER, corpus.fingerprint, corpus.documents(), tmp_path)
    entry = tokenizer_cache_entry(TOKENIZER, corpus.fingerprint, tmp_path)
    assert not cached and not warnings
    flip_bytes(entry / "tokenizer.json", 0x20)
    retrained, cached = load_or_train_tokenizer(TOKENIZER, corpus.fingerprint, corpus.documents(), tmp_path)
    assert not cached
    assert len(warnings) == 1 and warnings[0].startswith(f"cache entry {entry} failed verification (")
    assert retrained.to_str() == original.to_str() == (entry / "tokenizer.json").read_text(encoding="utf-8")
    assert load_or_train_tokenizer(TOKENIZER, corpus.fingerprint, corpus.documents(), tmp_path)[1]


# Staging directories ---------------------------------------------------------------------------


class FailingTokenizer:
    """The real tokenizer, but its second `encode_batch` fails (the disk filled up mid-pack)."""

    def __init__(self, tokenizer, staging_parent):
        self._tokenizer, self._parent, self.calls, self.staged = tokenizer, staging_parent, 0, []

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def encode_batch(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 2:
            self.staged = [(p.name, (p / "train.bin").stat().st_size)
                           for p in self._parent.iterdir() if ".staging-" in p.name]
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._tokenizer.encode_batch(*args, **kwargs)


def interrupted(documents, after: int):
    for i, document in enumerate(documents):
        if i == after:
            raise KeyboardInterrupt
        yield document


@pytest.mark.parametrize("failure", ["disk full in encode_batch", "Ctrl-C while reading documents"])
def test_a_failed_pack_removes_its_staging_directory(corpus, tokenizer, tmp_path, monkeypatch, failure):
    monkeypatch.setattr(packing, "ENCODE_BATCH_DOCUMENTS", 50)  # several batches: the failure comes mid-pack
    blocks_dir = tmp_path / "blocks"
    documents, packer = corpus.documents(), tokenizer
    if failure.startswith("disk full"):
        packer = FailingTokenizer(tokenizer, blocks_dir)
        expected = OSError
    else:
        documents, expected = interrupted(documents, after=120), KeyboardInterrupt
    with pytest.raises(expected):
        load_or_pack(documents, packer, corpus.fingerprint, "fp", BLOCK_SIZE, 0.1, tmp_path)
    if packer is not tokenizer:
        [(_, written)] = packer.staged  # it existed, with tokens written, when the failure came
        assert written > 0
    assert list(blocks_dir.iterdir()) == []


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # exited and reaped: os.kill(pid, 0) raises ProcessLookupError
    return child.pid


def test_staging_leftovers_of_dead_processes_on_this_host_are_removed(corpus, tokenizer, tmp_path):
    blocks_dir = tmp_path / "blocks"
    host = packing._owner_tag().rsplit("-", 1)[0]
    dead = dead_pid()
    leftovers = {  # name: kept?
        f".0123abcd.staging-{host}-{dead}-x1y2": False,
        f".0123abcd.discarded-{host}-{dead}-q7": False,
        f".0123abcd.staging-{host}-{os.getpid()}-z3w4": True,  # a live pid: a pack in progress
        f".0123abcd.staging-otherhost-{dead}-u5v6": True,  # another host's pid says nothing here
    }
    quiet = time.time() - packing.LEFTOVER_QUIET_S - 60
    for name in leftovers:
        (blocks_dir / name).mkdir(parents=True)
        (blocks_dir / name / "train.bin").write_bytes(b"\0" * 64)
        for path in (blocks_dir / name / "train.bin", blocks_dir / name):
            os.utime(path, (quiet, quiet))
    recent = blocks_dir / f".0123abcd.staging-{host}-{dead}-r8s9"  # a dead pid, but written to a moment ago
    recent.mkdir()
    (recent / "train.bin").write_bytes(b"\0" * 64)
    packed = pack(corpus, tokenizer, tmp_path)
    remaining = {p.name for p in blocks_dir.iterdir()}
    kept = {name for name, keep in leftovers.items() if keep}
    assert remaining == kept | {recent.name, packed.cache_entry.name}


@pytest.mark.parametrize("failure", ["text that cannot be encoded", "disk full at fsync"])
def test_a_failed_atomic_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, failure):
    target = tmp_path / "meta.json"
    write_text_atomic(target, "old")
    text = "new"
    if failure == "disk full at fsync":
        def no_space(fd):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(os, "fsync", no_space)
    else:
        text = "new \ud800"  # a lone surrogate: UnicodeEncodeError half-way through the write
    with pytest.raises((OSError, UnicodeError)):
        write_text_atomic(target, text)
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]
    assert target.read_text() == "old"
