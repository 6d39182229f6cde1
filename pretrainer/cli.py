"""`pretrainer <command> [hydra overrides]`: compose the config with Hydra, then call the
library. The only module that imports Hydra."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pretrainer.config import Config, ConfigError, reject_unknown_fields
from pretrainer.sweep_summary import plan_table, sweep_table, tokenizer_table, write_sweep_summary

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
ConfigStore.instance().store(name="schema", node=Config)

USAGE = """usage: pretrainer <command> [overrides] [-m]

commands:
  train      train a tokenizer, pretrain, fine-tune, report (pretrainer train --help lists config groups)
  tokenizer  train (or load) the configured tokenizer and print diagnostics on held-out text
  plan       parameters, FLOPs, tokens, activation memory and expected wall time, without training
  finetune   fine-tune an existing checkpoint: pretrainer finetune init=<run dir, checkpoint or HF dir> [finetune=...]
  export     write a run as a Hugging Face transformers model: pretrainer export RUN_DIR [--out DIR]

examples:
  pretrainer train                                  # the embedded demo: MLM encoder, 5 tasks
  pretrainer train objective=clm arch=decoder       # the GPT-style counterpart
  pretrainer train -m objective=mlm,clm,t5_span     # sweep; each objective picks its architecture
  pretrainer train objective=t5_span arch=encoder   # fails fast: names the compatible architectures
  pretrainer train --cfg job                        # print the composed config
  pretrainer tokenizer tokenizer=unigram tokenizer.show="Some sentence."
  pretrainer tokenizer -m tokenizer=bpe,wordpiece,unigram,char,word   # one comparison table
  pretrainer plan -m arch/size=base objective=mlm,clm,t5_span plan.flops_per_s=1e14
"""


def to_config(cfg: DictConfig) -> Config:
    """Typed config from Hydra's; invalid choices and incompatible groups raise ConfigError here."""
    if cfg.get("run_name") is None and HydraConfig.initialized():
        overrides = HydraConfig.get().job.override_dirname
        OmegaConf.update(cfg, "run_name", overrides or "default", force_add=True)
    typed = OmegaConf.to_object(cfg)
    reject_unknown_fields(typed)
    return typed


FAILED_JOBS: list[str] = []  # "job number: overrides: error" for each failed job of a sweep
SWEEP_JOBS: list[dict] = []  # {"job", "overrides", "summary"} of each finished job of a sweep
SWEEP_DIR: list[Path] = []  # the sweep directory, once a sweep job has run


@dataclass
class Command:
    run: Callable[[Config, Path], dict]  # (typed config, run dir) -> the job's summary
    sweep_table: Callable[[list[dict]], str]  # the summaries of a sweep's jobs -> one Markdown table


def _train(cfg: Config, run_dir: Path) -> dict:
    from pretrainer.pipeline import train  # heavy imports only once the config is valid

    return train(cfg, run_dir)


def _inspect_tokenizer(cfg: Config, run_dir: Path) -> dict:
    from pretrainer.inspect_tokenizer import inspect_tokenizer

    return inspect_tokenizer(cfg, run_dir)


def _finetune(cfg: Config, run_dir: Path) -> dict:
    from pretrainer.finetune.from_checkpoint import finetune_checkpoint

    return finetune_checkpoint(cfg, run_dir)


def _plan(cfg: Config, run_dir: Path) -> dict:
    from pretrainer.plan import plan_experiment

    return plan_experiment(cfg, run_dir)


COMMANDS: dict[str, Command] = {
    "train": Command(_train, sweep_table),
    "tokenizer": Command(_inspect_tokenizer, tokenizer_table),
    "plan": Command(_plan, plan_table),
    "finetune": Command(_finetune, sweep_table),
}


def run_job(command: Command, cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    try:
        typed = to_config(cfg)
        summary = command.run(typed, Path(hydra_cfg.runtime.output_dir))
        if hydra_cfg.mode == RunMode.MULTIRUN:
            SWEEP_JOBS.append({"job": hydra_cfg.job.num, "overrides": hydra_cfg.job.override_dirname,
                               "summary": summary})
            SWEEP_DIR[:] = [Path(hydra_cfg.sweep.dir)]
    except Exception as error:
        if hydra_cfg.mode != RunMode.MULTIRUN:
            if isinstance(error, ConfigError):
                print(f"pretrainer: config error: {error}", file=sys.stderr)
                raise SystemExit(2) from None
            raise
        # In a sweep one bad job must not stop the others: report it and go on.
        job = f"job {hydra_cfg.job.num} ({hydra_cfg.job.override_dirname}): {type(error).__name__}: {error}"
        if not isinstance(error, ConfigError):
            traceback.print_exc()
        print(f"pretrainer: failed {job}", file=sys.stderr)
        FAILED_JOBS.append(job)


def run_hydra(name: str, args: list[str]) -> None:
    sys.argv = [f"pretrainer {name}", *args]
    command = COMMANDS[name]
    job = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(
        lambda cfg: run_job(command, cfg))
    job()
    if SWEEP_JOBS:
        table = write_sweep_summary(SWEEP_DIR[0], SWEEP_JOBS, command.sweep_table)
        print(f"\nsweep summary (also in {SWEEP_DIR[0] / 'sweep_summary.md'}):\n{table}")
    if FAILED_JOBS:
        print(f"pretrainer: {len(FAILED_JOBS)} job(s) of the sweep failed:", file=sys.stderr)
        for failed in FAILED_JOBS:
            print(f"  {failed}", file=sys.stderr)
        raise SystemExit(1)


def export_command(args: list[str]) -> None:
    """`pretrainer export RUN_DIR [--out DIR]`: not a Hydra command, it takes a path."""
    import argparse

    parser = argparse.ArgumentParser(prog="pretrainer export", description="Write a run as a transformers model "
                                     "(BERT masked LM, GPT-2 LM or T5) with its tokenizer.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: RUN_DIR/hf)")
    parsed = parser.parse_args(args)
    from pretrainer.interop import export_hf

    try:
        out = export_hf(parsed.run_dir, parsed.out or parsed.run_dir / "hf")
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"pretrainer export: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {out}")


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = args[0], args[1:]
    if command == "export":
        export_command(rest)
        return
    if command not in COMMANDS:
        print(f"pretrainer: unknown command {command!r}; commands: {', '.join([*COMMANDS, 'export'])}\n\n{USAGE}",
              file=sys.stderr)
        raise SystemExit(2)
    run_hydra(command, rest)


if __name__ == "__main__":
    main()
