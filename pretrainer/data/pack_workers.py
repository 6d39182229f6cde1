"""Packing batches of documents in worker processes (`data.num_proc` > 1), in document order.

The parent reads the documents and writes the entry; each worker receives batches, packs them
with its copy of the packer (`pretrainer.data.packing.BatchPacker`) and returns the arrays. Only
a few batches per worker are in flight at once, so memory does not grow with the corpus.

Workers are started with `spawn`: a forked child would inherit the parent's threads as dead
(tokenizers' rayon pool, torch's), so its first parallel encode could hang, and tokenizers warns
and turns parallelism off in it. Spawn, like any multiprocessing start method but fork, imports
the main module again in each worker: a script that packs needs `if __name__ == "__main__":`.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import chain
from typing import TYPE_CHECKING

from pretrainer.errors import ConfigError

if TYPE_CHECKING:
    from pretrainer.data.packing import BatchPacker, PackedBatch

IN_FLIGHT_PER_WORKER = 2  # batches queued per worker: it never waits for the next, memory stays bounded


def worker_count(num_proc: int | None) -> int:
    """Processes for `data.num_proc`: itself, or None for one per core."""
    if num_proc is not None and num_proc < 1:
        raise ConfigError(f"data.num_proc must be positive or null (one per CPU core), got {num_proc}")
    return num_proc or _available_cores()


def _available_cores() -> int:
    """The cores this process may run on (a job scheduler's share, not the whole machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pool_packed(batches: Iterator[tuple[int, list[str]]], packer: BatchPacker, workers: int) -> Iterator[PackedBatch]:
    """`batches` ((index of the first document, documents)) packed by `workers` processes, in order.
    At most `IN_FLIGHT_PER_WORKER` batches per worker are read ahead."""
    first = next(batches, None)
    if first is None:
        return
    threads = max(1, _available_cores() // workers)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                               initargs=(packer, threads))
    in_flight: deque[Future] = deque()
    try:
        for batch in chain([first], batches):
            if len(in_flight) == IN_FLIGHT_PER_WORKER * workers:
                yield in_flight.popleft().result()
            in_flight.append(pool.submit(_pack_in_worker, *batch))
        while in_flight:
            yield in_flight.popleft().result()
    except BaseException:  # Ctrl-C, a failed write, a dead worker: drop the queue, let running batches end
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


_worker_packer: BatchPacker | None = None  # a worker process's own packer


def _start_worker(packer: BatchPacker, threads: int) -> None:
    global _worker_packer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent handles it
    # The workers share the cores: each encodes with its share of threads (read when first used).
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    _worker_packer = packer


def _pack_in_worker(first_index: int, documents: list[str]) -> PackedBatch:
    return _worker_packer.pack(first_index, documents)
