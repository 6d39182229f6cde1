"""Pretraining objectives, one module each, looked up by `objective.name`."""

from __future__ import annotations

from pretrainer.config import ObjectiveConfig
from pretrainer.models import TransformerBody
from pretrainer.objectives.base import Objective, ObjectiveOutput
from pretrainer.objectives.clm import CausalLM
from pretrainer.objectives.mlm import MaskedLM
from pretrainer.registry import Registry
from pretrainer.tokenization import SpecialIds

OBJECTIVES: Registry[type[Objective]] = Registry("objective")
OBJECTIVES.register("mlm")(MaskedLM)
OBJECTIVES.register("clm")(CausalLM)


def build_objective(cfg: ObjectiveConfig, body: TransformerBody, special: SpecialIds, vocab_size: int) -> Objective:
    return OBJECTIVES.get(cfg.name)(cfg, body, special, vocab_size)


__all__ = ["OBJECTIVES", "Objective", "ObjectiveOutput", "build_objective"]
