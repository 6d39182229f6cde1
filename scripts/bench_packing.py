"""Corpus packing throughput next to the tokenizer's own: MB/s of text, tokens/s, peak memory.

    python scripts/bench_packing.py [--sizes 10,30,100] [--num-proc 1,4] [--repeats 3] [--json PATH]

Writes a corpus of each size (MB of UTF-8 text: the embedded generator's documents, one per
line, read by the `text_files` source), trains a tokenizer on it, then measures, each in a
fresh process so that its peak RSS is its own:

- `encode_batch`: `Tokenizer.encode_batch` on the batches packing makes of the same documents,
  timing the calls alone (reading the file is not counted): the most the packing could reach;
- `pack N`: `pack_to_cache` with data.num_proc=N, the whole of it (reading, encoding, writing,
  hashing). `vs encode` is its MB/s over encode_batch's. Workers' peak RSS is the largest one's.

Both use the tokenizer's default parallelism (all cores): packing with num_proc=1 is compared
with the same threads. Peak RSS flat across sizes is the streaming working.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from itertools import count
from pathlib import Path

from omegaconf import OmegaConf
from tokenizers import Tokenizer

from pretrainer.config import DataConfig, TokenizerConfig
from pretrainer.data.pack_workers import worker_count
from pretrainer.data.packing import document_batches, pack_to_cache
from pretrainer.data.sources import open_corpus
from pretrainer.data.synthetic import generate_corpus
from pretrainer.tokenization import train_tokenizer

CONF = Path(__file__).resolve().parent.parent / "conf" / "tokenizer"
ENCODE = "encode_batch"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.measure:  # a child: one measurement, one JSON line
        print(json.dumps(measure(args.measure, Path(args.corpus), Path(args.tokenizer_file), args.num_proc[0])))
        return
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        corpora = write_corpora(workdir, args.sizes)
        tokenizer_file = train(workdir, corpora[max(args.sizes)], args.tokenizer, args.sample_documents)
        modes = [(ENCODE, 1)] + [("pack", n) for n in args.num_proc]
        rows = [fastest(corpora[size], tokenizer_file, size, modes, args.repeats) for size in args.sizes]
        rows = [row for size_rows in rows for row in size_rows]
    add_ratios(rows)
    print_table(rows)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"tokenizer": args.tokenizer, "cores": worker_count(None), "rows": rows}, indent=2))
        print(f"\nJSON: {path}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_floats, default=[10.0, 30.0, 100.0], help="corpus sizes in MB")
    parser.add_argument("--num-proc", type=_ints, default=sorted({1, worker_count(None)}),
                        help="data.num_proc values to pack with (default: 1 and one per core)")
    parser.add_argument("--tokenizer", default="wordpiece", help="a kind of conf/tokenizer/, its defaults")
    parser.add_argument("--sample-documents", type=int, default=10_000, help="documents the tokenizer learns from")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each measurement, the fastest kept")
    parser.add_argument("--workdir", help="keep the corpora and tokenizer here (default: a temporary directory)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # the child's side
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer-file", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",")]


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


# The parent: corpora, tokenizer, one child per measurement -------------------------------------


def write_corpora(workdir: Path, sizes_mb: list[float]) -> dict[float, Path]:
    """A text file per size, each a prefix of the largest: the generator's documents, one per line.
    Files already in `workdir` are reused (each is renamed into place once complete)."""
    paths = {size: workdir / f"corpus-{size:g}MB.txt" for size in sizes_mb}
    missing = sorted((size * 1e6, path) for size, path in paths.items() if not path.exists())
    partial = [path.with_suffix(".partial") for _, path in missing]
    handles = [open(path, "w", encoding="utf-8") for path in partial]
    written = 0
    for seed in count():  # 10,000 documents a seed: the generator returns a list
        for document in generate_corpus(seed, 10_000):
            if not missing or written >= missing[-1][0]:
                for handle, path, (_, final) in zip(handles, partial, missing, strict=True):
                    handle.close()
                    path.replace(final)
                return paths
            line = document.replace("\n", " ") + "\n"
            for (limit, _), handle in zip(missing, handles, strict=True):
                if written < limit:
                    handle.write(line)
            written += len(line.encode("utf-8"))


def train(workdir: Path, corpus: Path, kind: str, sample_documents: int) -> Path:
    path = workdir / f"{kind}-tokenizer.json"
    if not path.exists():
        settings = OmegaConf.to_container(OmegaConf.load(CONF / f"{kind}.yaml"))
        cfg = TokenizerConfig(**{**settings, "sample_documents": sample_documents})
        train_tokenizer(cfg, documents(corpus)).save(str(path))
    return path


def fastest(corpus: Path, tokenizer_file: Path, size: float, modes: list[tuple[str, int]],
            repeats: int) -> list[dict]:
    """Each mode's fastest of `repeats` runs; the modes take turns, so that a machine busy with
    something else for a while slows all of them alike."""
    runs = [[run_child(mode, corpus, tokenizer_file, num_proc, size) for mode, num_proc in modes]
            for _ in range(repeats)]
    return [min(mode_runs, key=lambda row: row["seconds"]) for mode_runs in zip(*runs, strict=True)]


def run_child(mode: str, corpus: Path, tokenizer_file: Path, num_proc: int, size: float) -> dict:
    command = [sys.executable, __file__, "--measure", mode, "--corpus", str(corpus),
               "--tokenizer-file", str(tokenizer_file), "--num-proc", str(num_proc)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")
    row = json.loads(result.stdout.strip().splitlines()[-1])
    label = ENCODE if mode == ENCODE else f"pack num_proc={num_proc}"
    return {"size_mb": size, "mode": label, **row}


def add_ratios(rows: list[dict]) -> None:
    """Each row's MB/s over encode_batch's on the same corpus."""
    baseline = {row["size_mb"]: row["mb_per_s"] for row in rows if row["mode"] == ENCODE}
    for row in rows:
        row["vs_encode"] = row["mb_per_s"] / baseline[row["size_mb"]]


def print_table(rows: list[dict]) -> None:
    print("| corpus MB | documents | mode | seconds | MB/s | tokens/s | vs encode | peak RSS MB | worker RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        worker = f"{row['worker_rss_mb']:.0f}" if row["worker_rss_mb"] else "-"
        print(f"| {row['text_mb']:.1f} | {row['documents']:,} | {row['mode']} | {row['seconds']:.2f} "
              f"| {row['mb_per_s']:.2f} | {row['tokens_per_s']:,.0f} | {row['vs_encode']:.2f} "
              f"| {row['rss_mb']:.0f} | {worker} |")


# The child: one measurement ----------------------------------------------------------------------


def documents(corpus: Path):
    return open_corpus(DataConfig(source="text_files", paths=[str(corpus)])).documents()


def measure(mode: str, corpus: Path, tokenizer_file: Path, num_proc: int) -> dict:
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    if mode == ENCODE:
        seconds, tokens, count_documents = time_encode_batch(tokenizer, corpus)
    else:
        with tempfile.TemporaryDirectory(dir=corpus.parent) as out:
            start = time.perf_counter()
            meta = pack_to_cache(documents(corpus), tokenizer, 0.01, Path(out) / "entry", num_proc=num_proc)
            seconds = time.perf_counter() - start
        count_documents = meta["documents"]
        tokens = meta["train_tokens"] + meta["eval_tokens"] - count_documents  # as encode_batch counts: no [SEP]
    text_mb = corpus.stat().st_size / 1e6
    return {"text_mb": text_mb, "documents": count_documents, "tokens": tokens, "seconds": seconds,
            "mb_per_s": text_mb / seconds, "tokens_per_s": tokens / seconds,
            "rss_mb": _peak_rss_mb(resource.RUSAGE_SELF), "worker_rss_mb": _peak_rss_mb(resource.RUSAGE_CHILDREN)}


def time_encode_batch(tokenizer: Tokenizer, corpus: Path) -> tuple[float, int, int]:
    """Seconds inside `encode_batch` on packing's batches of the corpus, tokens, documents."""
    seconds, tokens, count_documents = 0.0, 0, 0
    for _, batch in document_batches(documents(corpus)):
        start = time.perf_counter()
        encodings = tokenizer.encode_batch(batch, add_special_tokens=False)
        seconds += time.perf_counter() - start
        tokens += sum(map(len, encodings))
        count_documents += len(batch)
    return seconds, tokens, count_documents


def _peak_rss_mb(who: int) -> float:
    """Peak resident memory of this process, or of its largest waited-for child (Linux: KiB)."""
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes
    return resource.getrusage(who).ru_maxrss * scale / 1e6


if __name__ == "__main__":
    main()
