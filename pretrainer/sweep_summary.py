"""One table for a whole sweep, a row per job. For `train`: its pretraining figures and,
per task, the pretrained body's test score next to the scratch baseline's; for
`tokenizer`: the tokenizer diagnostics side by side; for `plan`: the compute plans.

Written as `sweep_summary.md` and `sweep_summary.json` into the sweep directory and
printed when the sweep ends, so `-m objective=mlm,clm,t5_span` reads as one comparison.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pretrainer.hashing import write_text_atomic


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows]) + "\n"


def sweep_table(jobs: list[dict[str, Any]]) -> str:
    """Markdown table; `jobs` holds {"job": number, "overrides": str, "summary": summary dict}."""
    tasks = list(dict.fromkeys(task for job in jobs for task in job["summary"].get("finetune", {})))
    header = ["job", "overrides", "eval loss", "tokens/s", "wall s"]
    header += [f"{task} (pretrained / scratch)" for task in tasks]  # test, the task's first metric
    rows = []
    for job in jobs:
        summary = job["summary"]
        pretrain = summary["pretrain"]
        throughput = pretrain.get("tokens_per_s")  # absent for `pretrainer finetune` jobs
        cells = [str(job["job"]), job["overrides"] or "(defaults)", _number(pretrain.get("final_eval_loss")),
                 "—" if throughput is None else f"{throughput:,.0f}", f"{summary['wall_time_s']:.0f}"]
        for task in tasks:
            result = summary.get("finetune", {}).get(task, {})
            cells.append(f"{_score(result, 'pretrained')} / {_score(result, 'scratch')}")
        rows.append(cells)
    return markdown_table(header, rows)


def tokenizer_table(jobs: list[dict[str, Any]]) -> str:
    """Markdown table of `pretrainer tokenizer` reports, one row per job."""
    header = ["job", "overrides", "kind", "vocab", "tokens/word", "words split", "unk", "bytes/token",
              "tokens/doc p50 / p99", "docs over block"]
    rows = []
    for job in jobs:
        r = job["summary"]
        cells = [str(job["job"]), job["overrides"] or "(defaults)", r["kind"], f"{r['vocab_size']:,}",
                 f"{r['fertility']:.3f}", f"{r['split_share']:.1%}", f"{r['unk_rate']:.2%}",
                 f"{r['bytes_per_token']:.2f}",
                 f"{r['length_percentiles']['p50']:.0f} / {r['length_percentiles']['p99']:.0f}",
                 f"{r['over_block_share']:.1%}"]
        rows.append(cells)
    return markdown_table(header, rows)


def zero_shot_table(jobs: list[dict[str, Any]]) -> str:
    """Markdown table of `pretrainer evaluate` results: minimal-pair accuracy per phenomenon, one row per job."""
    names = list(dict.fromkeys(name for job in jobs for name in job["summary"]["zero_shot"]["phenomena"]))
    rows = []
    for job in jobs:
        results = job["summary"]["zero_shot"]
        rows.append([str(job["job"]), job["overrides"] or "(defaults)", f"{results['mean']:.3f}",
                     *(f"{results['phenomena'][n]:.3f}" if n in results["phenomena"] else "—" for n in names)])
    return markdown_table(["job", "overrides", "mean", *names], rows)


def plan_table(jobs: list[dict[str, Any]]) -> str:
    """Markdown table of `pretrainer plan` results, one row per job."""
    header = ["job", "overrides", "family / objective", "params", "non-embedding", "FLOPs/token", "tokens",
              "total FLOPs", "GPUs", "memory/GPU GiB", "wall time"]
    rows = []
    for job in jobs:
        p = job["summary"]
        wall = "—" if p["wall_time_s"] is None else f"{p['wall_time_s']:,.0f} s"
        cells = [str(job["job"]), job["overrides"] or "(defaults)", f"{p['arch']} / {p['objective']}",
                 f"{p['params']:,}", f"{p['non_embedding_params']:,}", f"{p['flops_per_token']:.3e}",
                 f"{p['tokens']:,}", f"{p['total_flops']:.3e}", str(p.get("gpus", 1)),
                 f"{p.get('memory_per_gpu_bytes', p['activation_bytes']) / 2**30:.2f}", wall]
        rows.append(cells)
    return markdown_table(header, rows)


def write_sweep_summary(sweep_dir: Path, jobs: list[dict[str, Any]],
                        make_table: Callable[[list[dict[str, Any]]], str] = sweep_table) -> str:
    table = make_table(jobs)
    write_text_atomic(sweep_dir / "sweep_summary.md", table)
    write_text_atomic(sweep_dir / "sweep_summary.json", json.dumps(jobs, indent=2))
    return table


def _score(result: dict[str, Any], init: str) -> str:
    """Test score (the task's first metric, mean over seeds) of one init, or a dash when it did not run."""
    metric = result.get("metrics", ["accuracy"])[0]
    return _number(result.get(init, {}).get("test", {}).get(metric))


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
