"""CPU training throughput by thread count and OpenMP wait policy, on an idle and on a
shared machine, and the AdamW step by implementation.

    python3 scripts/bench_cpu_threads.py [--steps 60] [--load 1] [--out bench_threads.json]

Each setting is one `pretrainer train` subprocess on the embedded demo (default config,
`trainer.max_steps=--steps`, no fine-tuning, caches warm), its pretraining tokens/s read from
summary.json. `--load N` starts N busy processes (a pure-Python spin loop each) beside it,
as on a shared machine; 0 measures the idle machine only. Wait settings of the OpenMP
threads between parallel regions: `unset` (libgomp's default: spin a while, then sleep),
ACTIVE (spin), PASSIVE (sleep at once: no CPU taken from others) and `GOMP_SPINCOUNT=1000`
(spin 1,000 iterations, then sleep: the CLI's default when neither is set).
The AdamW part times one optimizer step over the demo model's parameters (1 thread):
the for-loop, foreach and fused implementations.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _spin(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


# (label, environment): how OpenMP threads wait. The CLI sets GOMP_SPINCOUNT only when
# OMP_WAIT_POLICY is unset, so "unset" is measured with an empty value (libgomp ignores it).
WAIT_SETTINGS = (("unset", {"OMP_WAIT_POLICY": ""}), ("ACTIVE", {"OMP_WAIT_POLICY": "ACTIVE"}),
                 ("PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}),
                 ("GOMP_SPINCOUNT=1000", {"GOMP_SPINCOUNT": "1000"}))


def train_tokens_per_s(threads: int, wait: dict[str, str], steps: int, cache: Path) -> float:
    """Pretraining tokens/s of a short demo run with `threads` and the OpenMP `wait` environment."""
    with tempfile.TemporaryDirectory() as run_dir:
        env = {**os.environ, **wait, "PRETRAINER_CACHE": str(cache)}
        for name in ("OMP_NUM_THREADS", *(k for k in ("GOMP_SPINCOUNT",) if k not in wait)):
            env.pop(name, None)
        subprocess.run([sys.executable, "-m", "pretrainer.cli", "train", f"trainer.max_steps={steps}",
                        f"trainer.eval_every={steps}", "trainer.eval_batches=1", f"trainer.num_threads={threads}",
                        "finetune=none", "zero_shot.suite=none", f"hydra.run.dir={run_dir}"],
                       check=True, env=env, cwd=ROOT, capture_output=True)
        return json.loads((Path(run_dir) / "summary.json").read_text())["pretrain"]["tokens_per_s"]


def thread_table(steps: int, load: int, cache: Path) -> list[dict]:
    rows = []
    for busy in sorted({0, load}):
        for threads in (1, 2):
            for label, wait in WAIT_SETTINGS:
                spinners = [multiprocessing.Process(target=_spin, args=(time.time() + 600,), daemon=True)
                            for _ in range(busy)]
                for spinner in spinners:
                    spinner.start()
                try:
                    rate = train_tokens_per_s(threads, wait, steps, cache)
                finally:
                    for spinner in spinners:
                        spinner.terminate()
                rows.append({"busy_processes": busy, "threads": threads, "wait": label, "tokens_per_s": rate})
                print(f"busy {busy}  threads {threads}  {label:<20}  {rate:>9,.0f} tok/s", flush=True)
    return rows


def adamw_table() -> list[dict]:
    """ms per AdamW step over the demo model's parameters, 1 thread, by implementation."""
    import torch

    from pretrainer.config import ArchConfig
    from pretrainer.models import build_body

    torch.set_num_threads(1)
    body = build_body(ArchConfig(name="encoder", n_layer=2, d_model=128, n_head=2, d_ff=512, max_len=128), 4096)
    for parameter in body.parameters():
        parameter.grad = torch.randn_like(parameter) * 1e-3
    rows = []
    for name, options in (("for-loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        optimizer = torch.optim.AdamW(body.parameters(), lr=1e-3, **options)
        for _ in range(5):
            optimizer.step()
        start = time.perf_counter()
        for _ in range(50):
            optimizer.step()
        milliseconds = (time.perf_counter() - start) / 50 * 1e3
        rows.append({"adamw": name, "ms_per_step": milliseconds})
        print(f"AdamW {name:<8} {milliseconds:6.2f} ms/step (1 thread)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--load", type=int, default=1, help="busy processes beside the run (0: idle only)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    cache = Path(os.environ.get("PRETRAINER_CACHE", "~/.cache/pretrainer")).expanduser()
    print(f"{os.cpu_count()} CPUs; demo pretraining, {args.steps} steps per setting", flush=True)
    figures = {"threads": thread_table(args.steps, args.load, cache), "adamw": adamw_table()}
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
