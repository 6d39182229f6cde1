"""The collapsed-representation check after pretraining: mean cosine between token states."""

from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F

from pretrainer.config import ArchConfig
from pretrainer.evaluation.representation import representation_check, token_cosine
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


def test_the_pipeline_records_the_check(compose_config, tmp_path):
    from pretrainer.pipeline import train

    train(compose_config("finetune=none", "zero_shot.suite=none"), tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    check = summary["pretrain"]["representation"]
    assert -1 <= check["token_cosine"] <= 1 and -1 <= check["token_cosine_at_init"] <= 1
    assert isinstance(check["collapsed"], bool)
