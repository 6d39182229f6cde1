"""Many processes, one run: the process group, who this process is in it, and the few
collectives the pipeline needs. PyTorch's own engine (torch.distributed, DDP, FSDP2) does
the work; this module only starts it and answers "am I rank 0?".

A process is part of a distributed run when its launcher says so (torchrun's or SLURM's
variables, see `pretrainer.launch`). Without either (or with a world of one) nothing is
started and every helper here is a no-op.
"""

from __future__ import annotations

import datetime
import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pretrainer.launch import launch_environment

# How long a rank waits for the others at a collective. Rank 0 trains the tokenizer and packs the
# corpus while the others wait at a barrier, and fine-tunes alone while they wait at the last one
# (see `shutdown`): both can take hours on a real corpus and GLUE. A real hang is found this late.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=12)


@dataclass(frozen=True)
class World:
    """This process's place in the run: global rank, number of processes, rank on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that logs, writes the summary and the manifest."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_from_environment() -> World:
    """Join the process group the launcher describes (once per process; later calls return the
    same world). NCCL when this process has a GPU, gloo otherwise; a GPU process uses the GPU of
    its local rank."""
    if dist.is_available() and dist.is_initialized():
        return current_world()
    variables = launch_environment()
    if int(variables.get("WORLD_SIZE", "1")) <= 1:
        return World()
    os.environ.update(variables)  # init_process_group's env:// rendezvous reads them
    local_rank = int(variables.get("LOCAL_RANK", "0"))
    use_gpu = torch.cuda.is_available() and local_rank < torch.cuda.device_count()
    if use_gpu:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_gpu else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return current_world()


def current_world() -> World:
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return World(dist.get_rank(), dist.get_world_size(), local_rank)


def shutdown() -> None:
    """Leave the process group (at the end of the command: it cannot be joined again on its port),
    all ranks together: a rank that tears down while a peer still holds its connection can abort
    the process (gloo: "terminate called without an active exception"). So the ranks that finished
    pretraining wait here for rank 0's fine-tuning."""
    if dist.is_available() and dist.is_initialized():
        # DDP/FSDP modules hold the group through reference cycles (hooks that close over their
        # module): freed now, while the group is whole, not during interpreter shutdown after it.
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if current_world().distributed:
        dist.barrier()


@contextmanager
def main_process_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on each node's local rank 0, then on the rest.

    For work that fills a cache (training the tokenizer, packing the corpus): rank 0 does it
    while the others wait; the others then find it in the cache. A node that does not share
    the cache directory builds its own copy once (its local rank 0) before its other ranks read it."""
    world = current_world()
    phase = 0 if world.main else 1 if world.local_rank == 0 else 2
    failure: BaseException | None = None
    for turn in range(3):
        if turn == phase:
            try:
                yield
            except BaseException as error:  # noqa: BLE001 - re-raised below, once the others are released
                failure = error
        if world.distributed:
            dist.barrier()  # everyone passes every barrier, whatever its turn (a failed rank too: no hang)
    if failure is not None:
        raise failure


def broadcast_text(text: str) -> str:
    """Rank 0's `text` on every rank (e.g. the run dir name it chose)."""
    if not current_world().distributed:
        return text
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of `values` over every rank (in place; returned for chaining)."""
    if current_world().distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def max_across_ranks(values: torch.Tensor) -> torch.Tensor:
    if current_world().distributed:
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values
