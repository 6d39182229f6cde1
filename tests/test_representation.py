"""The representation checks after pretraining: mean cosine between token states (collapse) and
between texts' mean-pooled states (texts alike)."""

from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F

from pretrainer.config import ArchConfig
from pretrainer.evaluation.representation import representation_check, sequence_cosine, token_cosine
from pretrainer.models import build_body

ARCH = ArchConfig(name="encoder", n_layer=1, d_model=32, n_head=2, d_ff=64, max_len=32)


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(5, 100, (4, 12), generator=torch.Generator().manual_seed(seed))
    ids[1, 8:] = 0  # padding is never compared
    return ids, ids != 0


def test_the_mean_over_pairs_equals_the_brute_force_mean():
    torch.manual_seed(0)
    body = build_body(ARCH, 100)
    ids, real = batch()
    with torch.no_grad():
        unit = F.normalize(body.eval()(ids, real)[real], dim=-1)
    cos = unit @ unit.T
    count = unit.shape[0]
    expected = float((cos.sum() - cos.diagonal().sum()) / (count * (count - 1)))
    assert math.isclose(token_cosine(body, ids, real), expected, abs_tol=1e-5)


def test_a_body_that_maps_every_token_to_one_vector_is_flagged_and_a_fresh_one_is_not():
    torch.manual_seed(0)
    fresh, collapsed = build_body(ARCH, 100), build_body(ARCH, 100)
    with torch.no_grad():  # the final LayerNorm outputs its bias alone: one vector for every token
        collapsed.stack.final_norm.weight.zero_()
        collapsed.stack.final_norm.bias.normal_()
    ids, real = batch()
    check = representation_check(collapsed, fresh, ids, real)
    assert check["token_cosine"] > 0.99 and check["token_cosine_at_init"] < 0.8 and check["collapsed"]
    assert not representation_check(fresh, fresh, ids, real)["collapsed"]


def test_the_pooled_cosine_averages_real_tokens_only_and_compares_every_pair_of_texts():
    torch.manual_seed(0)
    body = build_body(ARCH, 100)
    ids, real = batch()
    with torch.no_grad():
        states = body.eval()(ids, real)
    pooled = torch.stack([states[row][real[row]].mean(0) for row in range(len(ids))])  # padding left out
    unit = F.normalize(pooled, dim=-1)
    cos = unit @ unit.T
    expected = float((cos.sum() - cos.diagonal().sum()) / (len(ids) * (len(ids) - 1)))
    assert math.isclose(sequence_cosine(body, ids, real), expected, abs_tol=1e-5)


def test_tokens_kept_apart_but_texts_pooled_alike_are_flagged_apart_from_collapse():
    """A body blind to the token ids: its states differ by position (tokens apart) but every
    text of one length pools to the same vector; a body that reads its tokens is not flagged."""
    torch.manual_seed(0)
    fresh, blind = build_body(ARCH, 100), build_body(ARCH, 100)
    with torch.no_grad():
        blind.tok_emb.weight.zero_()
    ids = torch.randint(5, 100, (6, 12), generator=torch.Generator().manual_seed(1))
    real = torch.ones_like(ids, dtype=torch.bool)
    check = representation_check(blind, fresh, ids, real)
    assert check["sequence_cosine"] > 0.999 > check["sequence_cosine_at_init"]
    assert check["sequences_alike"] and not check["collapsed"] and check["token_cosine"] < 0.6
    spread = build_body(ARCH, 100)  # another random body: texts as far apart as at initialisation, no closer
    with torch.no_grad():
        spread.tok_emb.weight.mul_(4)  # token identity dominates the states: texts differ more
    assert not representation_check(spread, fresh, ids, real)["sequences_alike"]


def test_the_pipeline_records_the_check(compose_config, tmp_path):
    from pretrainer.pipeline import train

    train(compose_config("finetune=none", "zero_shot.suite=none"), tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    check = summary["pretrain"]["representation"]
    assert -1 <= check["token_cosine"] <= 1 and -1 <= check["token_cosine_at_init"] <= 1
    assert isinstance(check["collapsed"], bool) and isinstance(check["sequences_alike"], bool)
    assert -1 <= check["sequence_cosine"] <= 1 and -1 <= check["sequence_cosine_at_init"] <= 1
