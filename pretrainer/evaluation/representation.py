"""Is the pretrained body's representation usable? Two checks on held-out text, each against
the same body at initialisation:

- token level: the mean cosine similarity between the final states of different tokens. A
  healthy pretrained body spreads its tokens out (embedded benchmark, held-out blocks, three
  seeds, learned positions: 0.07 for clm, 0.21 for span_mlm, 0.24 for mlm, against about 0.32
  at initialisation; the ALiBi encoder: 0.28 for mlm and span_mlm against 0.42). A collapsed
  one maps every token to nearly the same vector: at the demo budget ELECTRA's discriminator
  with learned positions stays at the replaced-token prior and its body reaches 0.98; T5's
  decoder learns to ignore its encoder, which reaches 0.68-0.87 (under AdamW; with T5's
  Adafactor, t5_span's optimizer now, 0.04).
- sequence level: the mean cosine between the mean-pooled states of different held-out blocks,
  what a classifier on the pooled body starts from. Tokens can stay apart while every text
  averages to nearly the same vector. Pretraining that helps fine-tuning spreads texts apart:
  on the embedded benchmark's held-out blocks mlm 0.75 (0.92 at initialisation), span_mlm
  0.75 (0.92), clm 0.41 (0.89), and BART only just, 0.942 (0.950; topic 0.96 against 0.55);
  with ALiBi, mlm 0.79 (0.88).
  Every body measured whose fine-tuning fell to scratch or below (topic 0.21-0.53 against
  about 0.53) left them closer than at initialisation: T5 with RMSNorm and no biases 0.98
  (0.94), whose tokens stayed apart (0.41), MLM with rotary positions 0.89 (0.84), and the
  collapsed ELECTRA 0.99 (0.92) and T5 at 3x the demo budget 0.996 (0.96).

A run whose body fails either check says so: fine-tuning from it usually scores at or below
scratch. The checks are heuristics, not proofs: ELECTRA on the ALiBi encoder fails both (three
seeds: tokens 0.64 from 0.42, texts 0.99 from 0.88) and still fine-tunes topic to 0.95 against
0.54 scratch, and span_mlm on it pools texts as alike as at initialisation (0.874, 0.875) while
winning three tasks; so the report weighs a flagged row against its own fine-tuning
(`pretrainer.report.representation`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pretrainer.data.blocks import BlockSet
from pretrainer.evaluation.scoring import evaluation_mode
from pretrainer.loggers import info, warn
from pretrainer.models.heads import pool

COLLAPSED = 0.6  # mean token-pair cosine above which the representation counts as collapsed
MAX_TOKENS = 1024  # tokens compared (all pairs among them)


def mean_pair_cosine(vectors: torch.Tensor) -> float:
    """Mean cosine similarity over the distinct pairs of the rows of (N, C) `vectors`."""
    unit = F.normalize(vectors.float(), dim=-1)
    count = unit.shape[0]
    if count < 2:
        return float("nan")
    total = unit.sum(0)  # sum over pairs i != j of u_i . u_j = |sum u|^2 - sum |u_i|^2
    return float((total @ total - count) / (count * (count - 1)))


@torch.no_grad()
def final_states(body: nn.Module, ids: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, T, C) final states of the body in eval mode; ids, real: (B, T) ids and real-token mask."""
    with evaluation_mode(body):
        return body(ids, real)


def token_cosine(body: nn.Module, ids: torch.Tensor, real: torch.Tensor) -> float:
    """Mean cosine similarity over distinct pairs of the real tokens' final states."""
    return _token_cosine(final_states(body, ids, real), real)


def sequence_cosine(body: nn.Module, ids: torch.Tensor, real: torch.Tensor) -> float:
    """Mean cosine similarity over pairs of rows' mean-pooled final states (real tokens only)."""
    return _sequence_cosine(final_states(body, ids, real), real)


def _token_cosine(states: torch.Tensor, real: torch.Tensor) -> float:
    return mean_pair_cosine(states[real][:MAX_TOKENS])


def _sequence_cosine(states: torch.Tensor, real: torch.Tensor) -> float:
    pooled = pool(states, real, "mean")  # (B, C): as the fine-tuning classifier pools
    return mean_pair_cosine(pooled[real.any(1)])


def representation_check(pretrained: nn.Module, initial: nn.Module, ids: torch.Tensor,
                         real: torch.Tensor) -> dict[str, float | bool]:
    """{"token_cosine", "token_cosine_at_init", "collapsed", "sequence_cosine",
    "sequence_cosine_at_init", "sequences_alike"} for the summary."""
    trained, fresh = final_states(pretrained, ids, real), final_states(initial, ids, real)  # (B, T, C) each
    cosine, at_init = _token_cosine(trained, real), _token_cosine(fresh, real)
    pooled, pooled_at_init = _sequence_cosine(trained, real), _sequence_cosine(fresh, real)
    return {"token_cosine": cosine, "token_cosine_at_init": at_init,
            "collapsed": bool(cosine > COLLAPSED and cosine > at_init),
            "sequence_cosine": pooled, "sequence_cosine_at_init": pooled_at_init,
            "sequences_alike": bool(pooled >= pooled_at_init)}  # pretraining spread no texts apart


def check_pretrained_body(body: nn.Module, build_initial: Callable[[], nn.Module], blocks: BlockSet, pad: int,
                          max_len: int, device: torch.device, seed: int) -> dict[str, float | bool] | None:
    """The check on up to 16 held-out blocks (cut to the model's length); a warning when collapsed.
    `build_initial` makes a fresh body of the same architecture (seeded here, global RNG untouched)."""
    if blocks.num_blocks == 0:
        return None
    ids = torch.as_tensor(blocks.gather(np.arange(min(16, blocks.num_blocks))).ids[:, :max_len], device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        initial = build_initial().to(device)
    result = representation_check(body, initial, ids, ids != pad)
    info(f"representation: mean token-pair cosine {result['token_cosine']:.3f} "
         f"({result['token_cosine_at_init']:.3f} at initialisation); texts, mean-pooled: "
         f"{result['sequence_cosine']:.3f} ({result['sequence_cosine_at_init']:.3f})")
    if result["collapsed"]:
        warn(f"the pretrained body maps every token to nearly the same vector (mean cosine "
             f"{result['token_cosine']:.3f} > {COLLAPSED}): fine-tuning from it usually scores at or below "
             "scratch (compare its fine-tuning with scratch); the objective may not have learned a usable "
             "representation at this budget (README: the embedded benchmark)")
    elif result["sequences_alike"]:
        warn(f"the pretrained body averages different texts to nearly the same vector (mean-pooled cosine "
             f"{result['sequence_cosine']:.3f}, {result['sequence_cosine_at_init']:.3f} at initialisation): a "
             "classifier on its pooled states usually scores at or below scratch (compare its fine-tuning with "
             "scratch); the objective may not have learned text-level features at this budget (README: the "
             "embedded benchmark)")
    return result
