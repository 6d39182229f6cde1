"""`train(cfg, run_dir)`: tokenizer -> packed corpus -> pretraining -> fine-tuning -> summary.

Checks that cost little run first (the resume point and its config, the fine-tuning task
files), so that bad input fails before a tokenizer is trained or a corpus is packed.

Importable and testable without the CLI; receives typed config dataclasses only.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from pretrainer.config import Config
from pretrainer.data.blocks import PackedCorpus, load_or_pack
from pretrainer.data.sources import open_corpus
from pretrainer.errors import ConfigError, DivergenceError
from pretrainer.evaluation.representation import check_pretrained_body
from pretrainer.evaluation.run import run_pairs, zero_shot_curve, zero_shot_probe, zero_shot_results
from pretrainer.finetune.recipe import FinetuneContext
from pretrainer.finetune.run import body_inits, finetune_all, finetune_extras
from pretrainer.finetune.scratch_cache import ScratchCache
from pretrainer.finetune.tasks import load_tasks
from pretrainer.hashing import write_text_atomic
from pretrainer.loggers import (
    NullLogger,
    RunLogger,
    Stopwatch,
    info,
    print_results_table,
    quiet_console,
    warn,
    write_summary,
)
from pretrainer.models import build_body
from pretrainer.objectives import build_objective, objective_class
from pretrainer.plan import model_cost
from pretrainer.provenance import build_manifest, write_manifest
from pretrainer.resume import (
    ResumePoint,
    check_tokenizer,
    check_weights_fit,
    corpus_changed,
    find_resume_point,
    record_resume,
)
from pretrainer.run_dir import hold_run_dir, truncate_metrics
from pretrainer.tokenization import (
    SpecialIds,
    add_special_tokens,
    load_or_train_tokenizer,
    read_tokenizer,
    tokenizer_fingerprint,
    with_bpe_dropout,
)
from pretrainer.training.device import resolve_device, use_bf16
from pretrainer.training.distributed import World, init_from_environment, main_process_first
from pretrainer.training.loop import PretrainingModel, Runtime, TrainState, pretrain
from pretrainer.training.parallel import gathered_state, is_sharded
from pretrainer.training.signals import StopRequest, catch_stop_signals


def train(cfg: Config, run_dir: Path, halt_at_step: int | None = None) -> dict[str, Any]:
    """Run one experiment into `run_dir`; returns (and writes) its summary.

    Holds the run dir's lock and the SIGINT/SIGTERM handlers for the whole run (see
    `run_dir.hold_run_dir` and `training.signals`). `halt_at_step`: stop pretraining at
    that step with a checkpoint and return `{"halted_at_step": step}` (no fine-tuning, no
    summary); `pretrainer reproduce` replays a run resumed with changes that way.

    Under torchrun (or a multi-task SLURM step) every process calls this: they pretrain together
    (DDP or FSDP2, `trainer.parallel`); rank 0 alone logs, writes the run dir and fine-tunes, and
    the other ranks return `{"rank": r}` once pretraining is done. The process group stays for
    the next run of a sweep (it cannot be joined twice on one port); the caller leaves it at exit."""
    if cfg.init is not None:  # not silently ignored: the body below is a fresh one
        raise ConfigError(f"init={cfg.init} starts `pretrainer finetune` or `evaluate` from a model; train "
                          "pretrains a new body (resume=true continues the run dir's own checkpoints)")
    clock = Stopwatch()
    world = init_from_environment()
    if not world.main:
        quiet_console()
    with hold_run_dir(run_dir) if world.main else contextlib.nullcontext(), catch_stop_signals() as stop:
        return _train(cfg, run_dir, stop, halt_at_step, clock, world)


def _train(cfg: Config, run_dir: Path, stop: StopRequest, halt_at_step: int | None,
           clock: Stopwatch, world: World) -> dict[str, Any]:
    run_name = cfg.run_name or run_dir.name
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    device = _process_device(resolve_device(cfg.trainer.device), world)
    bf16 = use_bf16(cfg.trainer.precision, device)
    execution = {"device": device.type, "bf16": bf16,
                 "blocks_per_step": cfg.trainer.batch_size * cfg.trainer.grad_accum * world.size}
    torch.manual_seed(cfg.trainer.seed)
    cache_dir = Path(cfg.cache_dir).expanduser()
    # Cheap checks first: a refused resume or a bad task file must not cost a tokenizer and a corpus pass.
    with main_process_first():  # rank 0 sets a bad checkpoint aside before the others look
        resume_point = find_resume_point(cfg, run_dir, execution)
    tasks = load_tasks(cfg.finetune)
    pairs = run_pairs(cfg, world.distributed)
    corpus = open_corpus(cfg.data)
    new_corpus = resume_point is not None and corpus_changed(resume_point, corpus.fingerprint,
                                                             cfg.resume_allow_changes)

    objective_type = objective_class(cfg.objective)
    with main_process_first():  # rank 0 trains the tokenizer and packs; the others read the caches
        if new_corpus:  # the run keeps its vocabulary: the changed corpus is packed with the run's tokenizer
            trained, tokenizer_cached = read_tokenizer(run_dir / "tokenizer" / "tokenizer.json"), True
        else:
            trained, tokenizer_cached = load_or_train_tokenizer(
                cfg.tokenizer, corpus.fingerprint, corpus.documents(), cache_dir)
        # BPE-dropout segments the pretraining corpus only; evaluation and fine-tuning use plain BPE.
        segmenter = with_bpe_dropout(trained, cfg.tokenizer.bpe_dropout) if cfg.tokenizer.bpe_dropout else trained
        packed = load_or_pack(corpus.documents(), segmenter, corpus.fingerprint, tokenizer_fingerprint(segmenter),
                              objective_type.raw_block_size(cfg.objective, cfg.data.block_size),
                              cfg.data.eval_fraction, cache_dir, verify=cfg.data.verify_cache,
                              max_document_chars=cfg.tokenizer.max_document_chars, num_proc=cfg.data.num_proc,
                              total_documents=corpus.expected_documents)
    check_trainable(packed, cfg)
    # Tokens an objective adds (T5's sentinels) go after the trained vocabulary; text encodes as before.
    tokenizer = add_special_tokens(trained, objective_type.special_tokens(cfg.objective, cfg.data.block_size))
    tokenizer_hash = tokenizer_fingerprint(tokenizer)
    special = SpecialIds.of(tokenizer)
    model = _pretraining_model(cfg, special, tokenizer.get_vocab_size())
    if resume_point is not None:
        check_tokenizer(resume_point, tokenizer_hash)
        check_weights_fit(resume_point, model)
    if world.main:
        _record_start(cfg, run_dir, build_manifest(cfg, corpus.fingerprint, tokenizer_hash), tokenizer, resume_point)
    processes = f" x {world.size} processes ({cfg.trainer.parallel})" if world.distributed else ""
    info(f"{run_name}: device {device}{' (bf16)' if bf16 else ''}{processes}; tokenizer "
         f"{'cached' if tokenizer_cached else 'trained'} ({tokenizer.get_vocab_size()} tokens); "
         f"{packed.train.num_blocks} train / {packed.eval.num_blocks} eval blocks "
         f"({'cached' if packed.from_cache else 'packed'})"
         + (f"; resuming from {resume_point.path.name}" if resume_point else "") + f"; run dir {run_dir}")

    with RunLogger(run_dir, cfg.logger, run_name, asdict(cfg)) if world.main else NullLogger() as logger:
        model.to(device)
        extras = {"config": asdict(cfg), "tokenizer_fingerprint": tokenizer_hash,
                  "data_fingerprint": corpus.fingerprint, "execution": execution}
        runtime = Runtime(device, bf16, run_dir / "checkpoints", extras, stop,
                          resume_from=resume_point.payload if resume_point else None, halt_at_step=halt_at_step,
                          tokens_per_block=cfg.data.block_size, world=world,
                          probe=zero_shot_probe(cfg.zero_shot.every, pairs, tokenizer, device))
        # The planner's count of training FLOPs per token: a FLOPs budget becomes steps through it.
        flops_per_token = model_cost(cfg, tokenizer.get_vocab_size())[1]
        pretrain_clock = Stopwatch()
        try:
            state = pretrain(model, packed, cfg.trainer, runtime, logger, flops_per_token=flops_per_token)
        except DivergenceError as error:
            if world.main:
                write_summary(run_dir, _diverged_summary(cfg, run_name, run_dir, error, clock), logger)
            raise
        pretrain_seconds = pretrain_clock.elapsed()
        if state.step == runtime.halt_at_step:
            return {"halted_at_step": state.step}
        full_state = gathered_state(model)  # a collective under FSDP2: rank 0 gets the whole model
        if not world.main:  # zero-shot evaluation and fine-tuning run on rank 0 alone, with no collective
            return {"rank": world.rank}
        pretrained_weights = {key.removeprefix("body."): value.detach().cpu().clone()
                              for key, value in full_state.items() if key.startswith("body.")}
        if is_sharded(model):  # a whole copy to score with
            model = _pretraining_model(cfg, special, tokenizer.get_vocab_size())
            model.load_state_dict(full_state)
            model.to(device)
        zero_shot = zero_shot_results(pairs, model, tokenizer, device)
        representation = check_pretrained_body(model.body, lambda: build_body(cfg.arch, tokenizer.get_vocab_size()),
                                               packed.eval, special.pad, cfg.arch.max_len, device, cfg.trainer.seed)
        del model, full_state

        scratch = ScratchCache.for_finetuning(cache_dir, cfg.finetune, cfg.arch, tokenizer.get_vocab_size(),
                                              device.type, bf16)
        context = FinetuneContext(device, bf16, special.pad, logger, scratch_cache=scratch)
        inits = body_inits(cfg.arch, tokenizer.get_vocab_size(), pretrained_weights, cfg.finetune.scratch_baseline)
        results = finetune_all(cfg.finetune, tasks, tokenizer, inits, context, run_dir)
        summary = _summary(cfg, run_name, run_dir, tokenizer, tokenizer_hash, packed, state, pretrain_seconds, results)
        summary["pretrain"]["budget"] = budget_record(cfg, flops_per_token, state.tokens_seen)
        summary["pretrain"]["processes"] = world.size
        summary["pretrain"]["representation"] = representation
        if zero_shot is not None:
            if cfg.zero_shot.every:
                zero_shot["curve"] = zero_shot_curve(state.probes, zero_shot, state.step, state.tokens_seen)
            summary["zero_shot"] = zero_shot
        summary["wall_time_s"] = clock.elapsed()
        summary.update(finetune_extras(cfg.finetune, results))
        write_summary(run_dir, summary, logger)
    print_results_table(summary)
    return summary


def _pretraining_model(cfg: Config, special: SpecialIds, vocab_size: int) -> PretrainingModel:
    body = build_body(cfg.arch, vocab_size)
    return PretrainingModel(body, build_objective(cfg.objective, body, special, vocab_size))


def _process_device(device: torch.device, world: World) -> torch.device:
    """Each process of a multi-GPU run trains on the GPU of its local rank."""
    if world.distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", world.local_rank)
    return device


def _record_start(cfg: Config, run_dir: Path, manifest: dict[str, Any], tokenizer: Tokenizer,
                  resume_point: ResumePoint | None) -> None:
    """What the run dir says once every check passed: the manifest (or, on resume, an amendment
    to it), the tokenizer, and a metrics log cut back to where training continues. A resumed
    run's old summary goes: it described the run before this leg, and a sweep would take it as done."""
    if resume_point is None:
        write_manifest(run_dir, manifest)
    else:
        record_resume(run_dir, resume_point, manifest)
        (run_dir / "summary.json").unlink(missing_ok=True)
    write_text_atomic(run_dir / "tokenizer" / "tokenizer.json", tokenizer.to_str())
    truncate_metrics(run_dir / "metrics.jsonl", resume_point.step if resume_point else 0)


def check_trainable(packed: PackedCorpus, cfg: Config) -> None:
    """A corpus that packs into no training block is an error now, not an IndexError mid-training."""
    if packed.train.num_blocks == 0:
        raise ConfigError(f"the corpus packs into no training block of data.block_size={cfg.data.block_size} tokens "
                          f"({packed.train.stream.size} tokens in its training split); use more text or a smaller "
                          "data.block_size")
    if packed.eval.num_blocks == 0 and cfg.data.eval_fraction > 0:
        warn(f"the held-out split (data.eval_fraction={cfg.data.eval_fraction}) is shorter than one block: "
             "no eval loss will be measured")


def _diverged_summary(cfg: Config, run_name: str, run_dir: Path, error: DivergenceError,
                      clock: Stopwatch) -> dict[str, Any]:
    """What a diverged run reports: no results, and why (null values, never NaN)."""
    return {"run_name": run_name, "run_dir": str(run_dir), "status": "diverged", "error": str(error),
            "choices": _choices(cfg),
            "pretrain": {"final_eval_loss": None}, "finetune": {}, "wall_time_s": clock.elapsed()}


def budget_record(cfg: Config, flops_per_token: float, tokens: int) -> dict[str, Any]:
    """The budget kind that ruled the run, its value, and the compute actually spent."""
    trainer = cfg.trainer
    value = {"flops": trainer.max_flops, "tokens": trainer.max_tokens, "steps": trainer.max_steps}[trainer.budget_kind]
    return {"kind": trainer.budget_kind, "value": value, "flops_per_token": flops_per_token,
            "flops": flops_per_token * tokens}


def _choices(cfg: Config) -> dict[str, str]:
    """The run's choice per config group, as its summary states them."""
    return {"tokenizer": cfg.tokenizer.name, "arch": cfg.arch.name, "objective": cfg.objective.name,
            "data": cfg.data.source}


def _summary(cfg: Config, run_name: str, run_dir: Path, tokenizer: Tokenizer, tokenizer_hash: str,
             packed: PackedCorpus, state: TrainState, pretrain_seconds: float,
             results: dict[str, Any]) -> dict[str, Any]:
    final_eval = state.eval_losses[-1][1] if state.eval_losses else None
    return {
        "run_name": run_name,
        "run_dir": str(run_dir),
        "choices": _choices(cfg),
        "tokenizer": {"vocab_size": tokenizer.get_vocab_size(), "fingerprint": tokenizer_hash},
        "data": {"train_blocks": packed.train.num_blocks, "eval_blocks": packed.eval.num_blocks,
                 "block_size": packed.train.block_size},
        "pretrain": {"steps": state.step, "tokens": state.tokens_seen, "wall_time_s": pretrain_seconds,
                     "train_time_s": state.train_time_s,
                     "compile_s": state.compile_s if cfg.trainer.compile else None,
                     "tokens_per_s": state.tokens_seen / max(state.train_time_s, 1e-9),
                     "final_eval_loss": final_eval, "eval_losses": state.eval_losses,
                     "skipped_steps": state.skipped_steps},
        "finetune": results,
    }
