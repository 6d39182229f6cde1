"""Pretrained vs scratch over seeds: mean ± std of test accuracy per task.

    python scripts/seed_table.py multirun/2026-11-26/19-00-00

Reads every `summary.json` under the given directories, groups the runs by configuration
(their overrides apart from the seed, as `pretrainer report` does) and prints one Markdown
table per configuration: never a table that pools different configurations. Each task
says whether the pretrained body beats the scratch baseline by more than the spread across
seeds (the gap of the means larger than the sum of the two stds). `pretrainer report`
adds confidence intervals and plots.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from pretrainer.report.runs import Configuration, ReportError, find_runs, group_runs, varying_keys


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def configuration_table(config: Configuration) -> list[str]:
    """The Markdown lines of one configuration's table."""
    summaries = [run.summary for run in config.runs]
    lines = [f"{len(summaries)} runs; test accuracy, mean ± std over runs", "",
             "| task | chance | pretrained | scratch | gap | beats scratch by more than the spread |",
             "|---|---|---|---|---|---|"]
    tasks = [task for task, result in summaries[0].get("finetune", {}).items()
             if isinstance(result, dict) and "pretrained" in result and "scratch" in result]
    for task in tasks:
        pre = mean_std([s["finetune"][task]["pretrained"]["test"]["accuracy"] for s in summaries])
        scr = mean_std([s["finetune"][task]["scratch"]["test"]["accuracy"] for s in summaries])
        gap = pre[0] - scr[0]
        cells = [task, f"{summaries[0]['finetune'][task]['chance']:.3f}", f"{pre[0]:.3f} ± {pre[1]:.3f}",
                 f"{scr[0]:.3f} ± {scr[1]:.3f}", f"{gap:+.3f}", "yes" if gap > pre[1] + scr[1] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    walls, losses = config.wall_times(), config.pretrain_values("final_eval_loss")
    lines.append(f"\nwall time per run {statistics.mean(walls):.0f}s (min {min(walls):.0f}, max {max(walls):.0f})"
                 + (f"; final pretraining eval loss {statistics.mean(losses):.3f}" if losses else ""))
    return lines


def main(dirs: list[str]) -> None:
    try:
        configs = group_runs(find_runs([Path(d) for d in dirs]))
    except ReportError as error:
        raise SystemExit(f"seed_table: {error}") from None
    varying = varying_keys(configs)
    if len(configs) > 1:
        print(f"warning: {len(configs)} configurations (differing in {', '.join(varying)}): one table each; "
              "only runs that differ in their seed are pooled\n", file=sys.stderr)
    for config in configs:
        if len(configs) > 1:
            label = " ".join(f"{key}={config.overrides.get(key, '(default)')}" for key in varying)
            print(f"## {label}\n")
        print("\n".join(configuration_table(config)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or ["multirun"])
