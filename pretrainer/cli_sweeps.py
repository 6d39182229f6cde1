"""Command lines of the Hydra commands, read before Hydra: options against overrides, and the
jobs a `-m` sweep expands to — including a preset's own `hydra.sweeper.params` — each
composed and validated before the first job starts, so an invalid combination fails at once,
not hours into the sweep."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path

# Hydra's command-line options that take a value (`--cfg job`): the value is not an override.
HYDRA_VALUE_OPTIONS = frozenset({"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-path", "-cp",
                                 "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"})


INFO_CHOICES = frozenset({"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"})


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's options with the values they take, the overrides) of a command line."""
    options, overrides, takes_value = [], [], False
    for position, arg in enumerate(args):
        if takes_value or arg.startswith("-"):
            options.append(arg)
            following = args[position + 1] if position + 1 < len(args) else None
            takes_value = not takes_value and arg in HYDRA_VALUE_OPTIONS and (
                arg not in ("--info", "-i") or following in INFO_CHOICES)  # --info's value is optional
        else:
            overrides.append(arg)
    return options, overrides


def override_args(args: list[str]) -> list[str]:
    """The overrides of a command line: neither Hydra's options nor the values they take."""
    return split_args(args)[1]


def options_first(args: list[str]) -> list[str]:
    """Hydra's options (with their values) before every override: argparse takes the overrides as
    one run of positionals, so an override after an option (`-m a=1 b=2`, `--cfg job a=1`) would be
    refused as unrecognized, and added overrides can then simply go last. A bare `--info` (its
    value is optional) goes after them instead, where it cannot take an override as its value."""
    options, overrides = split_args(args)
    bare_info = [o for i, o in enumerate(options) if o in ("--info", "-i")
                 and not (i + 1 < len(options) and options[i + 1] in INFO_CHOICES)]
    return [*(o for o in options if o not in bare_info), *overrides, *bare_info]


# Overrides that do not change what a sweep computes: adding them on a re-run keeps its directory.
SWEEP_NEUTRAL_KEYS = ("resume", "resume_allow_changes")


def stable_sweep_dir(name: str, args: list[str]) -> str:
    """`multirun/<command>-<hash of the overrides>`: the same sweep command lands in the same
    directory, so a re-run finds (and skips) the jobs that already completed, and resumes
    the one that was interrupted."""
    key = " ".join(sorted(a for a in override_args(args) if a.split("=")[0] not in SWEEP_NEUTRAL_KEYS))
    return f"hydra.sweep.dir=multirun/{name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def sweep_jobs(args: list[str]) -> list[list[str]]:
    """The override lists of the jobs a `-m` command line expands to, in Hydra's order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices = []
    for override in OverridesParser.create().parse_overrides(override_args(args)):
        if override.is_sweep_override():
            choices.append([f"{override.get_key_element()}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(job) for job in itertools.product(*choices)]


def preset_sweep_params(config_dir: Path, overrides: list[str]) -> list[str]:
    """`hydra.sweeper.params` of the config the overrides compose (a preset's sweep, e.g.
    `experiment=mlm_vs_scratch`: `seed=0,1,2`), as override strings. Sweep overrides are left
    out of the composition, as Hydra's sweeper does."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    plain = [o.input_line for o in OverridesParser.create().parse_overrides(overrides) if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose("config", overrides=plain, return_hydra_config=True)
    return [f"{key}={value}" for key, value in (cfg.hydra.sweeper.params or {}).items()]


def expanded_jobs(config_dir: Path, args: list[str]) -> list[list[str]]:
    """Every job of a `-m` command line: a preset's sweeper params, then the command line's
    overrides (which win over a param of the same key), in Hydra's order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = override_args(args)
    by_key: dict[str, str] = {}  # as Hydra's BasicSweeper: a key keeps its first position, its last value wins
    for override in OverridesParser.create().parse_overrides([*preset_sweep_params(config_dir, overrides),
                                                              *overrides]):
        by_key[override.get_key_element()] = override.input_line
    return sweep_jobs(list(by_key.values()))


def _varying_positions(jobs: list[list[str]]) -> list[int]:
    """Positions in the jobs' override lists whose values differ across the jobs."""
    return [position for position in range(len(jobs[0]) if jobs else 0) if len({job[position] for job in jobs}) > 1]


def varying_keys(jobs: list[list[str]]) -> list[str]:
    """The override keys whose values differ across the jobs, in command-line order."""
    return [jobs[0][position].split("=", 1)[0] for position in _varying_positions(jobs)]


# A sweep job learns its sweep's size and varying keys from this variable, which Hydra sets
# around each job (hydra.job.env_set): it reaches jobs that a launcher runs in other processes
# or on other machines (submitit/SLURM), where this process's memory does not.
SWEEP_ENV = "PRETRAINER_SWEEP"


def sweep_env_override(jobs: list[list[str]]) -> str:
    """The Hydra override that hands every job "<number of jobs> <varying key> ..."."""
    return f"++hydra.job.env_set.{SWEEP_ENV}='{' '.join([str(len(jobs)), *varying_keys(jobs)])}'"


def running_sweep() -> tuple[int | None, list[str]]:
    """(number of jobs, varying keys) of the sweep this job belongs to; (None, []) outside one."""
    size, *keys = os.environ.get(SWEEP_ENV, "").split() or [None]
    return (int(size) if size else None), keys


def job_label(hydra_cfg) -> str:
    """"job 2 of 6 (objective=clm,seed=1)": a job of the running sweep, as its log names it."""
    size, _ = running_sweep()
    total = f" of {size}" if size else ""
    return f"job {hydra_cfg.job.num + 1}{total} ({hydra_cfg.job.override_dirname or 'defaults'})"


def as_sweep_job(cfg, hydra_cfg):
    """A sweep job's run (a typed Config) is named by the overrides that vary across the sweep
    (not its whole override string), and its wandb run grouped under the sweep, named by what it varies."""
    _, varying_keys = running_sweep()
    varying = [o for o in hydra_cfg.overrides.task if o.split("=", 1)[0] in varying_keys]
    if varying and cfg.run_name == hydra_cfg.job.override_dirname:  # the default name, not one the user gave
        cfg.run_name = ",".join(varying)
    if cfg.logger.group is None:
        what = " x ".join(varying_keys) if varying_keys else "one job"
        cfg.logger.group = f"{Path(hydra_cfg.sweep.dir).name}: {what}"
    return cfg


def invalid_jobs(config_dir: Path, jobs: list[list[str]], validate: Callable) -> list[str]:
    """'job N (overrides): error' for each job whose config does not compose or validate;
    `validate(composed DictConfig, group choices)` raises on a bad config (the checks the CLI
    runs in each job: the choices are Hydra's runtime choices, `{"trainer/optimizer": ...}`)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    from pretrainer.errors import UserError

    problems = []
    swept = _varying_positions(jobs)
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        for number, job in enumerate(jobs, start=1):
            try:
                composed = compose("config", overrides=[o for o in job if not o.startswith("hydra.")],
                                   return_hydra_config=True)
                choices = dict(composed.hydra.runtime.choices)
                with open_dict(composed):
                    del composed["hydra"]  # as a job sees its config
                validate(composed, choices)
            except (UserError, HydraException, OmegaConfBaseException, ValueError) as error:
                label = " ".join(job[position] for position in swept) or "the one job"  # what varies: the job's name
                problems.append(f"job {number} ({label}): {error}")
    return problems


def check_override_keys(config_dir: Path, args: list[str]) -> None:
    """An override of a key the config does not have fails here, in one line naming the valid
    keys where it was meant to go (Hydra would answer with its own error and suggest `+key`,
    which only adds a key nothing reads). Group choices (`objective=mlm`, `arch/size=base`),
    Hydra's own keys and explicit `+key` / `~key` are left to Hydra."""
    import difflib

    from pretrainer.config import Config
    from pretrainer.config_tree import field_paths
    from pretrainer.errors import ConfigError

    if "-sc" in args or "--shell-completion" in args:
        return  # its arguments are not overrides
    known = field_paths(Config())
    for override in override_args(args):
        key = override.split("=", 1)[0].split("@", 1)[0]  # `group@package=option`: the group
        if key.startswith(("+", "~", "hydra.", "hydra/")) or key in known or (config_dir / key).is_dir():
            continue  # Hydra's, explicit, a config key, or a config group (`debug=fast`, `arch/size=base`)
        parent = key.rpartition(".")[0]
        while parent and parent not in known:  # the deepest section that exists
            parent = parent.rpartition(".")[0]
        prefix = f"{parent}." if parent else ""
        siblings = sorted(path[len(prefix):] for path in known
                          if path.startswith(prefix) and "." not in path[len(prefix):])
        guess = difflib.get_close_matches(key[len(prefix):].split(".")[0], siblings, n=1)  # its first bad part
        hint = f" (did you mean {prefix}{guess[0]}?)" if guess else ""
        where = f"valid keys of {parent}" if parent else "valid top-level keys"
        raise ConfigError(f"unknown key {key}{hint}; {where}: {', '.join(siblings)}")


def config_groups(config_dir: Path) -> dict[str, list[str]]:
    """The config groups a user selects (`group=option`) and their options, as the command line
    spells them: a folder the defaults list does not name is a family of options of its parent
    group (`finetune=glue/sst2`), not a group of its own (`arch/size=base` is one)."""
    import yaml

    listed = set()
    for entry in yaml.safe_load((config_dir / "config.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            listed |= {key.removeprefix("optional ").split("@")[0] for key in entry}
    groups: dict[str, list[str]] = {}
    for group in sorted(listed):
        folder = config_dir / group
        if folder.is_dir():
            groups[group] = sorted(str(path.relative_to(folder).with_suffix("")) for path in folder.rglob("*.yaml")
                                   if not any(str(path.relative_to(config_dir)).startswith(f"{other}/")
                                              for other in listed if other != group and other.startswith(group)))
    return groups


# Each sweep job leaves its outcome in its run dir, so the command that launched the sweep can
# report it when a launcher ran the jobs in other processes (submitit, SLURM), whose results and
# failures never reach the launching process's memory.
OUTCOME_FILE = ".sweep_job.json"


def sweep_dir_of(args: list[str]) -> Path | None:
    """The sweep's directory, from its (last) `hydra.sweep.dir=` override; None when it holds an
    interpolation (`${now:...}`), which only the jobs resolve."""
    value = [a for a in args if a.startswith("hydra.sweep.dir=")][-1].split("=", 1)[1]
    return None if "${" in value else Path(value).expanduser()


def clear_outcomes(sweep_dir: Path) -> None:
    """Before the jobs start: an earlier run of the same sweep left its outcomes here."""
    for path in sweep_dir.glob(f"*/{OUTCOME_FILE}"):
        path.unlink(missing_ok=True)


def write_outcome(run_dir: Path, outcome: dict) -> None:
    """`outcome`: {"job", "overrides", "summary"} for a job that finished, {"job", "error"} for one
    that failed, both for a finished one counted as failed (a run that diverged earlier)."""
    from pretrainer.hashing import write_text_atomic

    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / OUTCOME_FILE, json.dumps(outcome, default=str))


def read_outcomes(sweep_dir: Path, expected: int) -> tuple[list[dict], list[str]]:
    """(the finished jobs' outcomes, a line per failed job) of a sweep run elsewhere; a job
    that left no outcome was killed or never started, and is counted as failed."""
    outcomes = sorted((json.loads(path.read_text()) for path in sweep_dir.glob(f"*/{OUTCOME_FILE}")),
                      key=lambda outcome: outcome["job"])
    finished = [outcome for outcome in outcomes if "summary" in outcome]
    failed = [outcome["error"] for outcome in outcomes if "error" in outcome]  # with a summary: skipped as diverged
    if len(outcomes) < expected:
        failed.append(f"{expected - len(outcomes)} of {expected} jobs left no outcome in {sweep_dir}/<job>/ "
                      "(killed, or never started: see the launcher's logs)")
    return finished, failed
