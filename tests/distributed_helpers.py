"""Running a tiny pretraining in several CPU processes (gloo), as torchrun would start them."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import socket
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

# A run that takes about a second: 8 steps of 8 blocks of 32 tokens per micro-batch, checkpoints
# every 2 steps, eval every 2 steps on 3 batches (an odd count: the ranks get unequal shares).
DIST_RUN = [
    "arch.n_layer=2", "arch.d_model=32", "arch.n_head=2", "arch.d_ff=64", "arch.max_len=64",
    "data.block_size=32", "tokenizer.vocab_size=300", "data.num_documents=300", "finetune=none",
    "trainer.batch_size=8", "trainer.max_steps=8", "trainer.eval_every=2", "trainer.eval_batches=3",
    "trainer.log_every=1", "trainer.warmup_steps=1", "trainer.num_threads=1", "trainer.checkpoint_every=2",
    "trainer.keep_checkpoints=4", "arch.dropout=0.1", "zero_shot.per_phenomenon=10",
]


def free_port(low: int | None = None, high: int | None = None) -> int:
    """A port nothing listens on: any (the kernel's choice), or one in [low, high)."""
    candidates = [0] if low is None else random.Random().sample(range(low, high), 200)
    for port in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError(f"no free port in [{low}, {high})")


def compose_run(*overrides: str):
    from pretrainer.cli import CONF_DIR, to_config

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_config(compose("config", overrides=[*DIST_RUN, *overrides]))


def train_rank(rank: int, world_size: int, port: int, run_dir: str, overrides: list[str],
               signal_rank: int | None, signal_step: int | None) -> None:
    """One rank of a run (the target of a spawned process). With `signal_rank`, that rank sends
    itself SIGTERM during optimizer step `signal_step`, as a scheduler would signal one process."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    from pretrainer import pipeline
    from pretrainer.errors import Interrupted
    from pretrainer.training import loop

    if signal_rank == rank:
        real_step = loop._optimizer_step

        def signalling_step(*args):
            if args[-1] == signal_step:
                os.kill(os.getpid(), signal.SIGTERM)
            return real_step(*args)

        loop._optimizer_step = signalling_step
    from pretrainer.training.distributed import shutdown

    try:
        pipeline.train(compose_run(*overrides), Path(run_dir))
    except Interrupted as stop:
        sys.exit(stop.exit_code)
    finally:
        shutdown()


def run_ranks(world_size: int, run_dir: Path, *overrides: str, signal_rank: int | None = None,
              signal_step: int | None = None, timeout: float = 180) -> list[int | None]:
    """Start `world_size` processes of a run into `run_dir`; their exit codes, by rank."""
    context = multiprocessing.get_context("spawn")
    port = free_port()
    processes = [context.Process(target=train_rank, args=(rank, world_size, port, str(run_dir), list(overrides),
                                                           signal_rank, signal_step))
                 for rank in range(world_size)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout)
    for process in processes:
        if process.is_alive():  # a hang: fail the test rather than the suite
            process.kill()
            process.join()
    return [process.exitcode for process in processes]


def pretrain_losses(run_dir: Path, phases: tuple[str, ...] | None = None) -> list[tuple[str, int, float]]:
    """(phase, step, loss) of every line of a run's metrics.jsonl (of `phases`: all), in order."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(record["phase"], record["step"], record["loss"]) for record in map(json.loads, lines)
            if phases is None or record["phase"] in phases]
