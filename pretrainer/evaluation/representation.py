"""Is the pretrained body's representation usable? The mean cosine similarity between the
final states of different tokens, on held-out text, against the same for the body at
initialisation.

A healthy pretrained body spreads its tokens out (embedded benchmark, held-out blocks,
three seeds: 0.07 for clm, 0.21 for span_mlm, 0.24 for mlm, against about 0.32 at
initialisation). A collapsed one maps every token to nearly the same vector: at the demo
budget ELECTRA's discriminator stays at the replaced-token prior and its body reaches 0.98;
T5's decoder learns to ignore its encoder, which reaches 0.68–0.87. Fine-tuning from those
bodies scores below scratch (topic 0.22 and 0.21 against 0.52). A run whose body is that
collapsed says so.
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

COLLAPSED = 0.6  # mean token-pair cosine above which the representation counts as collapsed
MAX_TOKENS = 1024  # tokens compared (all pairs among them)


@torch.no_grad()
def token_cosine(body: nn.Module, ids: torch.Tensor, real: torch.Tensor) -> float:
    """Mean cosine similarity over distinct pairs of the real tokens' final states.
    ids, real: (B, T) token ids and the mask of real (not padding) tokens."""
    with evaluation_mode(body):
        states = body(ids, real)[real]  # (N, C)
    unit = F.normalize(states[:MAX_TOKENS].float(), dim=-1)
    count = unit.shape[0]
    if count < 2:
        return float("nan")
    total = unit.sum(0)  # sum over pairs i != j of u_i . u_j = |sum u|^2 - sum |u_i|^2
    return float((total @ total - count) / (count * (count - 1)))


def representation_check(pretrained: nn.Module, initial: nn.Module, ids: torch.Tensor,
                         real: torch.Tensor) -> dict[str, float | bool]:
    """{"token_cosine", "token_cosine_at_init", "collapsed"} for the summary."""
    cosine, at_init = token_cosine(pretrained, ids, real), token_cosine(initial, ids, real)
    return {"token_cosine": cosine, "token_cosine_at_init": at_init,
            "collapsed": bool(cosine > COLLAPSED and cosine > at_init)}


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
         f"({result['token_cosine_at_init']:.3f} at initialisation)")
    if result["collapsed"]:
        warn(f"the pretrained body maps every token to nearly the same vector (mean cosine "
             f"{result['token_cosine']:.3f} > {COLLAPSED}): fine-tuning from it will likely score below scratch; "
             "the objective did not learn a usable representation at this budget (README: the embedded benchmark)")
    return result
