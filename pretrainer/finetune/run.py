"""Fine-tune every configured task from the pretrained body (and from scratch), once per
seed, and aggregate: per task and init, the mean and std over seeds of each metric on
dev, test and any extra set; each seed's result; the chance level. Predictions of the
best epoch go to `<run dir>/predictions/<task>/<init>/seed<k>/<split>.jsonl`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from pretrainer.config import ArchConfig, FinetuneConfig
from pretrainer.data.examples import TaskSplits
from pretrainer.finetune.classifier import EncodedExamples, encode_examples
from pretrainer.finetune.metrics import glue_average as mean_over_tasks
from pretrainer.finetune.metrics import glue_score
from pretrainer.finetune.recipe import EncodedTask, FinetuneContext, finetune, steps_per_epoch
from pretrainer.finetune.scratch_cache import data_key
from pretrainer.finetune.tasks import chance_score
from pretrainer.hashing import write_text_atomic
from pretrainer.loggers import ProgressBar, Stopwatch, info
from pretrainer.models import build_body

BodyFactory = Callable[[], nn.Module]


def finetune_all(cfg: FinetuneConfig, tasks: list[TaskSplits], tokenizer: Tokenizer, inits: dict[str, BodyFactory],
                 ctx: FinetuneContext, run_dir: Path) -> dict[str, Any]:
    """`tasks` as `load_tasks(cfg)` gave them (loaded, and so checked, before pretraining);
    `inits` maps an init name ("pretrained", "scratch") to a function building that body."""
    results: dict[str, Any] = {}
    if not tasks:  # finetune=none: nothing to announce
        return results
    with _announce(cfg, tasks, len(inits)) as bar:
        ctx = replace(ctx, advance=bar.advance)
        for task in tasks:
            results[task.name] = _finetune_task(cfg, task, tokenizer, inits, ctx, run_dir)
    return results


def _announce(cfg: FinetuneConfig, tasks: list[TaskSplits], num_inits: int) -> ProgressBar:
    """Say how much fine-tuning is ahead (optimizer steps; the bar's ETA gives the time)."""
    steps = (sum(steps_per_epoch(len(task.train), cfg.batch_size) for task in tasks) * cfg.epochs * num_inits
             * len(cfg.run_seeds()))
    info(f"fine-tuning {len(tasks)} task(s) x {num_inits} init(s) x {len(cfg.run_seeds())} seed(s): up to "
         f"{steps:,} steps ({cfg.epochs} epochs of batch {cfg.batch_size})")
    return ProgressBar("fine-tune", steps)


def _finetune_task(cfg: FinetuneConfig, task: TaskSplits, tokenizer: Tokenizer, inits: dict[str, BodyFactory],
                   ctx: FinetuneContext, run_dir: Path) -> dict[str, Any]:
    """One task from every init, once per seed: the aggregated result."""
    encoded = encode_task(task, tokenizer, cfg.max_length)
    result: dict[str, Any] = {"kind": task.kind, "metrics": list(task.metrics), "num_labels": task.num_labels,
                              "chance": chance_score(task), "train_size": len(task.train),
                              "empty_texts": task.empty_texts}
    if task.empty_texts:
        info(f"{task.name}: {task.empty_texts} example(s) with an empty text (kept)")
    for init_name, make_body in inits.items():
        runs = []
        cache = ctx.scratch_cache if init_name == "scratch" else None
        data = data_key([encoded.train, encoded.dev, *encoded.evaluation_sets().values()]) if cache else None
        for seed in cfg.run_seeds():
            stored_at = cache.path(task.name, data, seed) if cache else None
            run = _reused_or_new(cfg, encoded, make_body, ctx, init_name, seed, stored_at)
            if cfg.save_predictions:
                _write_predictions(run_dir / "predictions" / task.name / init_name / f"seed{seed}",
                                   run.pop("predictions"), encoded, task.label_names)
            run.pop("predictions", None)
            runs.append(run | {"seed": seed})
            how = "reused from the scratch cache" if run.get("reused") else f"in {run['wall_time_s']:.1f}s"
            info(f"fine-tuned {task.name} ({init_name}, seed {seed}): test {task.metrics[0]} "
                 f"{run['test'][task.metrics[0]]:.3f} {how}")
        result[init_name] = aggregate(runs)
    return result


def _reused_or_new(cfg: FinetuneConfig, task: EncodedTask, make_body: BodyFactory, ctx: FinetuneContext,
                   init_name: str, seed: int, path: Path | None) -> dict[str, Any]:
    """One fine-tuning run with its wall time; a scratch run kept in the scratch cache at `path`
    (None: not cached) comes from there when it was computed before."""
    if path is not None and (stored := ctx.scratch_cache.load(path)) is not None:
        ctx.advance(steps_per_epoch(len(task.train), cfg.batch_size) * cfg.epochs, timed=False)
        return stored | {"reused": True}
    clock = Stopwatch()
    run = finetune(make_body, task, cfg, ctx, init_name, seed)
    run["wall_time_s"] = clock.elapsed()
    if path is not None:
        ctx.scratch_cache.store(path, run)
    return run


def body_inits(arch: ArchConfig, vocab_size: int, pretrained: dict[str, torch.Tensor],
               scratch_baseline: bool) -> dict[str, BodyFactory]:
    """The bodies fine-tuning starts from: the pretrained one, and a random one as the baseline."""

    def pretrained_body() -> nn.Module:
        body = build_body(arch, vocab_size)
        body.load_state_dict(pretrained)
        return body

    def scratch_body() -> nn.Module:
        return build_body(arch, vocab_size)

    return {"pretrained": pretrained_body} | ({"scratch": scratch_body} if scratch_baseline else {})


def finetune_extras(cfg: FinetuneConfig, results: dict[str, Any]) -> dict[str, Any]:
    """Summary entries beyond the per-task results: the GLUE average of a GLUE run."""
    return {"glue_average": glue_average(results)} if cfg.source == "glue" and results else {}


def glue_average(results: dict[str, Any]) -> dict[str, float]:
    """Per init, the GLUE score: the mean over tasks of each task's mean official metric."""
    inits = {init for result in results.values() for init in ("pretrained", "scratch") if init in result}
    return {init: mean_over_tasks({task: glue_score(result[init]["test"], result["metrics"])
                           for task, result in results.items() if init in result}) for init in sorted(inits)}


def encode_task(task: TaskSplits, tokenizer: Tokenizer, max_length: int) -> EncodedTask:
    def encode(examples) -> EncodedExamples:
        return encode_examples(tokenizer, examples, max_length, task.kind)

    return EncodedTask(task.name, task.kind, task.num_labels, tuple(task.metrics), encode(task.train),
                       encode(task.dev), encode(task.test), {k: encode(v) for k, v in task.extra_eval.items()})


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds under the split's name (so one seed reads as before), std under `<split>_std`."""
    out: dict[str, Any] = {"seeds": runs, "best_epoch": runs[0]["best_epoch"],
                           "wall_time_s": float(sum(r["wall_time_s"] for r in runs))}
    for split in [key for key, value in runs[0].items() if isinstance(value, dict)]:
        out[split] = {m: float(np.mean([r[split][m] for r in runs])) for m in runs[0][split]}
        out[f"{split}_std"] = {m: float(np.std([r[split][m] for r in runs], ddof=1)) if len(runs) > 1 else 0.0
                               for m in runs[0][split]}
    return out


def _write_predictions(directory: Path, predictions: dict[str, list], task: EncodedTask,
                       label_names: list[str]) -> None:
    """One line per example: index, text, gold `label` and `prediction` as ids (a list per word
    for tagging), and for classification and tagging their names as `label_name` and
    `prediction_name` (regression has no names: the value is the label)."""
    sets = {"dev": task.dev, **task.evaluation_sets()}
    names = label_names if task.kind != "regression" else []
    for split, values in predictions.items():
        data = sets[split]
        lines = [json.dumps(_prediction_line(i, data.texts[i], _plain(data, i, task.kind), prediction, names))
                 for i, prediction in enumerate(values)]
        write_text_atomic(directory / f"{split}.jsonl", "\n".join(lines) + "\n")


def _prediction_line(index: int, text: str, label, prediction, names: list[str]) -> dict:
    """A predictions line, its keys in reading order: each id followed by its name when there are names."""
    if not names:
        return {"index": index, "text": text, "label": label, "prediction": prediction}
    return {"index": index, "text": text, "label": label, "label_name": _name(label, names),
            "prediction": prediction, "prediction_name": _name(prediction, names)}


def _plain(data: EncodedExamples, index: int, kind: str):
    label = data.labels[index]
    return [t for t in label if t != -100] if kind == "tagging" else label


def _name(label: int | list[int], names: list[str]) -> str | list[str]:
    """The name of a class id, or of each tag id of a list; an id without a name reads as its number."""
    if isinstance(label, list):
        return [_name(tag, names) for tag in label]
    return names[label] if 0 <= label < len(names) else str(label)
