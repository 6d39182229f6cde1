"""Pretraining objectives, looked up by `objective.name`.

Which architecture family each can train is `pretrainer.config.OBJECTIVE_ARCHS`.
"""

from __future__ import annotations

from torch import nn

from pretrainer.config import ObjectiveConfig
from pretrainer.objectives.bart import BartDenoising
from pretrainer.objectives.base import Objective, ObjectiveOutput
from pretrainer.objectives.clm import CausalLM, PrefixLM
from pretrainer.objectives.electra import Electra
from pretrainer.objectives.mlm import MaskedLM, SpanMLM, WholeWordMLM
from pretrainer.objectives.sentence_pairs import SentencePairMLM
from pretrainer.objectives.t5_span import T5SpanCorruption
from pretrainer.registry import Registry
from pretrainer.tokenization import SpecialIds

OBJECTIVES: Registry[type[Objective]] = Registry("objective")
for _name, _cls in {
    "mlm": MaskedLM, "wwm": WholeWordMLM, "span_mlm": SpanMLM, "mlm_nsp": SentencePairMLM,
    "mlm_sop": SentencePairMLM, "electra": Electra, "clm": CausalLM, "prefix_lm": PrefixLM,
    "t5_span": T5SpanCorruption, "bart": BartDenoising,
}.items():
    OBJECTIVES.register(_name)(_cls)


def objective_class(cfg: ObjectiveConfig) -> type[Objective]:
    return OBJECTIVES.get(cfg.name)


def build_objective(cfg: ObjectiveConfig, body: nn.Module, special: SpecialIds, vocab_size: int) -> Objective:
    return objective_class(cfg)(cfg, body, special, vocab_size)


__all__ = ["OBJECTIVES", "Objective", "ObjectiveOutput", "build_objective", "objective_class"]
