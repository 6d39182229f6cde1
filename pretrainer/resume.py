"""Resuming a run dir truthfully.

`resume=true` continues from the newest checkpoint that verifies (see
`training/checkpoint.py`), but only when the resolved config agrees with the one the
checkpoint was trained with: a change that can alter results (a learning rate, the
budget, the seed, the architecture) is refused with every differing key named, unless
the user lists it in `resume_allow_changes`. The run's `manifest.json` keeps the
original config and gains an entry per resume (the amendment), so provenance is never
rewritten. Without `resume=true`, a run dir that already holds checkpoints is refused
rather than overwritten.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from pretrainer.config import Config
from pretrainer.config_tree import flatten
from pretrainer.errors import CheckpointError, ConfigError, RunDirError
from pretrainer.loggers import info
from pretrainer.provenance import RESULT_NEUTRAL_KEYS, in_groups, read_manifest, write_manifest
from pretrainer.training.checkpoint import list_checkpoints, load_latest


@dataclass
class ResumePoint:
    path: Path  # the checkpoint file
    payload: dict[str, Any]  # its verified contents
    changes: dict[str, tuple[Any, Any]]  # allowed config changes: key -> (checkpoint's value, this run's)

    @property
    def step(self) -> int:
        return int(self.payload["train_state"]["step"])


def find_resume_point(cfg: Config, run_dir: Path, execution: dict[str, Any]) -> ResumePoint | None:
    """The checkpoint this run continues from (None: start at step 0). Raises before any
    work when the run dir holds checkpoints but `resume` is off, or when the config, or how
    it resolves on this machine (`execution`: device type, bf16), changed."""
    directory = run_dir / "checkpoints"
    quarantined = sorted(directory.glob("*.pt.corrupt")) if directory.is_dir() else []
    if not cfg.resume:
        existing = list_checkpoints(directory) + quarantined
        if existing:
            raise RunDirError(f"{run_dir} already holds a run ({existing[0].name}); resume=true continues it, or "
                              "choose another run dir (hydra.run.dir=...) to start over")
        return None
    found = load_latest(directory, quarantine=True)
    if found is None and quarantined:
        raise RunDirError(f"{run_dir} has no usable checkpoint left ({', '.join(p.name for p in quarantined)} failed "
                          "verification); remove them, or choose another run dir, to start over")
    if found is None:
        info(f"resume=true: no checkpoint in {directory} yet; starting at step 0")
        return None
    path, payload = found
    changes = config_changes(payload["config"], asdict(cfg))
    if "blocks_per_step" in (payload.get("execution") or {}):
        # grad_accum may trade places with the number of processes: what must stay is the global
        # batch, compared as resolved below (blocks per optimizer step over all processes).
        changes.pop("trainer.grad_accum", None)
    changes |= execution_changes(payload, execution)
    if "trainer.optimizer" in changes:  # its moments belong to one optimizer: no resume_allow_changes moves them
        saved_optimizer, asked = changes["trainer.optimizer"]
        raise ConfigError(f"resume refused: {path} was trained with trainer.optimizer={saved_optimizer} and this run "
                          f"asks for {asked}; an optimizer's state cannot continue in another. Resume with "
                          f"trainer/optimizer={saved_optimizer}, or start a new run")
    refused = {key: change for key, change in changes.items() if not in_groups(key, cfg.resume_allow_changes)}
    if refused:
        listed = ", ".join(f"{key} ({old!r} -> {new!r})" for key, (old, new) in refused.items())
        raise ConfigError(f"resume refused: the config differs from that of {path} in {listed}; these change "
                          f"the results. Use the checkpoint's values, or accept the change with "
                          f"resume_allow_changes=[{','.join(refused)}] (recorded in manifest.json)")
    return ResumePoint(path, payload, changes)


def execution_changes(payload: dict[str, Any], execution: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """`trainer.device=auto` and `precision=auto` resolve per machine: moving a run from a CPU to
    a GPU keeps the config but changes the arithmetic (fp32 -> bf16); the global batch depends on
    the number of processes. Named by the config key that decides them, with the resolved values."""
    saved = payload.get("execution") or {}
    changes = {}
    if "device" in saved and saved["device"] != execution["device"]:
        changes["trainer.device"] = (f"{saved['device']} (resolved)", f"{execution['device']} (resolved)")
    if "blocks_per_step" in saved and saved["blocks_per_step"] != execution["blocks_per_step"]:
        changes["trainer.grad_accum"] = (f"{saved['blocks_per_step']} blocks per step over all processes (resolved)",
                                         f"{execution['blocks_per_step']} blocks per step (resolved): set "
                                         "grad_accum so that batch_size x grad_accum x processes is unchanged")
    if "bf16" in saved and saved["bf16"] != execution["bf16"]:
        names = {True: "bf16 (resolved)", False: "fp32 (resolved)"}
        changes["trainer.precision"] = (names[saved["bf16"]], names[execution["bf16"]])
    return changes


def corpus_changed(point: ResumePoint, data_fingerprint: str, allowed: list[str]) -> bool:
    """Whether the corpus differs from the checkpoint's; a change is refused unless `data` is allowed."""
    saved = point.payload.get("data_fingerprint")
    if saved is None or saved == data_fingerprint:
        return False
    if not in_groups("data", allowed):
        raise ConfigError(f"resume refused: the pretraining corpus changed since {point.path} (content hash "
                          f"{saved} -> {data_fingerprint}); accept it with resume_allow_changes=[data]")
    return True


def check_tokenizer(point: ResumePoint, tokenizer_fingerprint: str) -> None:
    """The tokenizer must be the checkpoint's: its ids index the embedding."""
    found = point.payload.get("tokenizer_fingerprint")
    if found != tokenizer_fingerprint:
        raise CheckpointError(f"{point.path} was trained with tokenizer {found}, this run has {tokenizer_fingerprint}: "
                              "resuming would scramble the vocabulary")


def check_weights_fit(point: ResumePoint, model: torch.nn.Module) -> None:
    """Load the checkpoint's weights now, so that a model they do not fit (an architecture change
    that was allowed) fails before the resume is recorded."""
    if "sharded" in point.payload:  # read when training resumes; a model it does not fit fails there
        return
    try:
        model.load_state_dict(point.payload["model"])
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(f"the weights of {point.path} do not fit this model: "
                              f"{str(error).splitlines()[0]}") from None


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (saved, current) for every value that differs and can change results. A key
    the saved config lacks (added to pretrainer since) counts as its default: what that run did."""
    old, new = flatten(asdict(Config())) | flatten(saved), flatten(current)
    keys = [key for key in dict.fromkeys([*old, *new]) if not in_groups(key, RESULT_NEUTRAL_KEYS)]
    return {key: (old.get(key), new.get(key)) for key in keys if old.get(key) != new.get(key)}


def record_resume(run_dir: Path, point: ResumePoint, fresh_manifest: dict[str, Any]) -> None:
    """Append this resume to the manifest's `resumes` (an amendment: the original config stays).
    A corpus changed under resume_allow_changes=[data] is recorded as `corpus` (checkpoint's
    content hash -> this run's): no config key holds it, and a reproduction cannot replay it."""
    try:
        manifest = read_manifest(run_dir)
    except RunDirError:  # a run dir from before manifests: the checkpoint's config is what it started with
        manifest = fresh_manifest | {"config": point.payload["config"], "config_fingerprint": None}
    manifest.setdefault("resumes", []).append({
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "from_step": point.step,
        "checkpoint": point.path.name,
        "command": sys.argv,
        "changes": {key: {"from": old, "to": new} for key, (old, new) in point.changes.items()},
        "data_fingerprint": fresh_manifest["data_fingerprint"],  # the corpus from this step on
        "git": fresh_manifest["git"],
        "packages": fresh_manifest["packages"],
        "hardware": fresh_manifest["hardware"],
    })
    saved_corpus = point.payload.get("data_fingerprint")
    if saved_corpus is not None and saved_corpus != fresh_manifest["data_fingerprint"]:
        manifest["resumes"][-1]["corpus"] = {"from": saved_corpus, "to": fresh_manifest["data_fingerprint"]}
    write_manifest(run_dir, manifest)
