"""Single-threaded collation time of every objective: ms per micro-batch.

    python3 scripts/bench_collation.py [--batch 64] [--block 512] [--repeats 20]

Collation (building one micro-batch from packed blocks, random masking included) runs
on the CPU for every micro-batch, so it must stay far below a training step. Each
objective is built as in training (its `conf/objective/<name>.yaml` settings) on a tiny
body of its architecture family, and collates the same corpus-like random blocks
(`[CLS]` first, words of one to a few tokens, a sentence end about every 12 tokens, a
document `[SEP]` about every 200) `--repeats` times after one warm-up; the table gives
the median and the fastest run. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable from a checkout without `make install`

from pretrainer.config import OBJECTIVE_ARCHS, ArchConfig, ObjectiveConfig
from pretrainer.data.blocks import BlockBatch
from pretrainer.models import build_body
from pretrainer.objectives import build_objective, objective_class
from pretrainer.tokenization import SPECIAL_TOKENS, SpecialIds

CONF = Path(__file__).resolve().parent.parent / "conf" / "objective"
VOCAB = 30_522  # BERT-base's vocabulary: random replacements draw from a realistic range
SENTENCE_END = len(SPECIAL_TOKENS)  # the id standing for "." in the synthetic blocks
SPECIAL = SpecialIds(*range(len(SPECIAL_TOKENS)), count=len(SPECIAL_TOKENS), sentence_ends=(SENTENCE_END,))
SENTENCE_EVERY, DOCUMENT_EVERY, WORD_START_SHARE = 12, 200, 0.7


def objective_config(name: str) -> ObjectiveConfig:
    """The objective as `objective=<name>` configures it (package-global files keep it under `objective:`)."""
    raw = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    fields = raw.get("objective", raw)
    return ObjectiveConfig(**{key: value for key, value in fields.items() if key != "defaults"})


def build(name: str, block: int):
    """(objective, raw block length) for `name`, on a tiny CPU body: collation never touches
    the weights, but the objective's heads read the body's width and embedding."""
    cfg = objective_config(name)
    sentinels = objective_class(cfg).special_tokens(cfg, block)
    vocab = VOCAB + len(sentinels)
    special = replace(SPECIAL, sentinels=tuple(range(VOCAB, vocab)))  # T5's sentinels follow the vocabulary
    arch = ArchConfig(name=OBJECTIVE_ARCHS[name][0], n_layer=1, d_model=16, n_head=2, d_ff=32, max_len=block,
                      segment_embeddings=name in ("mlm_nsp", "mlm_sop"))
    objective = build_objective(cfg, build_body(arch, vocab), special, vocab)
    return objective, objective_class(cfg).raw_block_size(cfg, block)


def corpus_like_blocks(batch: int, length: int, rng: np.random.Generator) -> BlockBatch:
    """(batch, length) packed blocks that look like a tokenized corpus (see the module docstring)."""
    ids = rng.integers(SENTENCE_END + 1, VOCAB, size=(batch, length))  # (B, T)
    ids[rng.random((batch, length)) < 1 / SENTENCE_EVERY] = SENTENCE_END
    ids[rng.random((batch, length)) < 1 / DOCUMENT_EVERY] = SPECIAL.sep
    ids[:, 0] = SPECIAL.cls
    is_sep = ids == SPECIAL.sep
    word_starts = rng.random((batch, length)) < WORD_START_SHARE
    word_starts |= np.isin(ids, [SPECIAL.cls, SPECIAL.sep, SENTENCE_END])
    word_starts[:, 1:] |= np.isin(ids[:, :-1], [SPECIAL.sep, SENTENCE_END])  # the token after a separator starts a word
    doc_ids = np.arange(batch)[:, None] * length + np.cumsum(is_sep, axis=1) - is_sep  # (B, T)
    return BlockBatch(ids, word_starts, doc_ids)


def time_collation(objective, blocks: BlockBatch, repeats: int) -> list[float]:
    """Milliseconds per `collate` call, one warm-up call left out."""
    generator = torch.Generator().manual_seed(0)
    objective.collate(blocks, generator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        objective.collate(blocks, generator)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--objectives", nargs="*", default=list(OBJECTIVE_ARCHS), help="default: all")
    args = parser.parse_args()
    torch.set_num_threads(1)  # what one data-loading thread gets; figures stay comparable across machines
    print(f"collation of one {args.batch} x {args.block} micro-batch, single thread, {args.repeats} repeats\n")
    print("| objective | median ms | min ms |")
    print("|---|---|---|")
    for name in args.objectives:
        objective, raw = build(name, args.block)
        blocks = corpus_like_blocks(args.batch, raw, np.random.default_rng(0))
        times = time_collation(objective, blocks, args.repeats)
        print(f"| {name} | {statistics.median(times):.1f} | {min(times):.1f} |", flush=True)


if __name__ == "__main__":
    main()
