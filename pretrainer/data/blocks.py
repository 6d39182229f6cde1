"""Tokenize a corpus once, pack it into fixed-length blocks, cache the result on disk.

Documents are encoded in batches and concatenated with a `[SEP]` after each one (the
RoBERTa "full sentences" packing); the stream is cut into rows of `block_size - 1`
tokens and `[CLS]` is put in front of every row when a block is read, so each block is
`[CLS] t_1 ... t_{block_size-1}`. Every `1/eval_fraction`-th document goes to a held-out
stream instead, so eval blocks never share a document with training blocks.

Next to each token stream lies a one-byte-per-token stream of word starts, taken from the
tokenizer's own pre-tokenization (`Encoding.word_ids`), so whole-word and span masking
work for every tokenizer family without guessing from `##` or `Ġ` markers.

The cache entry (token and word-start files per split, `meta.json`) is keyed by the
corpus content hash, the tokenizer fingerprint and the eval split, not by the block size:
the streams are cut into blocks when read. It is written to a staging directory and
renamed into place, so a crash never leaves a half-written entry.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from pretrainer.hashing import fingerprint, publish_dir_atomic

ENCODE_BATCH_DOCUMENTS = 1000


@dataclass
class BlockBatch:
    """Blocks gathered for one micro-batch, `[CLS]` first; all arrays (B, T).

    Document ids are computed on first use: only sentence-pair objectives read them, and
    the first computation scans the whole split (see `BlockSet.row_first_doc`).
    """

    ids: np.ndarray  # int64 token ids
    word_starts: np.ndarray  # bool: the token begins a word ([CLS] and [SEP] are words of their own)
    _doc_ids: np.ndarray | None = None
    _compute_doc_ids: Callable[[], np.ndarray] | None = None

    @property
    def doc_ids(self) -> np.ndarray:
        """(B, T) int64: index of the source document in the split (the [SEP] ending a document belongs to it)."""
        if self._doc_ids is None:
            self._doc_ids = self._compute_doc_ids()
        return self._doc_ids


@dataclass
class BlockSet:
    """Blocks of `block_size` token ids backed by memory-mapped flat streams."""

    stream: np.ndarray  # (num_blocks, block_size - 1) view of the cached token file
    word_starts: np.ndarray  # (num_blocks, block_size - 1) uint8 view of the word-start file
    cls_id: int
    sep_id: int
    _row_first_doc: np.ndarray | None = None

    @property
    def num_blocks(self) -> int:
        return self.stream.shape[0]

    @property
    def block_size(self) -> int:
        return self.stream.shape[1] + 1

    def gather(self, indices: np.ndarray) -> BlockBatch:
        """Blocks at `indices`, `[CLS]` first: arrays of (len(indices), block_size)."""
        rows = self.stream[indices].astype(np.int64)  # (B, T-1)
        cls_column = np.full((len(indices), 1), self.cls_id, dtype=np.int64)
        ids = np.concatenate([cls_column, rows], axis=1)
        starts = np.concatenate([np.ones_like(cls_column, dtype=bool), self.word_starts[indices] > 0], axis=1)
        return BlockBatch(ids, starts, _compute_doc_ids=lambda: self._doc_ids(indices, rows))

    def _doc_ids(self, indices: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """A token's document: documents begun before its row, plus the [SEP]s before it in the row."""
        ends_before = np.cumsum(rows == self.sep_id, axis=1) - (rows == self.sep_id)  # (B, T-1)
        doc_ids = self.row_first_doc[indices][:, None] + np.concatenate([ends_before[:, :1] * 0, ends_before], 1)
        doc_ids[:, 0] = doc_ids[:, 1]  # [CLS] belongs to the block's first document
        return doc_ids

    @property
    def row_first_doc(self) -> np.ndarray:
        """(num_blocks,) index of the document each row starts in; one pass over the stream, on first use."""
        if self._row_first_doc is None:
            ends_per_row = np.zeros(self.num_blocks, dtype=np.int64)
            for start in range(0, self.num_blocks, 65536):  # chunked: bounded memory on large corpora
                ends_per_row[start:start + 65536] = (self.stream[start:start + 65536] == self.sep_id).sum(1)
            self._row_first_doc = np.concatenate([[0], np.cumsum(ends_per_row)[:-1]]).astype(np.int64)
        return self._row_first_doc


@dataclass
class PackedCorpus:
    train: BlockSet
    eval: BlockSet
    from_cache: bool
    cache_entry: Path

    @property
    def train_tokens(self) -> int:
        return self.train.num_blocks * self.train.block_size


def load_or_pack(
    documents: Iterable[str], tokenizer: Tokenizer, corpus_fingerprint: str, tokenizer_fingerprint: str,
    block_size: int, eval_fraction: float, cache_dir: Path,
) -> PackedCorpus:
    key = fingerprint("blocks-v2", corpus_fingerprint, tokenizer_fingerprint, eval_fraction)
    entry = cache_dir / "blocks" / key
    from_cache = (entry / "meta.json").is_file()
    if not from_cache:
        _pack_to_cache(documents, tokenizer, eval_fraction, entry)
    meta = json.loads((entry / "meta.json").read_text())
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")

    def blocks(split: str) -> BlockSet:
        return BlockSet(_block_view(entry / f"{split}.bin", meta["dtype"], block_size),
                        _block_view(entry / f"{split}.words.bin", "uint8", block_size), cls_id, sep_id)

    return PackedCorpus(
        train=blocks("train"),
        eval=blocks("eval"),
        from_cache=from_cache,
        cache_entry=entry,
    )


def _token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)


def _pack_to_cache(documents: Iterable[str], tokenizer: Tokenizer, eval_fraction: float, entry: Path) -> None:
    dtype = _token_dtype(tokenizer.get_vocab_size())
    sep_id = tokenizer.token_to_id("[SEP]")
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}."))
    counts = {"train": 0, "eval": 0, "documents": 0}
    names = ("train.bin", "train.words.bin", "eval.bin", "eval.words.bin")
    files = {name: open(staging / name, "wb") for name in names}
    try:
        for start, batch in _batches(documents, ENCODE_BATCH_DOCUMENTS):
            encodings = tokenizer.encode_batch(batch, add_special_tokens=False)
            for offset, encoding in enumerate(encodings):
                split = "eval" if is_eval_document(start + offset, eval_fraction) else "train"
                ids = np.asarray(encoding.ids + [sep_id], dtype=dtype)
                ids.tofile(files[f"{split}.bin"])
                _word_starts(encoding.word_ids).tofile(files[f"{split}.words.bin"])
                counts[split] += len(ids)
            counts["documents"] += len(batch)
    finally:
        for file in files.values():
            file.close()
    meta = {"dtype": dtype.name, "train_tokens": counts["train"], "eval_tokens": counts["eval"],
            "documents": counts["documents"]}
    (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    publish_dir_atomic(staging, entry)


def _word_starts(word_ids: list[int | None]) -> np.ndarray:
    """(n + 1,) uint8: 1 where a token begins a new pre-tokenized word; the final 1 is the [SEP]."""
    words = np.array([-1 if w is None else w for w in word_ids], dtype=np.int64)
    starts = np.ones(len(words) + 1, dtype=np.uint8)
    starts[1:len(words)] = (words[1:] != words[:-1]) | (words[1:] == -1)
    return starts


def _batches(documents: Iterable[str], size: int) -> Iterator[tuple[int, list[str]]]:
    iterator = iter(documents)
    start = 0
    while batch := list(islice(iterator, size)):
        yield start, batch
        start += len(batch)


def is_eval_document(index: int, eval_fraction: float) -> bool:
    """Spread held-out documents evenly: document i is eval when the running quota ticks."""
    return math.floor((index + 1) * eval_fraction) > math.floor(index * eval_fraction)


def _block_view(path: Path, dtype_name: str, block_size: int) -> np.ndarray:
    row = block_size - 1
    dtype = np.dtype(dtype_name)
    num_tokens = path.stat().st_size // dtype.itemsize
    num_rows = num_tokens // row
    if num_rows == 0:
        return np.zeros((0, row), dtype=dtype)
    flat = np.memmap(path, dtype=dtype, mode="r", shape=(num_rows * row,))
    return flat.reshape(num_rows, row)


def epoch_order_indices(first: int, count: int, num_blocks: int, seed: int) -> np.ndarray:
    """Positions first..first+count of an endless stream of per-epoch shuffles.

    A pure function of (position, seed), so a resumed run reads exactly the blocks it
    would have read without the interruption.
    """
    if num_blocks == 0:
        raise ValueError("the training split has no blocks: the corpus is smaller than one block")
    positions = np.arange(first, first + count)
    epochs, offsets = np.divmod(positions, num_blocks)
    out = np.empty(count, dtype=np.int64)
    for epoch in np.unique(epochs):
        permutation = np.random.default_rng([seed, int(epoch)]).permutation(num_blocks)
        selected = epochs == epoch
        out[selected] = permutation[offsets[selected]]
    return out
