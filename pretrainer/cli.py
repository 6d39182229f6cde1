"""`pretrainer <command> [hydra overrides]`: compose the config with Hydra, then call the
library. The only module that imports Hydra."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# OpenMP threads that spin while waiting take the CPU from anything else running: on a 2-core
# machine beside one busy process, 2 threads trained at 14.6k tok/s with libgomp's default
# spinning against 19.7k when they spin 1,000 iterations before sleeping, which costs nothing
# idle (39.9k vs 39.0k; sleeping at once, OMP_WAIT_POLICY=PASSIVE: 21.9k, but 34.7k idle).
# Measured with scripts/bench_cpu_threads.py. Only when the user set neither; before torch
# loads OpenMP (libgomp, as in PyTorch's Linux wheels; other runtimes ignore it).
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

import hydra  # noqa: E402
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pretrainer.cli_common import check_optimizer_group, fail, run_dir_parser
from pretrainer.cli_models import export_command, fill_mask_command, generate_command
from pretrainer.cli_sweeps import (
    as_sweep_job,
    check_override_keys,
    clear_outcomes,
    config_groups,
    expanded_jobs,
    invalid_jobs,
    job_label,
    options_first,
    read_outcomes,
    split_args,
    stable_sweep_dir,
    sweep_dir_of,
    sweep_env_override,
    write_outcome,
)
from pretrainer.config import Config, ConfigError
from pretrainer.config_tree import reject_unknown_fields
from pretrainer.errors import Interrupted, RunDirError, UserError
from pretrainer.launch import launch_rank, launched_distributed
from pretrainer.provenance import completed_with
from pretrainer.run_dir import remove_if_nothing_ran
from pretrainer.sweep_summary import plan_table, sweep_table, tokenizer_table, write_sweep_summary, zero_shot_table

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
ConfigStore.instance().store(name="schema", node=Config)

USAGE = """usage: pretrainer <command> [overrides] [-m]

commands:
  train      train a tokenizer, pretrain, fine-tune, report (pretrainer train --help lists config groups)
  tokenizer  train (or load) the configured tokenizer and print diagnostics on held-out text
  plan       parameters, FLOPs, tokens, activation memory and expected wall time, without training
  finetune   fine-tune an existing checkpoint: pretrainer finetune init=<run dir, checkpoint or HF dir> [finetune=...]
  evaluate   zero-shot minimal pairs on any model: pretrainer evaluate init=<run dir, checkpoint or HF dir>
             [zero_shot.blimp_files=[blimp/]] [zero_shot.suite=synthetic]
  generate   continue a prompt (decoder) or fill its gaps (T5, BART): pretrainer generate RUN_DIR "The cat"
             [--greedy | --temperature 0.8 --top-k 20 --seed 0] [--max-new-tokens 40]
  fill-mask  the top tokens for each [MASK] (masked-LM runs): pretrainer fill-mask RUN_DIR "the [MASK] sat ."
  export     write a run as a Hugging Face transformers model: pretrainer export RUN_DIR [--out DIR]
  reproduce  re-run a run from its manifest into a new dir and compare: pretrainer reproduce RUN_DIR
  report     tables (Markdown, CSV), confidence intervals and plots over runs: pretrainer report DIR... [--baseline ROW]

examples:
  pretrainer train                                  # the embedded demo: MLM encoder, 5 tasks
  pretrainer train debug=fast objective=bart        # a smoke run: every stage once, in seconds
  pretrainer train objective=clm arch=decoder       # the GPT-style counterpart
  pretrainer train -m objective=mlm,clm,t5_span     # sweep; each objective picks its architecture
  pretrainer train objective=t5_span arch=encoder   # fails fast: names the compatible architectures
  pretrainer train --cfg job                        # print the composed config
  pretrainer tokenizer tokenizer=unigram tokenizer.show="Some sentence."
  pretrainer tokenizer -m tokenizer=bpe,wordpiece,unigram,char,word   # one comparison table
  pretrainer plan -m arch/size=base objective=mlm,clm,t5_span plan.flops_per_s=1e14
  pretrainer train -m experiment=layernorm && pretrainer report multirun/train-<hash>
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
    resumable_sweeps: bool = False  # its run dirs carry a manifest: a re-run sweep skips finished jobs


def _train(cfg: Config, run_dir: Path) -> dict:
    from pretrainer.pipeline import train  # heavy imports only once the config is valid

    return train(cfg, run_dir)


def _inspect_tokenizer(cfg: Config, run_dir: Path) -> dict:
    from pretrainer.inspect_tokenizer import inspect_tokenizer

    return inspect_tokenizer(cfg, run_dir)


def _finetune(cfg: Config, run_dir: Path) -> dict:
    from pretrainer.finetune.from_checkpoint import finetune_checkpoint

    return finetune_checkpoint(cfg, run_dir)


def _evaluate(cfg: Config, run_dir: Path) -> dict:
    from pretrainer.evaluation.run import evaluate_init

    return evaluate_init(cfg, run_dir)


def _plan(cfg: Config, run_dir: Path) -> dict:
    from pretrainer.plan import plan_experiment

    return plan_experiment(cfg, run_dir)


COMMANDS: dict[str, Command] = {
    "train": Command(_train, sweep_table, resumable_sweeps=True),
    "tokenizer": Command(_inspect_tokenizer, tokenizer_table),
    "plan": Command(_plan, plan_table),
    "finetune": Command(_finetune, sweep_table),
    "evaluate": Command(_evaluate, zero_shot_table),
}




def _validate_job(cfg: DictConfig, choices: dict) -> Config:
    """What `run_job` checks before a job's work: a sweep runs it on every job before the first."""
    check_optimizer_group(cfg.trainer.optimizer, choices)
    return to_config(cfg)


def run_job(command: Command, cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN and launch_rank() == 0:
        print(f"pretrainer: {job_label(hydra_cfg)}", flush=True)
    elif hydra_cfg.mode == RunMode.RUN and hydra_cfg.sweeper.params:
        from pretrainer.loggers import warn  # rich: not at start-up

        swept = " ".join(f"{key}={value}" for key, value in hydra_cfg.sweeper.params.items())
        warn(f"this config defines a sweep ({swept}); without -m one run with the config's own values runs: "
             "add -m to run every job of it")
    run_dir = Path(hydra_cfg.runtime.output_dir)
    fresh = False  # whether this command started the run dir (and so may remove it if refused)
    failures, finished = len(FAILED_JOBS), len(SWEEP_JOBS)  # what this job adds to them is its outcome
    try:
        record = hydra_record(run_dir, hydra_cfg.output_subdir) if _record_keeper() else contextlib.nullcontext(False)
        with record as fresh:
            typed = _validate_job(cfg, hydra_cfg.runtime.choices)  # this job's own choices
            if hydra_cfg.mode == RunMode.MULTIRUN:
                summary = _run_sweep_job(command, as_sweep_job(typed, hydra_cfg), run_dir)
                SWEEP_JOBS.append({"job": hydra_cfg.job.num, "overrides": hydra_cfg.job.override_dirname,
                                   "summary": summary})
                SWEEP_DIR[:] = [Path(hydra_cfg.sweep.dir)]
            else:
                command.run(typed, run_dir)
    except Exception as error:
        error = disk_full_as_user_error(error)
        if hydra_cfg.mode != RunMode.MULTIRUN:
            if isinstance(error, UserError):
                if fresh and not isinstance(error, RunDirError):  # never another's dir
                    remove_if_nothing_ran(run_dir)
                fail(error)
            raise
        # In a sweep one bad job must not stop the others: report it and go on.
        job = f"job {hydra_cfg.job.num} ({hydra_cfg.job.override_dirname}): {type(error).__name__}: {error}"
        if not isinstance(error, UserError):
            traceback.print_exc()
        print(f"pretrainer: failed {job}", file=sys.stderr)
        FAILED_JOBS.append(job)
    if hydra_cfg.mode == RunMode.MULTIRUN and launch_rank() == 0:  # for a launcher that ran it elsewhere
        # A summary, an error, or both (a job skipped as diverged earlier).
        write_outcome(run_dir, {"job": hydra_cfg.job.num, **(SWEEP_JOBS[-1] if len(SWEEP_JOBS) > finished else {}),
                                **({"error": FAILED_JOBS[-1]} if len(FAILED_JOBS) > failures else {})})


def _record_keeper() -> bool:
    """Whether this process files Hydra's record of the job: always alone; in a distributed run
    rank 0, once every rank's Hydra wrote its (identical) copy, so none lands after the move."""
    if not launched_distributed():
        return True
    from pretrainer.training.distributed import barrier, init_from_environment

    world = init_from_environment()
    barrier()
    return world.main


def leave_process_group() -> None:
    """A distributed run's processes leave their group once the command is done (each job of a
    sweep reuses it)."""
    if launched_distributed():
        from pretrainer.training.distributed import shutdown

        shutdown()


def agreed_run_dir(args: list[str]) -> list[str]:
    """Under torchrun every process composes the config: the run dir Hydra names from the clock
    must be one for all, so rank 0's time is used (unless hydra.run.dir is given)."""
    if not launched_distributed() or any(a.startswith("hydra.run.dir=") for a in args):
        return args
    from pretrainer.training.distributed import broadcast_text, init_from_environment

    init_from_environment()
    return [*args, f"hydra.run.dir=runs/{broadcast_text(time.strftime('%Y-%m-%d/%H-%M-%S'))}"]


@contextmanager
def hydra_record(run_dir: Path, output_subdir: str | None) -> Iterator[bool]:
    """Hydra writes the composed config, the overrides and its own settings into
    `<run dir>/.hydra/incoming/` (conf/config.yaml) before a job starts. A fresh run dir takes
    them as its `.hydra/`; a run dir that already has one keeps it, so a later command on it
    (a resume) never rewrites what the run was started with: that command is recorded in
    `.hydra/later/<time>/` when it succeeds, and leaves no trace when it is refused. Yields
    whether this command started the run dir (a fresh one: it may be removed if refused)."""
    incoming = run_dir / output_subdir if output_subdir else None
    if incoming is None or not incoming.is_dir() or incoming == run_dir / ".hydra":
        yield False
        return
    record = incoming.parent
    if not (record / "config.yaml").is_file():
        for file in incoming.iterdir():
            os.replace(file, record / file.name)
        incoming.rmdir()
        yield True
        return
    try:
        yield False
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    later = record / "later" / time.strftime("%Y%m%d-%H%M%S")
    later.parent.mkdir(exist_ok=True)
    os.replace(incoming, later if not later.exists() else later.with_name(f"{later.name}-{os.getpid()}"))


def disk_full_as_user_error(error: Exception) -> Exception:
    """A full disk (or quota) anywhere in a run, as one line: free space, then resume=true."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {error.filename}" if error.filename else ""
        return UserError(f"no space left on the device{where}; free some space and rerun "
                         "(resume=true continues from the last checkpoint)")
    return error


def _run_sweep_job(command: Command, cfg: Config, run_dir: Path) -> dict:
    """A re-run sweep skips a job that finished with the same config and resumes one that was
    interrupted (its run dir holds checkpoints but no summary) from its newest checkpoint."""
    if command.resumable_sweeps and completed_with(run_dir, cfg):
        summary = json.loads((run_dir / "summary.json").read_text())
        if summary.get("status") == "diverged":
            print(f"pretrainer: already diverged in {run_dir} (same config): skipped", file=sys.stderr)
            FAILED_JOBS.append(f"{run_dir}: diverged earlier: {summary.get('error')}")
        else:
            print(f"pretrainer: already completed in {run_dir} (same config): skipped")
        return summary
    if command.resumable_sweeps and not cfg.resume and has_checkpoints(run_dir):
        print(f"pretrainer: resuming the unfinished job in {run_dir} from its newest checkpoint")
        cfg.resume = True
    return command.run(cfg, run_dir)


def has_checkpoints(run_dir: Path) -> bool:
    from pretrainer.training.checkpoint import list_checkpoints  # torch: only once a job runs

    return bool(list_checkpoints(run_dir / "checkpoints"))


def print_sweep_configs(name: str, args: list[str]) -> None:
    """`-m ... --cfg job`: Hydra prints one config and refuses a sweep; print every job's instead."""
    options = [a for a in split_args(args)[0] if a not in ("-m", "--multirun")]
    for number, job in enumerate(expanded_jobs(CONF_DIR, args), start=1):
        print(f"# job {number}: {' '.join(job)}", flush=True)
        run_hydra(name, [*job, *options])


def checked_sweep(args: list[str]) -> list[list[str]]:
    """The jobs of a `-m` command line (a preset's sweep included), every one composed and
    validated first: an invalid combination stops the sweep before any job runs."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        jobs = expanded_jobs(CONF_DIR, args)
    except (HydraException, OmegaConfBaseException) as error:
        lines = [line.strip() for line in str(error).split("Config search path")[0].splitlines() if line.strip()]
        fail(ConfigError(f"the sweep's config does not compose: {'; '.join(lines)}"))
    problems = invalid_jobs(CONF_DIR, jobs, _validate_job)
    if problems:
        print(f"pretrainer: {len(problems)} of the sweep's {len(jobs)} jobs have an invalid config; no job was run:",
              file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(2)
    return jobs


def print_help(name: str, args: list[str]) -> None:
    """`pretrainer <command> --help`: the config groups as the command line spells them
    (`finetune=glue/sst2`, not a group `finetune/glue`), then the composed config."""
    print(f"pretrainer {name}: choose options of the config groups (group=option), override any key "
          "(section.key=value); -m sweeps comma-separated values (pretrainer --help lists the commands)\n\n"
          "== Configuration groups ==")
    for group, options in config_groups(CONF_DIR).items():
        print(f"{group}: {', '.join(options)}")
    launchers = sorted(p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml"))
    print(f"hydra/launcher: basic (default), {', '.join(launchers)}\n\n== Config (with the overrides given) ==",
          flush=True)
    run_hydra(name, [*(a for a in args if a not in ("--help", "-h")), "--cfg", "job"])


def run_hydra(name: str, args: list[str]) -> None:
    if "--help" in args or "-h" in args:
        print_help(name, args)
        return
    try:
        check_override_keys(CONF_DIR, args)
    except ConfigError as error:
        fail(error, name)
    multirun = any(a in ("-m", "--multirun") for a in args)
    if multirun and any(a in ("--cfg", "-c") for a in args):
        print_sweep_configs(name, args)
        return
    args = options_first(args)
    if multirun:
        jobs = checked_sweep(args)
        if not any(a.startswith("hydra.sweep.dir=") for a in args):
            args = [*args, stable_sweep_dir(name, args)]
        args = [*args, sweep_env_override(jobs)]
    elif name == "train":
        args = agreed_run_dir(args)
    sys.argv = [f"pretrainer {name}", *args]
    command = COMMANDS[name]
    job = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(
        lambda cfg: run_job(command, cfg))
    outcomes = sweep_dir_of(args) if multirun and launch_rank() == 0 else None  # None: an interpolated dir
    if outcomes is not None:
        clear_outcomes(outcomes)
    stopped = []
    try:
        job()
    except SystemExit as launcher_exit:  # submitit's launcher exits when a job was killed (a timeout, OOM)
        if outcomes is None or SWEEP_JOBS or FAILED_JOBS or launcher_exit.code in (0, None):
            raise
        stopped = [f"the launcher stopped (exit code {launcher_exit.code}): a job was killed or lost"]
    if outcomes is not None and not SWEEP_JOBS and not FAILED_JOBS:  # the jobs ran in other processes
        finished, failed = read_outcomes(outcomes, len(jobs))
        SWEEP_DIR[:], SWEEP_JOBS[:], FAILED_JOBS[:] = [outcomes], finished, [*failed, *stopped]
    if SWEEP_JOBS and launch_rank() == 0:  # a distributed sweep: rank 0 reports it
        table = write_sweep_summary(SWEEP_DIR[0], SWEEP_JOBS, command.sweep_table)
        print(f"\nsweep summary (also in {SWEEP_DIR[0] / 'sweep_summary.md'}):\n{table}")
    if FAILED_JOBS:
        print(f"pretrainer: {len(FAILED_JOBS)} job(s) of the sweep failed:", file=sys.stderr)
        for failed in FAILED_JOBS:
            print(f"  {failed}", file=sys.stderr)
        raise SystemExit(1)


# Commands that take paths rather than config overrides: plain argparse, no Hydra.


def report_command(args: list[str]) -> None:
    """`pretrainer report DIR... [--baseline ROW]`."""
    parser = argparse.ArgumentParser(prog="pretrainer report", description="Compare the runs under DIRs (mean ± std"
                                     " over seeds, t / BCa intervals, plots); writes report.md/.csv/PNGs into DIRS[0].")
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--baseline", default=None, help="row number or part of a row label (default: first row)")
    parsed = parser.parse_args(args)
    from pretrainer.report import ReportError, write_report

    try:
        write_report(parsed.dirs, parsed.baseline)
    except ReportError as error:
        fail(error, "report")


def config_from_dict(values: dict) -> Config:
    """A typed config from a resolved one (a manifest's), validated like a composed one."""
    typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), values))
    reject_unknown_fields(typed)
    return typed


def reproduce_command(args: list[str]) -> None:
    """`pretrainer reproduce RUN_DIR [--out DIR]`: re-run a run from its manifest and compare."""
    parsed = run_dir_parser("reproduce", "Re-run a run from its manifest into a fresh dir and compare the results.",
                            "where to re-run: a new or empty dir (default: RUN_DIR-reproduced, "
                            "-reproduced-2, ... whichever is free)").parse_args(args)
    from pretrainer.provenance import read_manifest, reproduce_run, reproduction_stages

    try:
        stages = [(config_from_dict(stage.config), stage.halt_at_step)
                  for stage in reproduction_stages(read_manifest(parsed.run_dir))]
        out = fresh_dir(parsed.out, parsed.run_dir)
    except UserError as error:
        fail(error, "reproduce")
    if len(stages) > 1:
        print(f"pretrainer reproduce: the run was resumed with config changes; replaying it in {len(stages)} legs")
    try:
        problems, exact = reproduce_run(stages, parsed.run_dir, out)
    except UserError as error:
        fail(error, "reproduce")
    rule = "identical (same hardware and package versions)" if exact else "within tolerance (different machine)"
    if problems:
        print(f"pretrainer reproduce: {len(problems)} result(s) differ; required: {rule}", file=sys.stderr)
        for problem in problems[:50]:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(1)
    print(f"reproduced {parsed.run_dir} in {out}: results {rule}")


def fresh_dir(requested: Path | None, run_dir: Path) -> Path:
    """A reproduction never resumes from or mixes with an earlier one: a new or empty dir."""
    if requested is not None:
        if requested.exists() and (not requested.is_dir() or any(requested.iterdir())):
            raise RunDirError(f"--out {requested} is not an empty dir; a reproduction needs a fresh dir")
        return requested
    for attempt in range(1, 1000):
        candidate = run_dir.with_name(f"{run_dir.name}-reproduced" + (f"-{attempt}" if attempt > 1 else ""))
        if not candidate.exists():
            return candidate
    raise RunDirError(f"no free name for a reproduction next to {run_dir}; pass --out DIR")


PATH_COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "export": export_command, "reproduce": reproduce_command, "report": report_command,
    "generate": generate_command, "fill-mask": fill_mask_command,
}


def main() -> None:
    try:
        dispatch(sys.argv[1:])
        leave_process_group()
    except Interrupted as stop:
        print(f"pretrainer: {stop}", file=sys.stderr)
        raise SystemExit(stop.exit_code) from None
    except KeyboardInterrupt:  # Ctrl-C outside a run's handlers (composing a config, between sweep jobs)
        print("pretrainer: interrupted by SIGINT", file=sys.stderr)
        raise SystemExit(130) from None


def dispatch(args: list[str]) -> None:
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    if args[0] in ("--version", "-V"):
        from pretrainer import __version__

        print(f"pretrainer {__version__}")
        return
    command, rest = args[0], args[1:]
    if command in PATH_COMMANDS:
        PATH_COMMANDS[command](rest)
        return
    if command not in COMMANDS:
        names = ", ".join([*COMMANDS, *PATH_COMMANDS])
        print(f"pretrainer: unknown command {command!r}; commands: {names}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    run_hydra(command, rest)


if __name__ == "__main__":
    main()
