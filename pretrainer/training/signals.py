"""SIGINT, SIGTERM and SIGUSR2: finish the current step, save, and exit with 128 + the signal.

`catch_stop_signals()` installs the handlers for the duration of a run. While the
pretraining loop runs (`request.graceful`), the first signal only records itself: the
loop polls `request.signum` between optimizer steps, saves a checkpoint, hands the signal
to the handler that was installed before ours (`forward`: e.g. submitit's SIGUSR2 handler,
which requeues a preempted SLURM job) and raises `Interrupted`. Outside the loop
(tokenizer training, packing, fine-tuning), or on a second signal, `Interrupted` is raised
at once; writes are atomic, so what was saved stays.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pretrainer.errors import Interrupted

# SIGUSR2: the early warning a scheduler sends before preempting or ending a job (SLURM's
# --signal=USR2@90, which submitit sets up).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


@dataclass
class StopRequest:
    signum: int | None = None  # the first stop signal received while graceful
    graceful: bool = False  # set by the training loop: it will save and stop between steps
    previous: dict[int, Callable | int | None] = field(default_factory=dict)  # handlers before ours

    def forward(self) -> None:
        """Call the handler that was installed before ours for the received signal, if it was a
        Python function (not the default action, and not the default Ctrl-C handler)."""
        handler = self.previous.get(self.signum)
        if callable(handler) and handler is not signal.default_int_handler:
            handler(self.signum, None)


@contextmanager
def catch_stop_signals(after_interrupt: str = "resume=true continues from the last checkpoint"
                       ) -> Iterator[StopRequest]:
    """Handlers for the stop signals for the duration of the block (main thread only:
    elsewhere Python cannot install handlers, and the request simply never fires).
    `after_interrupt` ends the message of an immediate interrupt: what the user can do next."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame) -> None:
        if request.graceful and request.signum is None:
            request.signum = signum
            return
        raise Interrupted(signum, f"interrupted by {signal.Signals(signum).name}; what was saved before is "
                                  f"intact ({after_interrupt})")

    request.previous = {signum: signal.signal(signum, handle) for signum in STOP_SIGNALS}
    try:
        yield request
    finally:
        for signum, handler in request.previous.items():
            signal.signal(signum, handler)
