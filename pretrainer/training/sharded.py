"""Sharded checkpoints of an FSDP2 run, written with `torch.distributed.checkpoint` (DCP).

Each rank writes its own shards of the weights and the optimizer state into
`checkpoints/step_<step>.dcp/` (DCP's own layout: `.metadata` plus one `__<rank>_0.distcp` file
per rank); rank 0 then writes `step_<step>.pt`, the ordinary verified checkpoint file, holding
everything else (train state, schedule, RNG, config, fingerprints) and the names and sizes of
the shard files instead of the weights. That file is written last: a crash while the shards are
written leaves no checkpoint that points at them.

DCP reshards on load, so a sharded checkpoint resumes on any number of processes, also on one
(no process group: DCP reads every shard). The state dicts are keyed by parameter name
(`torch.distributed.checkpoint.state_dict`), so a full checkpoint (one process or DDP) also
loads into a sharded model and vice versa.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pretrainer.errors import CheckpointError
from pretrainer.training.distributed import barrier, current_world

SHARD_SUFFIX = ".dcp"


def shard_dir(checkpoint_path: Path) -> Path:
    """`step_00000100.pt` -> `step_00000100.dcp`."""
    return checkpoint_path.with_suffix(SHARD_SUFFIX)


def save_shards(model: nn.Module, optimizer: torch.optim.Optimizer, checkpoint_path: Path) -> dict[str, Any]:
    """Every rank writes its shards (a collective); returns what `step_<step>.pt` records of them."""
    from torch.distributed import checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    target = shard_dir(checkpoint_path)
    staging = target.with_name(f".tmp-{target.name}")  # one name for all ranks: they write into the same dir
    if current_world().main:
        shutil.rmtree(staging, ignore_errors=True)
    barrier()
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=staging)
    barrier()  # every rank's shards are on disk before rank 0 renames the directory
    if current_world().main:
        shutil.rmtree(target, ignore_errors=True)  # a directory of this step left by a killed save
        os.replace(staging, target)
    barrier()
    return {"sharded": target.name, "shard_files": _file_sizes(target)}


def _file_sizes(directory: Path) -> dict[str, int]:
    return {path.name: path.stat().st_size for path in sorted(directory.iterdir()) if path.is_file()}


def check_shards(checkpoint_path: Path, payload: dict[str, Any]) -> None:
    """The shard directory a checkpoint file names exists with the files and sizes it recorded."""
    directory = checkpoint_path.parent / payload["sharded"]
    if not directory.is_dir():
        raise CheckpointError(f"{checkpoint_path} names sharded weights in {directory.name}, which is missing")
    found = _file_sizes(directory)
    if found != payload["shard_files"]:
        raise CheckpointError(f"{directory} does not hold the shard files {checkpoint_path.name} recorded "
                              f"({sorted(payload['shard_files'])} with their sizes)")


def load_shards(model: nn.Module, optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Weights and optimizer state from a sharded checkpoint into `model`, sharded or not."""
    from torch.distributed import checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    _dcp_load(dcp, state, directory)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def _dcp_load(dcp, state: dict[str, Any], directory: Path) -> None:
    try:
        # no_dist: one process reads every shard (a sharded run resumed without a process group)
        dcp.load(state, checkpoint_id=directory, no_dist=not current_world().distributed)
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"the sharded weights in {directory} do not fit this model: "
                              f"{str(error).strip().splitlines()[-1][:300]}") from None


def load_full_into_sharded(model: nn.Module, optimizer: torch.optim.Optimizer, payload: dict[str, Any]) -> None:
    """A full checkpoint (one process or DDP: `optimizer.state_dict()` numbers parameters in the
    order of the optimizer's groups) into an FSDP2-sharded model and its optimizer."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    names = {id(param): name for name, param in model.named_parameters()}
    order = [names[id(param)] for group in optimizer.param_groups for param in group["params"]]
    saved = payload["optimizer"]
    by_name = {"state": {order[index]: value for index, value in saved["state"].items()},
               "param_groups": [{**group, "params": [order[index] for index in group["params"]]}
                                for group in saved["param_groups"]]}
    set_state_dict(model, optimizer, model_state_dict=payload["model"], optim_state_dict=by_name,
                   options=StateDictOptions(full_state_dict=True))


def full_model_state(directory: Path) -> dict[str, torch.Tensor]:
    """The whole model's weights from a sharded checkpoint, in this process alone (fine-tuning,
    export): DCP's own conversion to a `torch.save` file, read back weights-only."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as scratch:
        converted = Path(scratch) / "full.pt"
        dcp_to_torch_save(directory, converted)
        state = torch.load(converted, map_location="cpu", weights_only=True)
    return state["model"]
