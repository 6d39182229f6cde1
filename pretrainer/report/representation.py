"""The representation checks of each run (`pretrain.representation` in summary.json, see
`pretrainer.evaluation.representation`) in the report: a results-table column pair, CSV columns
and a note for each configuration whose pretrained body collapsed or pooled texts alike, so a
sweep's report says which of its rows are not real results."""

from __future__ import annotations

from statistics import fmean
from typing import Any

from pretrainer.report.runs import Configuration
from pretrainer.report.stats import Comparison

DASH = "—"
# (summary flag, what the note says of a flagged run)
FLAGS = (("collapsed", "maps every token to nearly the same vector"),
         ("sequences_alike", "averages different texts closer together than at initialisation"))


def values(config: Configuration, key: str) -> list[float]:
    """`key` of the representation check of every run that recorded one."""
    found = [run.representation.get(key) for run in config.runs]
    return [float(value) for value in found if value is not None]


def table_cells(config: Configuration) -> list[str]:
    """"token cos (init)" and "text cos (init)": means over the configuration's runs."""
    return [_with_init(config, "token_cosine"), _with_init(config, "sequence_cosine")]


def csv_columns(config: Configuration) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for key in ("token_cosine", "token_cosine_at_init", "sequence_cosine", "sequence_cosine_at_init"):
        columns[key] = _mean(values(config, key))
    for flag, _ in FLAGS:
        columns[f"{flag}_runs"] = flagged_runs(config, flag)
    return columns


def notes(configs: list[Configuration], gains: list[Comparison]) -> list[str]:
    """One sentence per configuration with a flagged run. Fine-tuning from such a body usually
    scores at or below scratch, so its row does not measure what the objective can teach; the
    checks are heuristics, so where the row's own pretrained - scratch interval (`gains`, the
    report's table) lies above 0 the note says so instead (ELECTRA with ALiBi: tokens 0.64 from
    0.42, yet topic 0.95 against 0.54 scratch)."""
    won_by = {}  # configuration label -> tasks its pretrained body wins, in the gains' order
    for gain in gains:
        if gain.difference.excludes_zero and gain.difference.estimate > 0:
            won_by.setdefault(gain.label, []).append(gain.task)
    sentences = []
    for config in configs:
        checked = sum(bool(run.representation) for run in config.runs)
        for flag, what in FLAGS:
            if flagged := flagged_runs(config, flag):
                found = (f"#{config.index} {config.label or '(defaults)'}: the pretrained body {what} in "
                         f"{flagged} of {checked} run(s) (token cos / text cos columns); ")
                if won := won_by.get(config.label):
                    sentences.append(found + f"yet fine-tuning from it beats scratch on {', '.join(won)} by more "
                                     "than the seed spread (its 95% interval above 0), so the check misjudged it "
                                     "there; its other tasks may still suffer")
                else:
                    sentences.append(found + "fine-tuning from it is likely at or below scratch, so this row is "
                                     "not a real result")
                break  # a collapsed body also pools texts alike: one note says it
    return sentences


def flagged_runs(config: Configuration, flag: str) -> int:
    """How many of the configuration's runs the check flagged with `flag`."""
    return sum(bool(run.representation.get(flag)) for run in config.runs)


def _with_init(config: Configuration, key: str) -> str:
    trained, initial = _mean(values(config, key)), _mean(values(config, f"{key}_at_init"))
    if trained is None:
        return DASH
    return f"{trained:.3f}" + ("" if initial is None else f" ({initial:.3f})")


def _mean(found: list[float]) -> float | None:
    return fmean(found) if found else None
