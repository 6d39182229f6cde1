"""Pretrained vs scratch over seeds: mean ± std of test accuracy per task.

    python scripts/seed_table.py multirun/2026-11-26/19-00-00

Reads every `summary.json` under the given directories (one run per seed), prints a
Markdown table and whether the pretrained body beats the scratch baseline by more than
the spread across seeds (the gap of the means larger than the sum of the two stds).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def load_summaries(dirs: list[str]) -> list[dict]:
    summaries = [json.loads(p.read_text()) for d in dirs for p in sorted(Path(d).rglob("summary.json"))]
    if not summaries:
        raise SystemExit(f"no summary.json under {', '.join(dirs)}")
    return summaries


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main(dirs: list[str]) -> None:
    summaries = load_summaries(dirs)
    tasks = list(summaries[0]["finetune"])
    print(f"{len(summaries)} runs; test accuracy, mean ± std over runs\n")
    print("| task | chance | pretrained | scratch | gap | beats scratch by more than the spread |")
    print("|---|---|---|---|---|---|")
    for task in tasks:
        pre = mean_std([s["finetune"][task]["pretrained"]["test"]["accuracy"] for s in summaries])
        scr = mean_std([s["finetune"][task]["scratch"]["test"]["accuracy"] for s in summaries])
        gap = pre[0] - scr[0]
        verdict = "yes" if gap > pre[1] + scr[1] else "no"
        chance = summaries[0]["finetune"][task]["chance"]
        cells = [task, f"{chance:.3f}", f"{pre[0]:.3f} ± {pre[1]:.3f}", f"{scr[0]:.3f} ± {scr[1]:.3f}",
                 f"{gap:+.3f}", verdict]
        print("| " + " | ".join(cells) + " |")
    walls = [s["wall_time_s"] for s in summaries]
    losses = [s["pretrain"]["final_eval_loss"] for s in summaries]
    print(f"\nwall time per run {statistics.mean(walls):.0f}s (min {min(walls):.0f}, max {max(walls):.0f}); "
          f"final pretraining eval loss {statistics.mean(losses):.3f}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["multirun"])
