"""Data parallelism over the process group: DDP (`trainer.parallel=ddp`, the default) or
FSDP2 (`trainer.parallel=fsdp`: parameters, gradients and optimizer state sharded with
`torch.distributed.fsdp.fully_shard`, each transformer block its own unit, the rest — the
embeddings and the objective's heads — in the root unit).

With one process neither is used: the model trains as it is. `PretrainingModel` stays the
module whose state dict the checkpoints hold (DDP wraps it; FSDP2 shards it in place and
keeps its parameter names), so a checkpoint names the same keys however it was trained.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pretrainer.models.transformer import Block
from pretrainer.training.distributed import World


def data_parallel(model: nn.Module, parallel: str, world: World, device: torch.device) -> nn.Module:
    """The module the training step calls: `model` itself alone, DDP around it, or `model` sharded
    in place by FSDP2 (returned as it is)."""
    if not world.distributed:
        return model
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in [module for module in model.modules() if isinstance(module, Block)]:
            fully_shard(block)
        fully_shard(model)
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP2 shards `model` (its parameters are DTensors)."""
    return any(_is_dtensor(param) for param in model.parameters())


def gradient_sync(module: nn.Module, enabled: bool) -> contextlib.AbstractContextManager:
    """Whether this backward all-reduces (or reduce-scatters) its gradients: only the last
    micro-batch of an optimizer step needs to; the others accumulate locally."""
    ddp = getattr(module, "_orig_mod", module)  # under torch.compile, the DDP module it wraps
    if isinstance(ddp, DistributedDataParallel):
        return contextlib.nullcontext() if enabled else ddp.no_sync()
    if hasattr(ddp, "set_requires_gradient_sync"):  # FSDP2's sharded module
        ddp.set_requires_gradient_sync(enabled)
    return contextlib.nullcontext()


def local_value(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor (FSDP2's gradient norm) as the full plain tensor; other tensors as they are."""
    return tensor.full_tensor() if _is_dtensor(tensor) else tensor


def _is_dtensor(tensor: Any) -> bool:
    return type(tensor).__name__ == "DTensor" and hasattr(tensor, "full_tensor")


def gathered_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on the CPU of rank 0 (a collective under FSDP2: every rank
    calls it; the others get {}); `model.state_dict()` where nothing is sharded."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
