"""Provenance: what produced a run, recorded in `<run dir>/manifest.json` before it starts,
and the comparison `pretrainer reproduce` makes between a run and its re-run.

The manifest holds the command line, the resolved config and its fingerprint, the git
commit of the code (and whether the tree had uncommitted changes), package versions,
the hardware, the seeds, and the corpus and tokenizer fingerprints.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pretrainer.config import Config
from pretrainer.config_tree import flatten
from pretrainer.errors import RunDirError
from pretrainer.hashing import fingerprint, write_text_atomic

PACKAGES = ("pretrainer", "torch", "tokenizers", "datasets", "hydra-core", "omegaconf", "numpy", "scikit-learn",
            "scipy", "wandb", "transformers")
# Config keys (or groups) that name, place, log or checkpoint a run but cannot change its results:
# left out of the config fingerprint, and free to change on resume.
RESULT_NEUTRAL_KEYS = ("run_name", "cache_dir", "resume", "resume_allow_changes", "init", "logger", "plan",
                       "trainer.log_every", "trainer.checkpoint_every", "trainer.keep_checkpoints",
                       "trainer.data_workers", "trainer.parallel", "data.verify_cache", "finetune.save_predictions",
                       "finetune.reuse_scratch",
                       "tokenizer.show", "tokenizer.diagnostic_documents")


def config_fingerprint(cfg: Config) -> str:
    """Hash of everything in the config that can change a run's results."""
    values = {k: v for k, v in flatten(asdict(cfg)).items() if not in_groups(k, RESULT_NEUTRAL_KEYS)}
    return fingerprint("config", values)


def in_groups(key: str, entries: tuple[str, ...] | list[str]) -> bool:
    """`key` is one of `entries` or lies in one of them as a group (`trainer` holds `trainer.lr`)."""
    return any(key == entry or key.startswith(f"{entry}.") for entry in entries)


def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the source tree this package runs from (None outside git)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware() -> dict[str, Any]:
    import torch  # here, not at the top: reading a manifest needs no torch

    gpus = range(torch.cuda.device_count()) if torch.cuda.is_available() else []
    cuda = [torch.cuda.get_device_name(i) for i in gpus]
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cuda": cuda}


def build_manifest(cfg: Config, corpus_fingerprint: str, tokenizer_fingerprint: str) -> dict[str, Any]:
    return {
        "format": "pretrainer-manifest-v1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "config": asdict(cfg),
        "config_fingerprint": config_fingerprint(cfg),
        "git": git_state(),
        "packages": package_versions(),
        "hardware": hardware(),
        "seeds": {"seed": cfg.seed, "trainer": cfg.trainer.seed, "finetune": cfg.finetune.run_seeds(),
                  "data": cfg.data.seed},
        "data_fingerprint": corpus_fingerprint,
        "tokenizer_fingerprint": tokenizer_fingerprint,
    }


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    write_text_atomic(run_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    if not path.is_file():
        raise RunDirError(f"{path} does not exist: not a pretrainer run dir (or one from before manifests)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunDirError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or "config" not in manifest:
        raise RunDirError(f"{path} is not a pretrainer manifest (no config)")
    return manifest


def completed_with(run_dir: Path, cfg: Config) -> bool:
    """True when `run_dir` holds a finished run (summary.json) of the same resolved config."""
    if not (run_dir / "summary.json").is_file():
        return False
    try:
        return read_manifest(run_dir).get("config_fingerprint") == config_fingerprint(cfg)
    except RunDirError:
        return False


# ---- comparing a run with its re-run ------------------------------------------------------------------------------

TIMING_KEYS = ("tokens_per_s", "wall_time_s", "train_time_s", "compile_s", "run_dir", "run_name")


def result_values(summary: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every number of a summary that is a result (not a timing or a path), flattened by key path."""
    values: dict[str, float] = {}
    for key, value in summary.items():
        if key in TIMING_KEYS:
            continue
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            values.update(result_values(value, f"{path}/"))
        elif isinstance(value, (list, tuple)):
            values.update(result_values({str(i): v for i, v in enumerate(value)}, f"{path}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values[path] = float(value)
    return values


def compare_results(original: dict[str, Any], rerun: dict[str, Any], exact: bool,
                    loss_rtol: float = 0.02, score_atol: float = 0.05) -> list[str]:
    """Differences between two summaries: none allowed when `exact` (same machine and
    versions); otherwise losses within `loss_rtol` relative and other numbers within
    `score_atol` absolute. Returns one line per difference."""
    a, b = result_values(original), result_values(rerun)
    problems = [f"{key}: only in {'the original' if key in a else 'the re-run'}" for key in sorted(set(a) ^ set(b))]
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        if exact:
            ok = x == y
        elif "loss" in key:
            ok = abs(x - y) <= loss_rtol * max(abs(x), 1e-12)
        else:
            ok = abs(x - y) <= score_atol
        if not ok:
            problems.append(f"{key}: {x!r} vs {y!r}")
    return problems


def same_machine(original: dict[str, Any], current: dict[str, Any]) -> bool:
    """Exactly reproducible conditions: same hardware and package versions."""
    return original.get("hardware") == current.get("hardware") and original.get("packages") == current.get("packages")


@dataclass
class Stage:
    """One leg of a reproduction: the config to train with, and the step to halt at (None: to the end)."""

    config: dict[str, Any]  # resolved config as a plain dict
    halt_at_step: int | None


def reproduction_stages(manifest: dict[str, Any]) -> list[Stage]:
    """The legs a run went through: one for a run never resumed with changes; otherwise the
    original config up to the first amended resume, then each amended config from there.
    Resumes without changes need no leg of their own: resuming is bit-exact."""
    config = copy.deepcopy(manifest["config"])
    config.update(resume=False, resume_allow_changes=[])
    stages = []
    for amendment in manifest.get("resumes", []):
        if "corpus" in amendment:  # every leg would read today's files: the earlier corpus is gone
            raise RunDirError(f"the run's corpus changed when it resumed from step {amendment['from_step']} "
                              f"(content hash {amendment['corpus']['from']} -> {amendment['corpus']['to']}, "
                              "resume_allow_changes=[data]); the corpus before it cannot be replayed")
        if not amendment.get("changes"):
            continue
        stages.append(Stage(copy.deepcopy(config), amendment["from_step"]))
        for key, change in amendment["changes"].items():
            set_dotted(config, key, change["to"])
        config.update(resume=True, resume_allow_changes=list(amendment["changes"]))
    return [*stages, Stage(config, None)]


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def reproduce_run(stages: list[tuple[Config, int | None]], original_dir: Path,
                  new_dir: Path) -> tuple[list[str], bool]:
    """Re-run `original_dir` into the fresh `new_dir` through its stages (typed configs
    and halting steps, from `reproduction_stages`) and compare the results. Returns
    (differences, whether exact equality was required)."""
    from pretrainer.pipeline import train

    original_manifest = read_manifest(original_dir)
    summary_path = original_dir / "summary.json"
    if not summary_path.is_file():
        raise RunDirError(f"{summary_path} does not exist: the original run did not finish")
    for cfg, halt_at_step in stages:
        cfg.finetune.reuse_scratch = False  # a reproduction recomputes everything, scratch baselines included
        rerun = train(cfg, new_dir, halt_at_step=halt_at_step)
    exact = same_machine(original_manifest, read_manifest(new_dir))
    return compare_results(json.loads(summary_path.read_text()), rerun, exact), exact
