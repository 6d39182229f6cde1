"""The report's PNG plots. Drawn with matplotlib's Agg renderer on plain `Figure` objects,
never through pyplot: no display is needed and no global backend or figure state is
touched, so a report can be written from a headless job, a test or a notebook alike.

Each function returns None when it wrote its file, or a sentence saying why it did not
(no pretraining curves in fine-tune-only runs, no fine-tuning results, ...).
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter

from pretrainer.report import loss_curves, zero_shot
from pretrainer.report.runs import Configuration

TRAIN_SIZE_KEY = "finetune.train_size"
PLOT_FILES = ("loss.png", "downstream.png", "learning_curve.png", "zero_shot.png", "zero_shot_curve.png")
RETIRED_PLOT_FILES = ("eval_loss.png",)  # written by earlier versions; loss.png replaced it


def write_plots(configs: list[Configuration], tasks: dict[str, str], varying: list[str],
                out_dir: Path) -> tuple[list[Path], list[str]]:
    """All plots into `out_dir`: (files written, notes on the ones skipped). A plot skipped
    now is removed if an earlier report left one, so the folder never mixes two reports."""
    written, notes = [], []
    for name in RETIRED_PLOT_FILES:
        (out_dir / name).unlink(missing_ok=True)
    plots = {"loss.png": lambda path: plot_loss(configs, path),
             "downstream.png": lambda path: plot_downstream(configs, tasks, varying, path),
             "learning_curve.png": lambda path: plot_learning_curve(configs, tasks, varying, path),
             "zero_shot.png": lambda path: plot_zero_shot(configs, varying, path),
             "zero_shot_curve.png": lambda path: plot_zero_shot_curve(configs, path)}
    for name, plot in plots.items():
        path = out_dir / name
        skipped = plot(path)
        if skipped:
            path.unlink(missing_ok=True)
            notes.append(f"{name} not written: {skipped}")
        else:
            written.append(path)
    return written, notes


def plot_loss(configs: list[Configuration], path: Path) -> str | None:
    figure = loss_figure(configs)
    if isinstance(figure, str):
        return figure
    _save(figure, path)
    return None


def loss_figure(configs: list[Configuration]) -> Figure | str:
    """Pretraining loss against steps (left column) and tokens seen (right): per configuration
    the training loss of every logged step as a line (mean over its runs; a band spans their
    min to max) and the eval losses as points on top. One row per objective, since the losses
    of two objectives (MLM's masked-token cross-entropy, CLM's next-token one, ELECTRA's
    generator plus weighted discriminator loss) are not comparable. A str: why there is no figure."""
    groups = loss_curves.by_objective(configs)
    if not groups:
        return "no pretraining losses (fine-tune-only runs, or no step shared by a configuration's runs)"
    figure = Figure(figsize=(11, 1.2 + 3.6 * len(groups)), layout="constrained")
    grid = figure.subplots(len(groups), 2, squeeze=False, sharey="row")
    for row, (objective, members) in zip(grid, groups.items(), strict=True):
        for axes, x_key, xlabel in zip(row, ("steps", "tokens"), ("step", "tokens seen"), strict=True):
            for curves in members:
                _draw_losses(axes, curves, x_key)
            axes.set(xlabel=xlabel, title=f"{objective}: loss against {x_key}")
            axes.grid(alpha=0.3)
        row[1].xaxis.set_major_formatter(EngFormatter())
        row[0].set_ylabel(f"{objective} loss")
        row[0].legend(handles=_loss_legend(members), fontsize="small")
    every = loss_curves.log_every(groups)
    figure.suptitle(f"Pretraining loss, mean over {_run_count(groups)}: training loss"
                    + (f" (logged every {every} steps)" if every else "") + " and eval loss (points)")
    return figure


def _run_count(groups: dict[str, list[loss_curves.ConfigCurves]]) -> str:
    return _count_range({curve.runs for members in groups.values() for curves in members
                         for curve in (curves.train, curves.eval) if curve}, "run")


def _draw_losses(axes: Axes, curves: loss_curves.ConfigCurves, x_key: str) -> None:
    color = _color(curves.config)
    if curves.train:
        x = getattr(curves.train, x_key)
        axes.plot(x, curves.train.mean, color=color, linewidth=1.2)
        if curves.train.runs > 1:
            axes.fill_between(x, curves.train.low, curves.train.high, color=color, alpha=0.15, linewidth=0)
    if curves.eval:
        axes.plot(getattr(curves.eval, x_key), curves.eval.mean, color=color, linestyle=":", linewidth=1,
                  marker="o", markersize=5, markeredgecolor="black", markeredgewidth=0.6, zorder=3)


def _loss_legend(members: list[loss_curves.ConfigCurves]) -> list:
    handles = [Line2D([], [], color=_color(curves.config), label=_short(curves.config)) for curves in members]
    handles += [Line2D([], [], color="gray", label="training loss"),
                Line2D([], [], color="gray", linestyle=":", marker="o", markeredgecolor="black", label="eval loss")]
    if any(curves.train and curves.train.runs > 1 for curves in members):
        handles.append(Patch(facecolor="gray", alpha=0.3, label="min–max over runs"))
    return handles


def plot_downstream(configs: list[Configuration], tasks: dict[str, str], varying: list[str],
                    path: Path) -> str | None:
    figure = downstream_figure(configs, tasks, varying)
    if isinstance(figure, str):
        return figure
    _save(figure, path)
    return None


def downstream_figure(configs: list[Configuration], tasks: dict[str, str], varying: list[str]) -> Figure | str:
    """Per task: a pair of bars per configuration, pretrained and scratch, with std error bars
    where there are seeds to spread (none for a single seed), the chance line, and the y-axis
    zoomed to the data; the title says over how many seeds. A str: why there is no figure."""
    tasks = {task: metric for task, metric in tasks.items()
             if any(config.scores[task].get("pretrained") for config in configs)}
    if not tasks:
        return "no fine-tuning results"
    figure, grid = _grid(len(tasks))
    width = 0.38
    for axes, (task, metric) in zip(grid, tasks.items(), strict=True):
        low, high = math.inf, -math.inf
        for x, config in enumerate(configs):
            for offset, init, alpha in ((-width / 2, "pretrained", 1.0), (width / 2, "scratch", 0.45)):
                scores = config.scores[task].get(init)
                if scores:
                    axes.bar(x + offset, scores.mean, width, yerr=scores.std, capsize=3, color=_color(config),
                             alpha=alpha, hatch="//" if init == "scratch" else None, edgecolor="black", linewidth=0.5)
                    low, high = min(low, scores.mean - (scores.std or 0)), max(high, scores.mean + (scores.std or 0))
        chance = _chance_line(axes, configs, task)
        if chance is not None:
            low, high = min(low, chance), max(high, chance)
        if math.isfinite(low) and math.isfinite(high):  # bars start at the zoomed floor, not at 0
            pad = max(0.05 * (high - low), 0.01)
            axes.set_ylim(low - pad, high + pad)
        axes.set_xticks(range(len(configs)), [_tick(config, varying) for config in configs], rotation=30,
                        ha="right", fontsize="small")
        axes.set(title=task, ylabel=f"test {metric}", xlabel=" ".join(varying))
    handles, _ = grid[0].get_legend_handles_labels()
    handles += [Patch(facecolor="gray", edgecolor="black", label="pretrained"),
                Patch(facecolor="gray", alpha=0.45, hatch="//", edgecolor="black", label="scratch")]
    grid[0].legend(handles=handles, fontsize="small")
    figure.suptitle(f"Test score, mean ± std over {_seed_count(configs)} (bars without error bars: one seed)")
    return figure


def _chance_line(axes: Axes, configs: list[Configuration], task: str) -> float | None:
    """The task's chance score (mean over the configurations that know it) as a dotted line."""
    chances = [c for c in (config.chance(task) for config in configs) if c is not None]
    if not chances:
        return None
    chance = sum(chances) / len(chances)
    axes.axhline(chance, color="gray", linestyle=":", label="chance")
    return chance


def _seed_count(configs: list[Configuration]) -> str:
    return _count_range({config.n_seeds() for config in configs}, "seed")


def _count_range(counts: set[int], noun: str) -> str:
    """"3 seeds", "1 seed", or "2–3 seeds" when the configurations differ."""
    low, high = min(counts), max(counts)
    return f"{low if low == high else f'{low}–{high}'} {noun}{'' if high == 1 else 's'}"


def plot_learning_curve(configs: list[Configuration], tasks: dict[str, str], varying: list[str],
                        path: Path) -> str | None:
    """Score against labeled-example count, a pretrained and a scratch line per group of
    configurations that differ only in `finetune.train_size`."""
    if TRAIN_SIZE_KEY not in varying:
        return f"{TRAIN_SIZE_KEY} does not vary across configurations"
    if not tasks:
        return "no fine-tuning results"
    groups = _train_size_groups(configs, varying)
    figure, grid = _grid(len(tasks))
    for axes, (task, metric) in zip(grid, tasks.items(), strict=True):
        for color_index, (label, members) in enumerate(groups.items()):
            for init, style in (("pretrained", "-"), ("scratch", "--")):
                points = _curve_points(members, task, init)
                if points:
                    sizes, means, stds = zip(*points, strict=True)
                    axes.errorbar(sizes, means, yerr=stds, linestyle=style, marker="o", capsize=3,
                                  color=colormaps["tab10"](color_index % 10), label=f"{label} {init}")
        _chance_line(axes, configs, task)
        axes.set_xscale("log")
        axes.set(title=task, xlabel="labeled training examples", ylabel=f"test {metric}")
        axes.grid(alpha=0.3, which="both")
    grid[0].legend(fontsize="small")
    _save(figure, path)
    return None


def _train_size_groups(configs: list[Configuration], varying: list[str]) -> dict[str, list[Configuration]]:
    """Configurations keyed by their varying overrides other than the train size."""
    groups: dict[str, list[Configuration]] = {}
    for config in configs:
        others = [key for key in varying if key != TRAIN_SIZE_KEY and key in config.overrides]
        parts = [f"{key}={config.overrides[key]}" for key in others]
        groups.setdefault(" ".join(parts) or "(defaults)", []).append(config)
    return groups


def _curve_points(configs: list[Configuration], task: str, init: str) -> list[tuple[float, float, float]]:
    """(train size, mean, std) per configuration that ran `init` on `task`, by train size."""
    points = []
    for config in configs:
        scores = config.scores[task].get(init)
        size = config.train_size(task) or _number(config.overrides.get(TRAIN_SIZE_KEY))
        if scores and size:
            points.append((size, scores.mean, scores.std or 0.0))
    return sorted(points)


def plot_zero_shot(configs: list[Configuration], varying: list[str], path: Path) -> str | None:
    """Per phenomenon: one bar per configuration (mean over runs, std error bar), chance at 0.5."""
    names = zero_shot.phenomena(configs)
    if not names:
        return "no zero-shot results"
    figure, grid = _grid(len(names))
    for axes, name in zip(grid, names, strict=True):
        for x, config in enumerate(configs):
            mean, std = zero_shot.mean_std(zero_shot.accuracies(config, name))
            if mean is not None:
                axes.bar(x, mean, 0.7, yerr=std, capsize=3 if std else 0, color=_color(config), edgecolor="black",
                         linewidth=0.5)
        axes.axhline(zero_shot.CHANCE, color="gray", linestyle=":", label="chance")
        axes.set_ylim(0.0, 1.0)
        axes.set_xticks(range(len(configs)), [_tick(config, varying) for config in configs], rotation=30,
                        ha="right", fontsize="small")
        axes.set(title=name, ylabel="zero-shot accuracy", xlabel=" ".join(varying))
    grid[0].legend(fontsize="small")
    _save(figure, path)
    return None


def plot_zero_shot_curve(configs: list[Configuration], path: Path) -> str | None:
    """Per phenomenon: accuracy against tokens seen, one line per configuration (mean over its
    runs, a ±std band), from the points zero_shot.every scored during pretraining; chance at 0.5."""
    names = [name for name in zero_shot.phenomena(configs)
             if any(zero_shot.curve(config, name) for config in configs)]
    if not names:
        return "no zero-shot curves (zero_shot.every=0: the pairs were scored after pretraining only)"
    figure, grid = _grid(len(names))
    for axes, name in zip(grid, names, strict=True):
        for config in configs:
            points = zero_shot.curve(config, name)
            if points:
                tokens, means, stds = zip(*points, strict=True)
                axes.plot(tokens, means, marker="o", markersize=3, color=_color(config), label=_short(config))
                axes.fill_between(tokens, [m - s for m, s in zip(means, stds, strict=True)],
                                  [m + s for m, s in zip(means, stds, strict=True)],
                                  color=_color(config), alpha=0.15, linewidth=0)
        axes.axhline(zero_shot.CHANCE, color="gray", linestyle=":", label="chance")
        axes.set_ylim(0.0, 1.0)
        axes.xaxis.set_major_formatter(EngFormatter())
        axes.set(title=name, xlabel="pretraining tokens seen", ylabel="zero-shot accuracy")
        axes.grid(alpha=0.3)
    grid[0].legend(fontsize="small")
    figure.suptitle("Zero-shot minimal pairs during pretraining: mean over each configuration's runs (band: ± std)")
    _save(figure, path)
    return None


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _grid(panels: int) -> tuple[Figure, list[Axes]]:
    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    figure = Figure(figsize=(4.8 * columns, 4.0 * rows), layout="constrained")
    axes = [figure.add_subplot(rows, columns, i + 1) for i in range(panels)]
    return figure, axes


def _color(config: Configuration):
    return colormaps["tab10"](config.index % 10)


def _short(config: Configuration, width: int = 32) -> str:
    text = f"#{config.index} {config.label}"
    return text if len(text) <= width else text[: width - 1] + "…"


def _tick(config: Configuration, varying: list[str], width: int = 32) -> str:
    """`#index` and the values of the varying overrides: the keys go once in the axis label."""
    text = " ".join([f"#{config.index}", *(config.overrides.get(key, "(default)") for key in varying)])
    return text if len(text) <= width else text[: width - 1] + "…"


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)
