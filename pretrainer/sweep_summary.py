"""One table for a whole sweep: a row per job, its pretraining figures and, per task,
the pretrained body's test score next to the scratch baseline's.

Written as `sweep_summary.md` and `sweep_summary.json` into the sweep directory and
printed when the sweep ends, so `-m objective=mlm,clm,t5_span` reads as one comparison.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pretrainer.hashing import write_text_atomic


def sweep_table(jobs: list[dict[str, Any]]) -> str:
    """Markdown table; `jobs` holds {"job": number, "overrides": str, "summary": summary dict}."""
    tasks = list(dict.fromkeys(task for job in jobs for task in job["summary"].get("finetune", {})))
    header = ["job", "overrides", "eval loss", "tokens/s", "wall s"]
    header += [f"{task} (pretrained / scratch)" for task in tasks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for job in jobs:
        summary = job["summary"]
        pretrain = summary["pretrain"]
        cells = [str(job["job"]), job["overrides"] or "(defaults)", _number(pretrain.get("final_eval_loss")),
                 f"{pretrain['tokens_per_s']:,.0f}", f"{summary['wall_time_s']:.0f}"]
        for task in tasks:
            result = summary.get("finetune", {}).get(task, {})
            cells.append(f"{_score(result, 'pretrained')} / {_score(result, 'scratch')}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_sweep_summary(sweep_dir: Path, jobs: list[dict[str, Any]]) -> str:
    table = sweep_table(jobs)
    write_text_atomic(sweep_dir / "sweep_summary.md", table)
    write_text_atomic(sweep_dir / "sweep_summary.json", json.dumps(jobs, indent=2))
    return table


def _score(result: dict[str, Any], init: str) -> str:
    """Test accuracy of one init, or a dash when it did not run."""
    return _number(result.get(init, {}).get("test", {}).get("accuracy"))


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
