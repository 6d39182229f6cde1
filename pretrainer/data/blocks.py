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
corpus content hash, the tokenizer fingerprint, the eval split and `max_document_chars`
(a cut that is not at a space can change the ids), not by the block size: the streams are
cut into blocks when read. How an entry is written, and verified before use (an entry that
fails is set aside and rebuilt, never used), is in `pretrainer/data/packing.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from pretrainer.data.packing import BLOCKS_FORMAT, discard, is_eval_document, pack_to_cache, token_dtype, verified_meta
from pretrainer.errors import ConfigError
from pretrainer.hashing import fingerprint
from pretrainer.loggers import warn

__all__ = ["BlockBatch", "BlockSet", "CacheCorruptError", "PackedCorpus", "epoch_order_indices", "is_eval_document",
           "load_or_pack"]


class CacheCorruptError(ConfigError):
    """A cached file holds data it cannot hold (a token id outside the vocabulary); the
    message names the file."""


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
    vocab_size: int | None = None  # when given, `gather` refuses ids >= vocab_size (a corrupt file)
    source: Path | None = None  # the token file, named by that error
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
        if self.vocab_size is not None:
            self._check_ids(indices, rows)
        cls_column = np.full((len(indices), 1), self.cls_id, dtype=np.int64)
        ids = np.concatenate([cls_column, rows], axis=1)
        starts = np.concatenate([np.ones_like(cls_column, dtype=bool), self.word_starts[indices] > 0], axis=1)
        return BlockBatch(ids, starts, _compute_doc_ids=lambda: self._doc_ids(indices, rows))

    def _check_ids(self, indices: np.ndarray, rows: np.ndarray) -> None:
        """Out-of-range ids would fail deep inside the model (an IndexError mid-training)."""
        if rows.size == 0 or rows.max() < self.vocab_size:
            return
        row, column = np.argwhere(rows >= self.vocab_size)[0]
        entry = self.source.parent if self.source else "its cache entry"
        raise CacheCorruptError(
            f"{self.source}: token id {rows[row, column]} in block {indices[row]} is outside the vocabulary "
            f"({self.vocab_size} tokens): the cache file is corrupt; delete {entry} or set data.verify_cache=full "
            "to have it verified and rebuilt")

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
    block_size: int, eval_fraction: float, cache_dir: Path, *, verify: str = "auto",
    max_document_chars: int = 100_000, num_proc: int | None = None, total_documents: int | None = None,
) -> PackedCorpus:
    """The corpus packed for `tokenizer`: from the cache when a verified entry exists, else packed now.

    `verify` (data.verify_cache): "sizes" checks meta.json and every file's size; "full" also
    every file's sha256; "auto" is full up to `FULL_VERIFY_MAX_BYTES`. Sizes do not catch flipped
    bytes; a flip that makes an id out of range is still caught when the blocks are gathered.
    `num_proc` (data.num_proc): processes that pack, None for one per core; not part of the cache
    key, as the entry's bytes do not depend on it. `total_documents`: how many documents there
    are, where known (`Corpus.expected_documents`): the packing progress's ETA.
    """
    if verify not in ("auto", "sizes", "full"):
        raise ConfigError(f"data.verify_cache={verify!r} is not one of: auto, sizes, full")
    key = fingerprint(BLOCKS_FORMAT, corpus_fingerprint, tokenizer_fingerprint, eval_fraction, max_document_chars)
    entry = cache_dir / "blocks" / key
    dtype = token_dtype(tokenizer.get_vocab_size())
    meta, problem = verified_meta(entry, dtype, verify)
    if problem is not None:
        warn(f"cache entry {entry} failed verification ({problem}); rebuilding")
        discard(entry)
    from_cache = meta is not None
    if meta is None:
        meta = pack_to_cache(documents, tokenizer, eval_fraction, entry, max_document_chars, num_proc,
                             total_documents)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")

    def blocks(split: str) -> BlockSet:
        return BlockSet(_block_view(entry / f"{split}.bin", meta["dtype"], block_size),
                        _block_view(entry / f"{split}.words.bin", "uint8", block_size), cls_id, sep_id,
                        vocab_size=tokenizer.get_vocab_size(), source=entry / f"{split}.bin")

    return PackedCorpus(
        train=blocks("train"),
        eval=blocks("eval"),
        from_cache=from_cache,
        cache_entry=entry,
    )


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
        selected = epochs == epoch
        out[selected] = epoch_permutation(seed, int(epoch), num_blocks)[offsets[selected]]
    return out


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, num_blocks: int) -> np.ndarray:
    """The block order of one epoch, built once: every micro-batch of the epoch reads it (at 10M
    blocks a permutation takes ~0.6 s). Read-only, as it is shared."""
    permutation = np.random.default_rng([seed, epoch]).permutation(num_blocks)
    permutation.flags.writeable = False
    return permutation
