"""Run logging: `metrics.jsonl` in the run dir always, wandb when `logger.name=wandb`,
and a console progress bar plus the final results table.

Where the output is not a terminal (a log file, a pipe, a scheduler's output) rich would assume
80 columns and cut tables and wrap lines there; the console is then `$COLUMNS` wide when that is
set, else `LOG_WIDTH`, so a log holds every table whole and every message on one line."""

from __future__ import annotations

import json
import math
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from pretrainer.config import LoggerConfig
from pretrainer.config_tree import flatten
from pretrainer.hashing import write_text_atomic

LOG_WIDTH = 10_000  # columns when the output is not a terminal and $COLUMNS is unset: no width to fit


class LogConsole(Console):
    """Rich's console, as wide as `LOG_WIDTH` where the output is not a terminal and neither
    $COLUMNS nor an explicit width says otherwise; decided at each print, as the output may change
    (pytest's capture, a redirected sys.stdout)."""

    def _get_size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        if self._width is not None or self.is_terminal or self._environ.get("COLUMNS", "").isdigit():
            return size
        return ConsoleDimensions(LOG_WIDTH, size.height)

    size = property(_get_size, Console.size.fset)


console = LogConsole()
error_console = LogConsole(stderr=True)


def info(message: str) -> None:
    """A dim status line; the text is escaped so brackets in overrides print literally."""
    console.print(escape(message), style="dim")


def warn(message: str) -> None:
    """A warning line on stderr: something was wrong and was handled (a rebuilt cache, a skipped step)."""
    error_console.print(escape(f"warning: {message}"), style="yellow", soft_wrap=True)  # one line, never wrapped


def quiet_console() -> None:
    """Silence this process's console output (the ranks other than 0 of a distributed run)."""
    console.quiet = True
    error_console.quiet = True


class NullLogger:
    """A RunLogger that records nothing (ranks other than 0: rank 0 logs for the run)."""

    def log(self, record: dict[str, Any]) -> None:
        pass

    def summarize(self, summary: dict[str, Any]) -> None:
        pass

    def __enter__(self) -> NullLogger:
        return self

    def __exit__(self, *exc_info) -> None:
        pass


class RunLogger:
    """One JSON object per logged step in `metrics.jsonl`, mirrored to wandb if enabled."""

    def __init__(self, run_dir: Path, cfg: LoggerConfig, run_name: str, config: dict[str, Any],
                 job_type: str = "pretrain"):
        self.path = run_dir / "metrics.jsonl"
        self._file = open(self.path, "a", buffering=1)  # line-buffered: a crash loses at most one line
        self._wandb_run = _start_wandb(run_dir, cfg, run_name, config, job_type) if cfg.name == "wandb" else None
        self._charted: set[str] = set()  # the prefixes whose x-axis wandb was told

    def log(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(json_safe(record)[0], allow_nan=False) + "\n")
        if self._wandb_run is not None:
            prefix, values = wandb_row(record)
            if prefix not in self._charted:  # charts against the record's own step, not wandb's call counter
                self._wandb_run.define_metric(f"{prefix}/step")
                self._wandb_run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/step")
                self._charted.add(prefix)
            self._wandb_run.log(values)

    def summarize(self, summary: dict[str, Any]) -> None:
        if self._wandb_run is not None:
            self._wandb_run.summary.update(flatten(summary, "/"))

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()  # also when the run fails: metrics.jsonl keeps what was logged, wandb is finished

    def close(self) -> None:
        self._file.close()
        if self._wandb_run is not None:
            self._wandb_run.finish()  # each job of a sweep gets its own run
            self._wandb_run = None


def wandb_row(record: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """(prefix, values) of a metrics.jsonl record for wandb: one chart group per phase, task and
    init (`finetune/topic/scratch/loss`), the record's step and tokens among the values, so
    charts can use them as their x-axis."""
    prefix = "/".join(str(record[k]) for k in ("phase", "task", "init") if k in record)
    values = {f"{prefix}/{k}": v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return prefix, values


def _start_wandb(run_dir: Path, cfg: LoggerConfig, run_name: str, config: dict[str, Any], job_type: str):
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(
        project=cfg.project, entity=cfg.entity, mode=cfg.mode, group=cfg.group, tags=list(cfg.tags),
        name=run_name, dir=str(run_dir), config=config, reinit="finish_previous", job_type=job_type,
    )


class ProgressBar:
    """Console progress for a loop of known length: loss, lr, tokens/s and ETA. On a terminal a
    live bar; otherwise (a log file, a scheduler's output) a plain line every `LINE_EVERY_S`
    seconds with the same figures, so a long run under `nohup` or SLURM shows where it is.
    `total=None`: a stream of unknown length, counted in `unit`s, with no ETA."""

    LINE_EVERY_S = 30.0

    def __init__(self, description: str, total: int | None, start: int = 0, unit: str = ""):
        self._unit = f" {unit}" if unit else ""
        self._plain = not console.is_terminal
        # Not on a terminal the lines below are the record: no live display, not even a last frame of the bar.
        self._progress = Progress(*_columns(total is not None, self._unit), console=console, disable=self._plain)
        self._task = self._progress.add_task(description, total=total, stats="", completed=start)
        self._clock, self._last_line, self._line_shows = Stopwatch(), 0.0, None
        self._untimed = start  # progress this process did not time: a resumed run's earlier steps, reused results
        self._progress.start()

    def update(self, completed: int, **stats: float) -> None:
        text = "  ".join(_format_stat(k, v) for k, v in stats.items())
        self._progress.update(self._task, completed=completed, stats=text)
        self._maybe_line()

    def advance(self, steps: int, timed: bool = True) -> None:
        """`timed=False`: work skipped rather than done (a reused result), left out of the rate."""
        self._progress.advance(self._task, steps)
        if not timed:
            self._untimed += steps
        self._maybe_line()

    def _maybe_line(self) -> None:
        """Not on a terminal: one progress line per LINE_EVERY_S (the live bar is not drawn there)."""
        elapsed = self._clock.elapsed()
        if self._plain and elapsed - self._last_line >= self.LINE_EVERY_S:
            self._last_line = elapsed
            self._print_line(elapsed)

    def _print_line(self, elapsed: float) -> None:
        task = self._progress.tasks[0]
        done = int(task.completed)
        stats = f"  {task.fields['stats']}" if task.fields["stats"] else ""
        if task.total is None:
            line = f"{task.description} {done}{self._unit}{stats}  elapsed {_clock_time(elapsed)}"
        else:
            total, timed = int(task.total), done - self._untimed
            eta = _clock_time(elapsed / timed * (total - done)) if timed > 0 else "?"
            line = (f"{task.description} {done}/{total}{self._unit} ({done / max(total, 1):.0%}){stats}  "
                    f"elapsed {_clock_time(elapsed)}  ETA {eta}")
        self._progress.console.print(escape(line), soft_wrap=True)
        self._line_shows = (done, task.total)

    def note(self, message: str) -> None:
        """A line above the bar; in a log file (no terminal) these lines are the progress record."""
        self._progress.console.print(escape(message), style="dim")

    def elapsed(self) -> float:
        """Seconds since the bar started."""
        return self._clock.elapsed()

    def finish(self) -> None:
        """The work ended where it stands (a stream shorter than `total`): shown as done."""
        done = self._progress.tasks[0].completed
        self._progress.update(self._task, total=done, completed=done)

    def close(self) -> None:
        task = self._progress.tasks[0]
        if self._plain and self._line_shows != (int(task.completed), task.total):  # the final figures, once
            self._print_line(self._clock.elapsed())
        self._progress.stop()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _columns(known_total: bool, unit: str) -> list[ProgressColumn]:
    """A known total: bar, percent, figures, elapsed and ETA; a stream: a pulsing bar, the count, figures, elapsed."""
    if known_total:
        return [TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f}" + escape(unit)),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn()]


def _clock_time(seconds: float) -> str:
    """H:MM:SS, as the live bar shows elapsed time and ETA."""
    return str(timedelta(seconds=int(seconds)))


def _format_stat(key: str, value: float) -> str:
    if key == "lr":
        return f"lr {value:.2e}"
    if key.endswith("/s"):
        return f"{value:,.0f} {key}"
    if isinstance(value, int):  # a count: "1,234,567 tokens"
        return f"{value:,} {key}"
    return f"{key} {value:.3f}"


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def print_key_values(title: str, rows: list[tuple[str, str]]) -> None:
    """A two-column table (label, value) on the console, e.g. a plan or tokenizer diagnostics."""
    table = Table(title=escape(title), show_header=False)
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)


def write_summary(run_dir: Path, summary: dict[str, Any], logger: RunLogger) -> None:
    """`summary.json` in the run dir (atomically) and the logger's run summary. Strict JSON:
    a NaN or infinite value is written as null and listed under `nonfinite` (path -> value)."""
    safe, nonfinite = json_safe(summary)
    if nonfinite:
        safe["nonfinite"] = nonfinite
    write_text_atomic(run_dir / "summary.json", json.dumps(safe, indent=2, allow_nan=False))
    logger.summarize(safe)


def json_safe(tree: Any, path: str = "") -> tuple[Any, dict[str, str]]:
    """(`tree` with every NaN / inf float replaced by None, {"a/b/0": "nan", ...} of what was replaced)."""
    if isinstance(tree, float) and not math.isfinite(tree):
        return None, {path: str(tree)}
    found: dict[str, str] = {}
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out[key], more = json_safe(value, f"{path}/{key}" if path else str(key))
            found.update(more)
        return out, found
    if isinstance(tree, (list, tuple)):
        items = []
        for i, value in enumerate(tree):
            item, more = json_safe(value, f"{path}/{i}" if path else str(i))
            items.append(item)
            found.update(more)
        return items, found
    return tree, found


def print_results_table(summary: dict[str, Any]) -> None:
    """Per task and metric: dev/test of the pretrained body next to the scratch baseline
    (mean ± std when fine-tuning ran over several seeds)."""
    table = Table(title=escape(f"Results — {summary['run_name']}"))
    for column in ("task", "metric", "chance", "pretrained dev", "pretrained test", "scratch dev", "scratch test"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for task, result in summary.get("finetune", {}).items():
        primary = result.get("metrics", ["accuracy"])[0]
        for metric in result["pretrained"]["test"]:
            row = [task, metric, _fmt(result.get("chance") if metric == primary else None)]
            for init in ("pretrained", "scratch"):
                for split in ("dev", "test"):
                    run = result.get(init, {})
                    row.append(_mean_std(run.get(split, {}).get(metric), run.get(f"{split}_std", {}).get(metric)))
            table.add_row(*row)
    pre = summary.get("pretrain", {})
    if table.row_count:
        console.print(table)
    for init, score in summary.get("glue_average", {}).items():
        info(f"GLUE average ({init}): {score:.3f}")
    if pre:
        info(
            f"pretraining: {pre.get('tokens', 0):,} tokens in {pre.get('wall_time_s', 0):.1f}s "
            f"({pre.get('tokens_per_s', 0):,.0f} tok/s), final eval loss {_fmt(pre.get('final_eval_loss'))}; "
            f"total wall time {summary['wall_time_s']:.1f}s"
        )
    if summary.get("run_dir"):
        info(f"results in {summary['run_dir']} (summary.json, metrics.jsonl)")


def _mean_std(mean: float | None, std: float | None) -> str:
    return _fmt(mean) if not std else f"{mean:.3f} ± {std:.3f}"


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
