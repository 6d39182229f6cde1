"""Device/precision choice and the token budget (no GPU needed)."""

from __future__ import annotations

import math

import pytest
import torch

from pretrainer.config import ConfigError, TrainerConfig
from pretrainer.training.device import resolve_device, use_bf16
from pretrainer.training.loop import step_generator, total_steps


def test_auto_device_is_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_asking_for_cuda_without_it_is_a_clear_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")


def test_auto_precision_is_bf16_on_cuda_and_fp32_on_cpu():
    assert use_bf16("auto", torch.device("cuda")) and not use_bf16("auto", torch.device("cpu"))
    assert use_bf16("bf16", torch.device("cpu")) and not use_bf16("fp32", torch.device("cuda"))


def test_token_budget_wins_over_steps_and_rounds_up():
    cfg = TrainerConfig(batch_size=4, grad_accum=2, max_steps=5, max_tokens=1000)
    assert total_steps(cfg, block_size=32) == 4  # 1000 / (4 * 2 * 32) = 3.9 -> 4
    assert total_steps(TrainerConfig(max_steps=7), block_size=32) == 7


def test_step_generators_are_reproducible_and_independent():
    a = torch.rand(4, generator=step_generator(0, 0, 5, 0))
    assert torch.equal(a, torch.rand(4, generator=step_generator(0, 0, 5, 0)))
    assert not torch.equal(a, torch.rand(4, generator=step_generator(0, 0, 6, 0)))
    assert not torch.equal(a, torch.rand(4, generator=step_generator(1, 0, 5, 0)))


def test_flops_budget_becomes_steps_through_the_planners_count(compose_config, tmp_path):
    from pretrainer.pipeline import train
    from pretrainer.plan import model_cost

    cfg = compose_config("finetune=none", "data.num_documents=200", "trainer.max_flops=2e10")
    summary = train(cfg, tmp_path / "run")
    budget = summary["pretrain"]["budget"]
    per_token = model_cost(cfg, summary["tokenizer"]["vocab_size"])[1]
    tokens_per_step = cfg.trainer.batch_size * cfg.data.block_size
    assert budget["kind"] == "flops" and budget["flops_per_token"] == per_token
    assert summary["pretrain"]["steps"] == math.ceil(2e10 / per_token / tokens_per_step)
    assert budget["flops"] >= 2e10 > budget["flops"] - per_token * tokens_per_step  # one step at most over
    with pytest.raises(ValueError, match="FLOPs per token"):
        total_steps(cfg.trainer, cfg.data.block_size)


def test_adafactor_steps_each_weight_by_lr_times_its_own_scale():
    """T5's optimizer: a step's size follows the weight's RMS (AdamW moves every weight by about lr)."""
    from torch import nn

    from pretrainer.training.optim import build_optimizer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    with torch.no_grad():
        model[0].weight.mul_(10.0)  # (8, 8): RMS 10x the other's
    before = [layer.weight.detach().clone() for layer in model]
    optimizer = build_optimizer(model, TrainerConfig(optimizer="adafactor", lr=1e-2, weight_decay=0.0))
    assert isinstance(optimizer, torch.optim.Adafactor)
    model(torch.randn(4, 8)).square().sum().backward()
    optimizer.step()
    moved = [float((layer.weight.detach() - old).norm() / old.norm()) for layer, old in zip(model, before, strict=True)]
    assert 0.5 < moved[0] / moved[1] < 2  # about the same relative step for both (AdamW's: about 1/10)
    assert isinstance(build_optimizer(model, TrainerConfig()), torch.optim.AdamW)
