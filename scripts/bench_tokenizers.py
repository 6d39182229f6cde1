"""Tokenization throughput of every tokenizer kind: MB/s and tokens/s.

    python scripts/bench_tokenizers.py [--documents 14000] [--repeats 3]

Trains each kind (default settings of `conf/tokenizer/<kind>.yaml`) on the embedded
corpus, then times `encode_batch` over the corpus (the packing path), best of
`--repeats`. Prints a Markdown table; the figures depend on the machine's cores
(`tokenizers` encodes a batch in parallel).
"""

from __future__ import annotations

import argparse
import time
from itertools import islice
from pathlib import Path

from omegaconf import OmegaConf

from pretrainer.config import DataConfig, TokenizerConfig
from pretrainer.data.sources import open_corpus
from pretrainer.loggers import quiet_console
from pretrainer.tokenization import KINDS, train_tokenizer

CONF = Path(__file__).resolve().parent.parent / "conf" / "tokenizer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=14_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    quiet_console()  # the training's progress lines would interleave with the table's rows
    documents = list(islice(open_corpus(DataConfig(num_documents=args.documents)).documents(), args.documents))
    megabytes = sum(len(doc.encode()) for doc in documents) / 1e6
    print(f"{len(documents):,} documents, {megabytes:.1f} MB\n")
    print("| kind | vocab | train s | encode s | MB/s | tokens/s | tokens |")
    print("|---|---|---|---|---|---|---|")
    for kind in sorted(KINDS):
        cfg = TokenizerConfig(**OmegaConf.to_container(OmegaConf.load(CONF / f"{kind}.yaml")))
        start = time.perf_counter()
        tokenizer = train_tokenizer(cfg, iter(documents))
        train_seconds = time.perf_counter() - start
        best, tokens = float("inf"), 0
        for _ in range(args.repeats):
            start = time.perf_counter()
            encodings = tokenizer.encode_batch(documents, add_special_tokens=False)
            best = min(best, time.perf_counter() - start)
            tokens = sum(len(e.ids) for e in encodings)
        print(f"| {kind} | {tokenizer.get_vocab_size():,} | {train_seconds:.1f} | {best:.2f} | {megabytes / best:.1f} "
              f"| {tokens / best:,.0f} | {tokens:,} |")


if __name__ == "__main__":
    main()
