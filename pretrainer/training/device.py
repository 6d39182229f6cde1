"""Device and precision are chosen here, outside the model."""

from __future__ import annotations

import contextlib

import torch

from pretrainer.config import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but CUDA is not available; use trainer.device=auto or cpu")
    return device


def use_bf16(precision: str, device: torch.device) -> bool:
    """auto means bf16 autocast on CUDA and fp32 elsewhere (CPU bf16 is slower, not faster)."""
    if precision == "auto":
        return device.type == "cuda"
    return precision == "bf16"


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
