"""Weight-name rules shared by the export and import directions.

A `Rule` says how one of our tensors is made from Hugging Face tensors: the HF tensors
`theirs`, each multiplied by its scale, concatenated along dim 0 (our fused q/k/v
projection is three HF projections), each transposed first when `transpose` is set
(GPT-2's `Conv1D` stores its weight as (in, out), `nn.Linear` as (out, in)). The same
rule read backwards splits our tensor into the HF ones, so both directions use one table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from pretrainer.config import ArchConfig


@dataclass(frozen=True)
class Rule:
    ours: str
    theirs: tuple[str, ...]
    scales: tuple[float, ...] | None = None  # ours = cat(theirs[i] * scales[i]); None: all 1
    transpose: bool = False

    def part_scales(self) -> tuple[float, ...]:
        return self.scales or (1.0,) * len(self.theirs)


def rule(ours: str, *theirs: str, scales: tuple[float, ...] | None = None, transpose: bool = False) -> Rule:
    return Rule(ours, theirs, scales, transpose)


def linear(ours: str, theirs: str, bias: bool, transpose: bool = False) -> list[Rule]:
    """A linear layer (or a norm): its weight, and its bias when the layer has one (biases never transpose)."""
    rules = [rule(f"{ours}.weight", f"{theirs}.weight", transpose=transpose)]
    return rules + [rule(f"{ours}.bias", f"{theirs}.bias")] if bias else rules


def prefixed(rules: list[Rule], prefix: str) -> list[Rule]:
    """The same rules with every HF key under `prefix` (`bert.`, `transformer.`: the base model's
    place inside a model with a head)."""
    return [Rule(r.ours, tuple(prefix + name for name in r.theirs), r.scales, r.transpose) for r in rules]


def fused(ours: str, theirs: Iterable[str], bias: bool, scales: tuple[float, ...] | None = None) -> list[Rule]:
    """Our fused projection (e.g. `qkv`, (3C, C)) = the HF projections stacked on the output dim."""
    theirs = tuple(theirs)
    rules = [rule(f"{ours}.weight", *(f"{name}.weight" for name in theirs), scales=scales)]
    return rules + [rule(f"{ours}.bias", *(f"{name}.bias" for name in theirs), scales=scales)] if bias else rules


def to_theirs(rules: list[Rule], ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict -> HF tensors (fresh contiguous copies: safetensors refuses shared storage)."""
    out = {}
    for r in rules:
        parts = ours[r.ours].detach().chunk(len(r.theirs), dim=0)
        for name, part, scale in zip(r.theirs, parts, r.part_scales(), strict=True):
            part = part / scale if scale != 1.0 else part
            out[name] = (part.t() if r.transpose else part).contiguous().clone()
    return out


def to_ours(rules: list[Rule], theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF tensors -> our state dict entries; a missing HF tensor is an error naming it."""
    missing = [name for r in rules for name in r.theirs if name not in theirs]
    if missing:
        raise ValueError(f"the Hugging Face checkpoint lacks {', '.join(missing)}")
    out = {}
    for r in rules:
        parts = [(theirs[name].t() if r.transpose else theirs[name]) * scale
                 for name, scale in zip(r.theirs, r.part_scales(), strict=True)]
        out[r.ours] = torch.cat(parts, dim=0).contiguous()
    return out


def consumed(rules: list[Rule]) -> set[str]:
    return {name for r in rules for name in r.theirs}


def _show(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()  # as written on the command line: arch.bias=false
    if isinstance(value, tuple):
        return " or ".join(_show(v) for v in value)
    return str(value)


def arch_mismatches(arch: ArchConfig, required: dict[str, object], model: str) -> list[str]:
    """'arch.FIELD=VALUE (MODEL needs REQUIRED)' for each field that differs; a tuple lists the allowed values."""
    problems = []
    for key, want in required.items():
        value = getattr(arch, key)
        if value not in (want if isinstance(want, tuple) else (want,)):
            problems.append(f"arch.{key}={_show(value)} ({model} needs {_show(want)})")
    return problems


def plain_head_problems(arch: ArchConfig, head_state: dict[str, torch.Tensor], objective: str,
                        required: dict[str, object], model: str) -> list[str]:
    """Arch fields that differ, plus an LM head that is not a plain projection (GPT-2, T5)."""
    problems = arch_mismatches(arch, required, model)
    if "transform.0.weight" in head_state or "bias" in head_state:
        problems.append(f"objective.name={objective} ({model} needs a plain LM head without transform or bias)")
    return problems
