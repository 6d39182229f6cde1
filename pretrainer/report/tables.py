"""The report's tables, built once as text cells and rendered as Markdown and on the console,
plus the CSV rows (numbers, mean and std in separate columns) for further analysis."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from pretrainer.report import representation, zero_shot
from pretrainer.report.runs import INITS, Configuration, Scores
from pretrainer.report.stats import CONFIDENCE, MIN_BOOTSTRAP, RESAMPLES, Comparison, Difference

DASH = "—"


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    intro: list[str] = field(default_factory=list)  # sentences printed above the table
    text_columns: int = 1  # leading columns of names (left-aligned); the rest hold numbers


def results_table(configs: list[Configuration], varying: list[str], tasks: dict[str, str]) -> Table:
    """One row per configuration: its varying overrides, the test scores, the pretraining figures."""
    header = ["#", *varying, "seeds"]
    header += [f"{task} {init}" for task in tasks for init in INITS]
    header += ["eval loss", "tokens", "pretrain s", "wall s", "tokens/s", "budget", "token cos (init)",
               "text cos (init)"]
    rows = []
    for config in configs:
        row = [str(config.index), *[config.overrides.get(key, "(default)") for key in varying], str(config.n_seeds())]
        row += [_mean_std(config.scores[task].get(init)) for task in tasks for init in INITS]
        row += [_number(_mean(config.pretrain_values("final_eval_loss"))),
                _integer(_mean(config.pretrain_values("tokens"))),
                _number(_mean(config.pretrain_values("wall_time_s")), 1),
                _number(_mean(config.wall_times()), 1),
                _integer(_mean(config.pretrain_values("tokens_per_s"))),
                config.budget_kind() or DASH, *representation.table_cells(config)]
        rows.append(row)
    metrics = ", ".join(f"{task}: {metric}" for task, metric in tasks.items())
    intro = ([f"Test score of each task's primary metric ({metrics}), mean ± std over seeds."] if tasks else
             ["No fine-tuning results."])
    intro.append("Pretraining figures are means over the configuration's runs; token cos and text cos: the "
                 "representation checks (mean cosine between token states, and between texts' mean-pooled states, "
                 "on held-out blocks), with their values at initialisation.")
    return Table("Results", header, rows, intro, text_columns=1 + len(varying))


def difference_table(title: str, comparisons: list[Comparison], intro: list[str]) -> Table:
    header = ["configuration", "task", "metric", "difference",
              f"{CONFIDENCE:.0%} CI", "interval", "CI excludes 0", "seeds"]
    rows = [[c.label, c.task, c.metric, f"{c.difference.estimate:+.4f}", _interval(c.difference),
             c.difference.method or DASH, _yes_no(c.difference.excludes_zero), _seed_counts(c.difference)]
            for c in comparisons]
    return Table(title, header, rows, intro, text_columns=3)


def baseline_table(comparisons: list[Comparison], baseline: Configuration) -> Table:
    intro = [f"Pretrained test score minus the baseline's (#{baseline.index}: {baseline.label}). "
             f"{CONFIDENCE:.0%} confidence interval over seeds, paired by seed when both configurations ran the "
             f"same seeds, otherwise unpaired: with fewer than {MIN_BOOTSTRAP} seeds a t-interval (on the per-seed "
             "differences; Welch's when unpaired), since a bootstrap of so few values has too few distinct resamples "
             f"and comes out too narrow; from {MIN_BOOTSTRAP} seeds the BCa bootstrap ({RESAMPLES:,} resamples, "
             "fixed generator seed). The interval column says which."]
    return difference_table(f"Differences to the baseline #{baseline.index}", comparisons, intro)


def gains_table(gains: list[Comparison]) -> Table:
    intro = ["What pretraining buys: pretrained minus scratch test score, paired by seed, same intervals."]
    return difference_table("Pretrained − scratch", gains, intro)


def csv_rows(configs: list[Configuration], varying: list[str], tasks: dict[str, str]) -> list[dict[str, Any]]:
    """The results table as numbers: one column per value, mean and std apart, empty when absent."""
    rows, names = [], zero_shot.phenomena(configs)
    for config in configs:
        row: dict[str, Any] = {"index": config.index, "configuration": config.label}
        row |= {key: config.overrides.get(key, "") for key in varying}
        row |= {"runs": len(config.runs), "seeds": config.n_seeds()}
        for task, metric in tasks.items():
            for init in INITS:
                scores = config.scores[task].get(init)
                prefix = f"{task}_{init}"
                row |= {f"{prefix}_{metric}_mean": scores.mean if scores else None,
                        f"{prefix}_{metric}_std": scores.std if scores else None,
                        f"{prefix}_seeds": scores.n if scores else 0}
        row |= {"final_eval_loss": _mean(config.pretrain_values("final_eval_loss")),
                "tokens": _mean(config.pretrain_values("tokens")),
                "pretrain_wall_time_s": _mean(config.pretrain_values("wall_time_s")),
                "wall_time_s": _mean(config.wall_times()),
                "tokens_per_s": _mean(config.pretrain_values("tokens_per_s")),
                "budget_kind": config.budget_kind()}
        rows.append(row | representation.csv_columns(config) | zero_shot.csv_columns(config, names))
    return rows


def csv_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: "" if v is None else v for k, v in row.items()} for row in rows])
    return out.getvalue()


def markdown(table: Table) -> str:
    lines = [f"## {table.title}", "", *table.intro, ""]
    if not table.rows:
        return "\n".join([*lines, "(nothing to compare)", ""])
    lines += [_md_row(table.header), "|" + "---|" * len(table.header)]
    lines += [_md_row(row) for row in table.rows]
    return "\n".join([*lines, ""])


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def print_table(console: Console, table: Table) -> None:
    for line in table.intro:
        console.print(escape(line), style="dim")
    if not table.rows:
        console.print("(nothing to compare)")
        return
    rich_table = RichTable(title=escape(table.title))
    for number, column in enumerate(table.header):
        rich_table.add_column(escape(column), justify="left" if number < table.text_columns else "right")
    for row in table.rows:
        rich_table.add_row(*map(escape, row))
    _print_unsqueezed(console, rich_table)


def _print_unsqueezed(console: Console, table: RichTable) -> None:
    """Print at the table's natural width, not squeezed into the terminal's: a number cut to
    `0.…` is worse than a line the terminal wraps."""
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    # print(width=) cannot widen past the console, so the width is set for this print and the
    # console's own setting put back: None (rich's private default) keeps it deciding at each print.
    saved = console._width
    console.width = max(console.width, natural)
    try:
        console.print(table, crop=False)
    finally:
        console._width = saved


def _mean_std(scores: Scores | None) -> str:
    if not scores:
        return DASH
    return f"{scores.mean:.4f}" if scores.std is None else f"{scores.mean:.4f} ± {scores.std:.4f}"


def _interval(difference: Difference) -> str:
    if difference.low is None or difference.high is None:
        return difference.note
    return f"[{difference.low:+.4f}, {difference.high:+.4f}]"


def _seed_counts(difference: Difference) -> str:
    if difference.paired:
        return f"{difference.n_a} paired"
    return f"{difference.n_a} vs {difference.n_b} (unpaired)"


def _yes_no(value: bool | None) -> str:
    return DASH if value is None else "yes" if value else "no"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _number(value: float | None, digits: int = 4) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _integer(value: float | None) -> str:
    return DASH if value is None else f"{value:,.0f}"
