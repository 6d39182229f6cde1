"""`finetune_checkpoint(cfg, run_dir)`: fine-tune an existing pretrained body without
pretraining again (`pretrainer finetune init=RUN_DIR_OR_CHECKPOINT finetune=...`).

The architecture and tokenizer come from the checkpoint's run (its resolved config and
`tokenizer/tokenizer.json`, checked against the fingerprint the checkpoint recorded), so
the command line chooses only the tasks and the recipe. `init` may also be a local
Hugging Face directory (BERT, GPT-2, T5 with a `tokenizer.json`): its weights are
imported into our body (`pretrainer.interop`), so published checkpoints are fine-tuned
by the same recipe and land in the same kind of summary as our own runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from pretrainer.config import ArchConfig, Config, ConfigError
from pretrainer.config_checks import check_finetune_body
from pretrainer.finetune.recipe import FinetuneContext
from pretrainer.finetune.run import body_inits, finetune_all, finetune_extras
from pretrainer.finetune.scratch_cache import ScratchCache
from pretrainer.finetune.tasks import load_tasks
from pretrainer.hashing import write_text_atomic
from pretrainer.loggers import RunLogger, Stopwatch, info, print_results_table, write_summary
from pretrainer.run_dir import hold_run_dir
from pretrainer.tokenization import read_tokenizer, tokenizer_fingerprint
from pretrainer.training.checkpoint import body_state_dict, resolve_checkpoint
from pretrainer.training.device import resolve_device, use_bf16
from pretrainer.training.signals import catch_stop_signals


def finetune_checkpoint(cfg: Config, run_dir: Path) -> dict[str, Any]:
    if not cfg.init:
        raise ConfigError("pretrainer finetune needs init=<run dir or checkpoint>")
    with hold_run_dir(run_dir), catch_stop_signals(after_interrupt="fine-tuning results are written at the end"):
        return _finetune_checkpoint(cfg, run_dir)


def _finetune_checkpoint(cfg: Config, run_dir: Path) -> dict[str, Any]:
    clock = Stopwatch()
    if cfg.trainer.num_threads:  # as `pretrainer train` does: a shared machine can cap the threads
        torch.set_num_threads(cfg.trainer.num_threads)
    tasks = load_tasks(cfg.finetune)  # checked before the checkpoint is read
    source = _load_init(cfg.init)
    tokenizer, arch = source.tokenizer, source.arch
    check_finetune_body(cfg.finetune, arch, f"init={cfg.init}")  # the recipe against the body it starts from
    device = resolve_device(cfg.trainer.device)
    write_text_atomic(run_dir / "tokenizer" / "tokenizer.json", tokenizer.to_str())
    with RunLogger(run_dir, cfg.logger, cfg.run_name or run_dir.name, asdict(cfg), job_type="finetune") as logger:
        bf16 = use_bf16(cfg.trainer.precision, device)
        scratch = ScratchCache.for_finetuning(Path(cfg.cache_dir), cfg.finetune, arch, source.vocab_size,
                                              device.type, bf16)
        context = FinetuneContext(device, bf16, _pad_id(tokenizer), logger, scratch_cache=scratch)
        inits = body_inits(arch, source.vocab_size, source.body_state, cfg.finetune.scratch_baseline)
        info(f"fine-tuning {source.path} ({arch.name})")
        results = finetune_all(cfg.finetune, tasks, tokenizer, inits, context, run_dir)
        summary = {"run_name": cfg.run_name or run_dir.name, "run_dir": str(run_dir), "init": str(source.path),
                   "choices": {"arch": arch.name, **source.choices}, "pretrain": {}, "finetune": results,
                   "wall_time_s": clock.elapsed()}
        summary.update(finetune_extras(cfg.finetune, results))
        write_summary(run_dir, summary, logger)
    print_results_table(summary)
    return summary


@dataclass
class InitSource:
    path: Path
    arch: ArchConfig
    tokenizer: Tokenizer
    body_state: dict[str, torch.Tensor]
    vocab_size: int
    choices: dict[str, str]  # objective / tokenizer the body was pretrained with, when known


def _load_init(init: str) -> InitSource:
    path = Path(init).expanduser()
    if (path / "config.json").is_file():  # a Hugging Face model directory
        from pretrainer.interop import load_hf_model

        try:
            imported = load_hf_model(path)
        except (ValueError, ImportError) as error:
            raise ConfigError(f"init={init}: {error}") from error
        if not (path / "tokenizer.json").is_file():
            raise ConfigError(f"init={init}: the Hugging Face directory has no tokenizer.json")
        state = imported.body.state_dict()
        return InitSource(path, imported.arch, read_tokenizer(path / "tokenizer.json"), state,
                          state["tok_emb.weight"].shape[0], {"objective": "imported", "tokenizer": "imported"})
    checkpoint_path, payload, source_run = resolve_checkpoint(init)
    tokenizer = checked_tokenizer(source_run, payload)
    state = body_state_dict(payload)
    return InitSource(checkpoint_path, ArchConfig(**payload["config"]["arch"]), tokenizer, state,
                      state["tok_emb.weight"].shape[0], {"objective": payload["config"]["objective"]["name"],
                                                         "tokenizer": payload["config"]["tokenizer"]["name"]})


def _pad_id(tokenizer: Tokenizer) -> int:
    """Our tokenizers put [PAD] at 0; an imported one may call it <pad>."""
    for token in ("[PAD]", "<pad>"):
        if (found := tokenizer.token_to_id(token)) is not None:
            return found
    return 0


def checked_tokenizer(source_run: Path, payload: dict[str, Any]) -> Tokenizer:
    path = source_run / "tokenizer" / "tokenizer.json"
    tokenizer = read_tokenizer(path)  # missing or unreadable: an error naming it
    if tokenizer_fingerprint(tokenizer) != payload.get("tokenizer_fingerprint"):
        raise ConfigError(f"{path} is not the tokenizer the checkpoint was trained with (fingerprint mismatch)")
    return tokenizer
