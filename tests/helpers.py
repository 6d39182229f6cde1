"""Building packed-corpus batches by hand, for objective tests."""

from __future__ import annotations

import numpy as np

from pretrainer.data.blocks import BlockBatch
from pretrainer.tokenization import SpecialIds

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, count=5, sentence_ends=(5,))


def block_batch(ids: np.ndarray, word_starts: np.ndarray | None = None, sep_id: int = SPECIAL.sep) -> BlockBatch:
    """(B, T) ids as the packed corpus would give them: every row its own documents, cut at [SEP]."""
    ids = np.asarray(ids, dtype=np.int64)
    starts = np.ones(ids.shape, dtype=bool) if word_starts is None else np.asarray(word_starts, dtype=bool)
    ends_before = np.cumsum(ids == sep_id, axis=1) - (ids == sep_id)
    doc_ids = np.arange(len(ids))[:, None] * ids.shape[1] + ends_before
    return BlockBatch(ids, starts, doc_ids)
