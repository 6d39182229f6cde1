"""`write_report(dirs)`: gather the runs under some directories, group them into
configurations, and write `report.md`, `report.csv` and the PNG plots into the first
directory, printing the same tables to the console."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from pretrainer import loggers
from pretrainer.report import representation, tables, zero_shot
from pretrainer.report.plots import write_plots
from pretrainer.report.runs import (
    Configuration,
    ReportError,
    Run,
    collect_scores,
    constant_overrides,
    find_runs,
    group_runs,
    label_configurations,
    task_metrics,
    varying_keys,
)
from pretrainer.report.stats import Comparison, compare_to_baseline, pretrained_gains


@dataclass
class ReportResult:
    """What the report shows, as data (for tests and for callers that want the numbers)."""

    out_dir: Path
    runs: list[Run]
    configurations: list[Configuration]
    varying_keys: list[str]  # the override keys that are the table's columns
    constant_overrides: dict[str, str]  # shared by every configuration: the header line
    tasks: dict[str, str]  # task -> primary metric
    rows: list[dict[str, Any]]  # the CSV rows, one per configuration
    baseline: Configuration
    comparisons: list[Comparison]  # every other configuration minus the baseline, per task
    gains: list[Comparison]  # pretrained minus scratch, per configuration and task
    plots: list[Path]
    notes: list[str] = field(default_factory=list)  # plots skipped, runs without overrides
    files: list[Path] = field(default_factory=list)  # everything written


def write_report(dirs: list[Path], baseline: str | int | None = None, console: Console | None = None) -> ReportResult:
    """Report on every run under `dirs` (a run dir, a sweep dir, several); files go into `dirs[0]`.

    `baseline` picks the configuration the others are compared with: its row number (as in
    the table's `#` column) or a substring of its label; default the first configuration.
    Raises ReportError when a directory holds no run or `baseline` matches no single row.
    """
    dirs = [Path(d) for d in dirs]
    runs = find_runs(dirs)
    configs = group_runs(runs)
    varying = varying_keys(configs)
    label_configurations(configs, varying)
    tasks = task_metrics(runs)
    for config in configs:
        collect_scores(config, tasks)
    chosen = select_baseline(configs, baseline)
    plots, plot_notes = write_plots(configs, tasks, varying, dirs[0])
    gains = pretrained_gains(configs, tasks)
    result = ReportResult(
        out_dir=dirs[0], runs=runs, configurations=configs, varying_keys=varying,
        constant_overrides=constant_overrides(configs), tasks=tasks, rows=tables.csv_rows(configs, varying, tasks),
        baseline=chosen, comparisons=compare_to_baseline(configs, chosen, tasks), gains=gains, plots=plots,
        notes=_override_notes(runs) + representation.notes(configs, gains) + plot_notes)
    _write_files(result)
    print_report(result, console or loggers.console)  # a log file gets the tables whole, not cut at 80
    return result


def select_baseline(configs: list[Configuration], choice: str | int | None) -> Configuration:
    """The configuration named by a row number or by a substring of its label (an exact label wins)."""
    if choice is None:
        return configs[0]
    text = str(choice).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not -len(configs) <= index < len(configs):
            raise ReportError(f"baseline {text}: there are {len(configs)} configurations (rows 0-{len(configs) - 1})")
        return configs[index]
    exact = [config for config in configs if config.label == text]
    matches = exact or [config for config in configs if text in config.label]
    if len(matches) != 1:
        labels = "; ".join(f"#{config.index} {config.label}" for config in configs)
        problem = "matches no configuration" if not matches else f"matches {len(matches)} configurations"
        raise ReportError(f"baseline {text!r} {problem}; "
                          f"choose a row number or a unique part of: {labels}")
    return matches[0]


def _override_notes(runs: list[Run]) -> list[str]:
    missing = [run for run in runs if not run.has_overrides]
    if not missing:
        return []
    return [f"{len(missing)} run(s) without .hydra/overrides.yaml counted as default configuration: "
            + ", ".join(str(run.path) for run in missing[:5]) + (" ..." if len(missing) > 5 else "")]


def report_tables(result: ReportResult) -> list[tables.Table]:
    sections = [tables.results_table(result.configurations, result.varying_keys, result.tasks)]
    names = zero_shot.phenomena(result.configurations)
    if names:
        header = ["#", *result.varying_keys, "runs", *names]
        sections.append(tables.Table(
            "Zero-shot minimal pairs", header, zero_shot.table_rows(result.configurations, result.varying_keys, names),
            ["Share of minimal pairs whose grammatical sentence the pretrained model scores higher (chance 0.5), "
             "no fine-tuning; mean ± std over the configuration's runs."], text_columns=1 + len(result.varying_keys)))
    if len(result.configurations) > 1 and result.tasks:
        sections.append(tables.baseline_table(result.comparisons, result.baseline))
    if result.gains:
        sections.append(tables.gains_table(result.gains))
    return sections


def header_lines(result: ReportResult) -> list[str]:
    constant = " ".join(f"{k}={v}" for k, v in result.constant_overrides.items()) or "(none)"
    return [f"{len(result.runs)} runs, {len(result.configurations)} configurations.",
            f"Overrides shared by all configurations: {constant}"]


def markdown_report(result: ReportResult) -> str:
    parts = ["# Experiment report", "", *[f"{line}  " for line in header_lines(result)], ""]
    parts += [tables.markdown(table) for table in report_tables(result)]
    if result.plots:
        parts += ["## Plots", "", *[f"![{path.stem}]({path.name})" for path in result.plots], ""]
    if result.notes:
        parts += ["## Notes", "", *[f"- {note}" for note in result.notes], ""]
    parts += ["## Runs", "", *[_runs_line(config, result.out_dir) for config in result.configurations], ""]
    return "\n".join(parts)


def _runs_line(config: Configuration, out_dir: Path) -> str:
    paths = ", ".join(f"`{_relative(run.path, out_dir)}`" for run in config.runs)
    return f"- #{config.index} {config.label}: {paths}"


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve())) or "."
    except ValueError:
        return str(path)


def _write_files(result: ReportResult) -> None:
    """report.md and report.csv; the plots are already written (report.md links them)."""
    markdown_path, csv_path = result.out_dir / "report.md", result.out_dir / "report.csv"
    markdown_path.write_text(markdown_report(result))
    csv_path.write_text(tables.csv_text(result.rows))
    result.files = [markdown_path, csv_path, *result.plots]


def print_report(result: ReportResult, console: Console) -> None:
    for line in header_lines(result):
        console.print(escape(line))
    for table in report_tables(result):
        tables.print_table(console, table)
    for note in result.notes:
        console.print(escape(f"note: {note}"), style="yellow")
    console.print(escape(f"wrote {', '.join(str(path) for path in result.files)}"), style="dim")
