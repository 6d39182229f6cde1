"""`inspect_tokenizer(cfg, run_dir)`: train (or load from the cache) the configured
tokenizer without training a model, and report what it does to held-out text.

Held-out text is the corpus's eval documents (the ones pretraining never trains on).
The run dir gets `tokenizer/tokenizer.json` and `tokenizer_report.json`.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Any

from pretrainer.config import Config
from pretrainer.data.blocks import is_eval_document
from pretrainer.data.sources import open_corpus
from pretrainer.hashing import write_text_atomic
from pretrainer.loggers import Stopwatch, info, print_key_values
from pretrainer.tokenization import load_or_train_tokenizer
from pretrainer.tokenization.diagnostics import measure

SAMPLE_SENTENCES = 2  # held-out sentences segmented when `tokenizer.show` is not given


def inspect_tokenizer(cfg: Config, run_dir: Path) -> dict[str, Any]:
    clock = Stopwatch()
    corpus = open_corpus(cfg.data)
    tokenizer, cached = load_or_train_tokenizer(cfg.tokenizer, corpus.fingerprint, corpus.documents(),
                                                Path(cfg.cache_dir).expanduser())
    held_out = list(islice((doc for i, doc in enumerate(corpus.documents())
                            if is_eval_document(i, cfg.data.eval_fraction) and doc.strip()),
                           cfg.tokenizer.diagnostic_documents))
    if not held_out:
        raise ValueError("no held-out documents to measure: set data.eval_fraction > 0 or give a larger corpus")
    show = [cfg.tokenizer.show] if cfg.tokenizer.show else _first_sentences(held_out, SAMPLE_SENTENCES)
    report = measure(tokenizer, cfg.tokenizer.name, held_out, cfg.data.block_size, show).to_dict()
    report |= {"run_name": cfg.run_name or run_dir.name, "cached": cached, "wall_time_s": clock.elapsed()}
    write_text_atomic(run_dir / "tokenizer" / "tokenizer.json", tokenizer.to_str())
    write_text_atomic(run_dir / "tokenizer_report.json", json.dumps(report, indent=2))
    print_tokenizer_report(report)
    return report


def _first_sentences(documents: list[str], count: int) -> list[str]:
    sentences = [s.strip() + "." for doc in documents for s in doc.split(".") if s.strip()]
    return sentences[:count]


def print_tokenizer_report(report: dict[str, Any]) -> None:
    print_key_values(f"Tokenizer {report['kind']} — {report['run_name']}", report_rows(report))
    for sample in report["samples"]:
        info(f"{sample['text']}\n  -> {' | '.join(sample['tokens'])}")


def report_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    lengths = report["length_percentiles"]
    return [
        ("vocabulary", f"{report['vocab_size']:,}"),
        ("held-out documents / words", f"{report['documents']:,} / {report['words']:,}"),
        ("tokens per word (fertility)", f"{report['fertility']:.3f}"),
        ("words split", f"{report['split_share']:.1%}"),
        ("unknown tokens", f"{report['unk_rate']:.2%}"),
        ("bytes per token", f"{report['bytes_per_token']:.2f}"),
        ("tokens per document p50 / p90 / p99 / max",
         f"{lengths['p50']:.0f} / {lengths['p90']:.0f} / {lengths['p99']:.0f} / {lengths['max']:.0f}"),
        (f"documents over block_size={report['block_size']}", f"{report['over_block_share']:.1%}"),
    ]
