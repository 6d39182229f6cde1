"""The compute planner: parameter counts against published models, the FLOPs formula,
the budget, the expected wall time."""

from __future__ import annotations

import pytest
import torch

from pretrainer.config import ArchConfig
from pretrainer.models import build_body
from pretrainer.objectives import objective_class
from pretrainer.plan import plan_experiment


def body_params(vocab: int, **arch) -> int:
    with torch.device("meta"):
        body = build_body(ArchConfig(n_layer=12, d_model=768, n_head=12, d_ff=3072, **arch), vocab)
    return sum(p.numel() for p in body.parameters())


def test_base_presets_match_the_published_parameter_counts():
    # BERT-base: 109,482,240 with its pooler (768 x 768 + 768 = 590,592), which we do not have.
    bert = body_params(30522, name="encoder", norm_position="post", max_len=512, segment_embeddings=True)
    assert bert == 109_482_240 - 590_592
    # GPT-2 (124M): 1024 positions, vocabulary 50257, output matrix tied to the input.
    assert body_params(50257, name="decoder", norm_position="pre", max_len=1024) == 124_439_808
    # T5-base (v1.0): RMSNorm, no biases, ReLU, relative position bias, tied embeddings, 12 + 12 layers.
    t5 = body_params(32128, name="encoder_decoder", norm="rmsnorm", bias=False, activation="relu",
                     positions="t5_relative_bias")
    assert t5 == 222_903_552


def test_plan_counts_flops_as_documented(compose_config):
    cfg = compose_config("objective=clm", "trainer.max_steps=10", "plan.tokens_per_s=1000")
    plan = plan_experiment(cfg)
    arch, T, V = cfg.arch, cfg.data.block_size, plan["vocab_size"]
    expected = 6 * plan["body_non_embedding_params"] + 6 * arch.n_layer * T * arch.d_model + 6 * arch.d_model * V
    assert plan["flops_per_token"] == pytest.approx(expected)
    assert plan["tokens"] == 10 * cfg.trainer.batch_size * T
    assert plan["total_flops"] == pytest.approx(expected * plan["tokens"])
    assert plan["wall_time_s"] == pytest.approx(plan["tokens"] / 1000)
    # MLM projects only its masked 15%: the output term shrinks accordingly.
    mlm = plan_experiment(compose_config("objective=mlm", "trainer.max_steps=10"))
    assert mlm["wall_time_s"] is None
    mlm_projection = mlm["flops_per_token"] - 6 * mlm["body_non_embedding_params"] - 6 * arch.n_layer * T * arch.d_model
    assert mlm_projection == pytest.approx(6 * arch.d_model * mlm["vocab_size"] * 0.15)


def test_plan_counts_the_electra_generator_and_the_decoder_stack(compose_config):
    mlm = plan_experiment(compose_config("objective=mlm"))
    electra = plan_experiment(compose_config("objective=electra"))
    assert electra["generator_params"] > 0 and electra["flops_per_token"] > mlm["flops_per_token"]
    t5 = plan_experiment(compose_config("objective=t5_span"))
    assert t5["decoder_params"] > 0 and t5["arch"] == "encoder_decoder"


def test_plan_measures_throughput_when_asked(compose_config):
    plan = plan_experiment(compose_config("plan.measure_steps=2"))
    assert plan["tokens_per_s"] > 0 and plan["throughput_from"] == "measured over 2 steps"
    assert plan["wall_time_s"] == pytest.approx(plan["tokens"] / plan["tokens_per_s"])


def test_measured_throughput_times_the_training_step(compose_config, monkeypatch):
    """`plan.measure_steps` runs the trainer's own step (`_optimizer_step`, with the configured
    compile), warm-up untimed: for t5_span too (its sentinels are in the planned vocabulary)."""
    from pretrainer.training import loop

    calls = []
    real_step = loop._optimizer_step
    monkeypatch.setattr(loop, "_optimizer_step", lambda *args: calls.append(args[-1]) or real_step(*args))
    plan = plan_experiment(compose_config("objective=t5_span", "plan.measure_steps=2", "trainer.compile=true",
                                          "trainer.compile_backend=aot_eager"))
    assert calls == [0, 1, 2, 3]  # two warm-up steps under compile (compilation, the cached graph), two timed
    assert plan["tokens_per_s"] > 0


def test_plan_and_train_agree_on_the_steps_of_a_token_budget(compose_config, tmp_path):
    """t5_span reads longer raw blocks than its inputs: both count the input tokens."""
    from pretrainer.pipeline import train

    # 10,000 tokens: ceil(10000 / (8 x 32)) = 40 steps of input tokens; the raw blocks (35
    # tokens) would give ceil(10000 / (8 x 35)) = 36, so counting the wrong block shows here.
    cfg = compose_config("objective=t5_span", "finetune=none", "trainer.max_steps=null", "trainer.max_tokens=10000")
    assert objective_class(cfg.objective).raw_block_size(cfg.objective, cfg.data.block_size) > cfg.data.block_size
    planned = plan_experiment(cfg)
    summary = train(cfg, tmp_path / "run")
    assert summary["pretrain"]["steps"] == planned["steps"] == 40
    assert summary["pretrain"]["tokens"] == planned["tokens"] == 40 * 8 * 32


def test_plan_at_n_gpus_divides_the_steps_and_shards_the_state_under_fsdp(compose_config):
    """8 processes read 8 times the blocks per step: a token budget takes 1/8 of the steps and,
    at 8 x one GPU's rate, 1/8 of the time; FSDP2 holds 1/8 of the training state plus the
    units it gathers, DDP all of it."""
    budget = ["arch/size=base", "trainer.max_tokens=80000000", "plan.tokens_per_s=1000"]
    one = plan_experiment(compose_config(*budget, tiny=False))
    ddp = plan_experiment(compose_config(*budget, "plan.gpus=8", "trainer.parallel=ddp", tiny=False))
    fsdp = plan_experiment(compose_config(*budget, "plan.gpus=8", "trainer.parallel=fsdp", tiny=False))
    assert ddp["steps"] == pytest.approx(one["steps"] / 8, abs=1)
    assert ddp["tokens"] == pytest.approx(one["tokens"], rel=1e-3)
    assert ddp["wall_time_s"] == pytest.approx(one["wall_time_s"] / 8, rel=1e-3)
    assert one["state_bytes_per_gpu"] == 16 * one["params"]
    assert ddp["state_bytes_per_gpu"] == 20 * one["params"]
    assert one["params"] * 16 / 8 < fsdp["state_bytes_per_gpu"] < one["state_bytes_per_gpu"] / 2
    assert fsdp["memory_per_gpu_bytes"] == fsdp["state_bytes_per_gpu"] + fsdp["activation_bytes"]
    assert fsdp["activation_bytes"] == one["activation_bytes"]


def test_plan_counts_adafactors_factored_moments_as_nothing(compose_config):
    """Adafactor keeps a row and a column of second moments per matrix: weights and gradients only
    (checked on torch's Adafactor after a step: its state is a few percent of the weights)."""
    import torch

    from pretrainer.config import ArchConfig, TrainerConfig
    from pretrainer.models import build_body
    from pretrainer.training.optim import build_optimizer

    body = build_body(ArchConfig(), 500)  # the demo's 2 x 128 encoder: every weight gets a gradient
    optimizer = build_optimizer(body, TrainerConfig(optimizer="adafactor"))
    body(torch.randint(5, 500, (2, 16))).square().mean().backward()
    optimizer.step()
    state = sum(t.numel() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))
    assert state < 0.05 * sum(p.numel() for p in body.parameters())
    budget = ["arch/size=base", "trainer.max_tokens=80000000", "plan.tokens_per_s=1000"]
    t5 = plan_experiment(compose_config("objective=t5_span", *budget, tiny=False))
    assert t5["optimizer"] == "adafactor" and t5["state_bytes_per_gpu"] == 8 * t5["params"]
