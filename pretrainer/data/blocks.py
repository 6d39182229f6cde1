"""Tokenize a corpus once, pack it into fixed-length blocks, cache the result on disk.

Documents are encoded in batches and concatenated with a `[SEP]` after each one (the
RoBERTa "full sentences" packing); the stream is cut into rows of `block_size - 1`
tokens and `[CLS]` is put in front of every row when a block is read, so each block is
`[CLS] t_1 ... t_{block_size-1}`. Every `1/eval_fraction`-th document goes to a held-out
stream instead, so eval blocks never share a document with training blocks.

The cache entry (two flat token files and `meta.json`) is keyed by the corpus content
hash, the tokenizer fingerprint, the block size and the eval split; it is written to a
staging directory and renamed into place, so a crash never leaves a half-written entry.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from pretrainer.hashing import fingerprint, publish_dir_atomic

ENCODE_BATCH_DOCUMENTS = 1000


@dataclass
class BlockSet:
    """Blocks of `block_size` token ids backed by a memory-mapped flat stream."""

    stream: np.ndarray  # (num_blocks, block_size - 1) view of the cached token file
    cls_id: int

    @property
    def num_blocks(self) -> int:
        return self.stream.shape[0]

    @property
    def block_size(self) -> int:
        return self.stream.shape[1] + 1

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """Blocks at `indices` as int64, `[CLS]` first: (len(indices), block_size)."""
        rows = self.stream[indices]
        cls_column = np.full((len(indices), 1), self.cls_id, dtype=np.int64)
        return np.concatenate([cls_column, rows.astype(np.int64)], axis=1)


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
    key = fingerprint("blocks-v1", corpus_fingerprint, tokenizer_fingerprint, block_size, eval_fraction)
    entry = cache_dir / "blocks" / key
    from_cache = (entry / "meta.json").is_file()
    if not from_cache:
        _pack_to_cache(documents, tokenizer, eval_fraction, entry)
    meta = json.loads((entry / "meta.json").read_text())
    cls_id = tokenizer.token_to_id("[CLS]")
    return PackedCorpus(
        train=BlockSet(_block_view(entry / "train.bin", meta, block_size), cls_id),
        eval=BlockSet(_block_view(entry / "eval.bin", meta, block_size), cls_id),
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
    with open(staging / "train.bin", "wb") as train_file, open(staging / "eval.bin", "wb") as eval_file:
        for start, batch in _batches(documents, ENCODE_BATCH_DOCUMENTS):
            encodings = tokenizer.encode_batch(batch, add_special_tokens=False)
            for offset, encoding in enumerate(encodings):
                split = "eval" if _is_eval_document(start + offset, eval_fraction) else "train"
                ids = np.asarray(encoding.ids + [sep_id], dtype=dtype)
                ids.tofile(eval_file if split == "eval" else train_file)
                counts[split] += len(ids)
            counts["documents"] += len(batch)
    meta = {"dtype": dtype.name, "train_tokens": counts["train"], "eval_tokens": counts["eval"],
            "documents": counts["documents"]}
    (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    publish_dir_atomic(staging, entry)


def _batches(documents: Iterable[str], size: int) -> Iterator[tuple[int, list[str]]]:
    iterator = iter(documents)
    start = 0
    while batch := list(islice(iterator, size)):
        yield start, batch
        start += len(batch)


def _is_eval_document(index: int, eval_fraction: float) -> bool:
    """Spread held-out documents evenly: document i is eval when the running quota ticks."""
    return math.floor((index + 1) * eval_fraction) > math.floor(index * eval_fraction)


def _block_view(path: Path, meta: dict, block_size: int) -> np.ndarray:
    row = block_size - 1
    dtype = np.dtype(meta["dtype"])
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
