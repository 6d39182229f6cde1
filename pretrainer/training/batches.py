"""Training micro-batches, built ahead of the step so that collation is off the critical path.

A micro-batch is a pure function of (seed, step, micro): which blocks it reads
(`epoch_order_indices`) and every random draw of the objective's collator (a generator
seeded from `(seed, 0, step, micro)`). Building batches in worker processes, in any
order, therefore gives the batches the loop would build itself, bit for bit, and a
resumed run continues the same stream from its step.

`trainer.data_workers=0` collates in the training process, one micro-batch at a time;
N > 0 runs a `DataLoader` with N worker processes that keep `prefetch` micro-batches
each ready ahead of the step, in pinned memory when the model is on a GPU (so the copy to
the device overlaps the step).
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pretrainer.data.blocks import BlockSet, epoch_order_indices


def _seed_of(seed: int, *stream: int) -> int:
    state = np.random.SeedSequence([seed, *stream]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & ((1 << 63) - 1)


def step_generator(seed: int, *stream: int) -> torch.Generator:
    """An independent generator per (seed, stream...), so masks are a function of the step."""
    return torch.Generator().manual_seed(_seed_of(seed, *stream))


def dropout_seed(seed: int, step: int, global_micro: int) -> int:
    """The seed of torch's global RNG (dropout) for one micro-batch of one optimizer step."""
    return _seed_of(seed, 2, step, global_micro)


class MicroBatches(Dataset):
    """Item `n` is micro-batch `n % grad_accum` of optimizer step `n // grad_accum` of this
    rank, collated on the CPU: a dict of tensors for the objective's forward.

    An optimizer step reads `grad_accum x world_size` micro-batches of the one global sequence
    (`epoch_order_indices`); rank r reads the consecutive slice `r * grad_accum ...`. Blocks and
    masks are a function of (seed, step, global micro-batch), so they do not depend on how the
    global batch is split into processes and accumulation steps (for a fixed `batch_size`), and no
    block is read twice in an epoch across the ranks."""

    def __init__(self, collate, blocks: BlockSet, batch_size: int, grad_accum: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        self.collate, self.blocks = collate, blocks  # collate: Objective.collate (BlockBatch, generator) -> dict
        self.batch_size, self.grad_accum, self.seed = batch_size, grad_accum, seed
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        raise TypeError("the stream of micro-batches is endless; index it by (step * grad_accum + micro)")

    def global_position(self, n: int) -> tuple[int, int]:
        """(optimizer step, micro-batch within the global step) of this rank's item `n`."""
        step, micro = divmod(n, self.grad_accum)
        return step, self.rank * self.grad_accum + micro

    def block_indices(self, n: int) -> np.ndarray:
        """The blocks item `n` reads."""
        step, micro = self.global_position(n)
        first = (step * self.grad_accum * self.world_size + micro) * self.batch_size
        return epoch_order_indices(first, self.batch_size, self.blocks.num_blocks, self.seed)

    def __getitem__(self, n: int) -> dict[str, torch.Tensor]:
        step, micro = self.global_position(n)
        return self.collate(self.blocks.gather(self.block_indices(n)), step_generator(self.seed, 0, step, micro))


def _ignore_interrupts(worker_id: int) -> None:
    """Ctrl-C reaches the whole process group: the training process saves and stops, and its
    workers must not die first (the loop would fail on the next batch instead of saving)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class BatchStream:
    """The micro-batches of steps `first_step..last_step - 1`, in order, on `device`.

    Use as a context manager: leaving it stops the workers (also on an exception, a signal
    or a halt before the last step)."""

    def __init__(self, batches: MicroBatches, first_step: int, last_step: int, device: torch.device,
                 workers: int, prefetch: int = 4):
        self.device = device
        self.position = first_step * batches.grad_accum  # the micro-batch `next` returns
        order = range(first_step * batches.grad_accum, last_step * batches.grad_accum)
        # The loader draws its workers' base seed from `generator`, not from torch's global RNG:
        # that one drives dropout and is restored on resume, so a draw here would shift it.
        common = {"batch_size": None, "sampler": order, "pin_memory": device.type == "cuda",
                  "generator": torch.Generator().manual_seed(0)}
        if workers == 0:
            self._loader = DataLoader(batches, **common)
        else:
            self._loader = DataLoader(batches, num_workers=workers, prefetch_factor=prefetch,
                                      worker_init_fn=_ignore_interrupts, multiprocessing_context=_worker_context(),
                                      **common)
        self._iterator: Iterator[dict[str, torch.Tensor]] | None = None

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        shutdown = getattr(self._iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()  # at once, rather than whenever the iterator is collected
        self._iterator = None

    def next(self) -> dict[str, torch.Tensor]:
        """The next micro-batch, its copy to the device queued without waiting (pinned memory)."""
        if self._iterator is None:  # the workers start with the first batch asked for
            self._iterator = iter(self._loader)
        batch = next(self._iterator)
        self.position += 1
        return {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}


def _worker_context() -> multiprocessing.context.BaseContext:
    """fork where the platform has it: workers inherit the memory-mapped corpus and the
    collator instead of receiving copies (spawn would pickle both)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else methods[0])
