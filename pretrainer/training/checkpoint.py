"""Checkpoint format (`checkpoints/last.pt`, a `torch.save` dict):

    format                 "pretrainer-checkpoint-v1"
    model                  state dict of the pretraining model: `body.*` and the objective's heads `objective.*`
    optimizer, scheduler   their state dicts
    train_state            TrainState as a dict (step, tokens seen, eval losses, ...)
    rng                    torch / numpy RNG states (dropout; masks are re-derived from the step)
    config                 the resolved run config as a plain dict
    tokenizer_fingerprint  hash of the run's tokenizer.json; a checkpoint is only valid with it

Writes go to a temporary file renamed over the target, so an interrupted save leaves
the previous checkpoint intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FORMAT = "pretrainer-checkpoint-v1"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "rng": _rng_state(), **payload}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    return payload


def restore_rng(payload: dict[str, Any]) -> None:
    torch.set_rng_state(payload["rng"]["torch"])
    np.random.set_state(payload["rng"]["numpy"])


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}


def body_state_dict(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The body's weights alone (what fine-tuning starts from)."""
    prefix = "body."
    return {k[len(prefix):]: v for k, v in payload["model"].items() if k.startswith(prefix)}
