"""The training step under torch.compile: static shapes, no graph breaks, no recompiles,
the same losses as eager; and micro-batches built ahead of the step, identical to the
ones the loop would build itself.

Compilation here uses the `aot_eager` backend (dynamo's graph capture and AOT autograd,
without code generation), which finds every graph break and recompile in seconds on a
CPU; the inductor variant of the same check is marked slow.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from pretrainer.config import OBJECTIVE_ARCHS, ArchConfig, ObjectiveConfig
from pretrainer.data.blocks import BlockSet
from pretrainer.models import build_body
from pretrainer.objectives import build_objective
from pretrainer.objectives.base import IGNORE_INDEX, cap_selection, prediction_slots, slot_capacity
from pretrainer.objectives.electra import gumbel_noise
from pretrainer.tokenization import SpecialIds
from pretrainer.training.batches import BatchStream, MicroBatches
from pretrainer.training.loop import PretrainingModel
from tests.helpers import SPECIAL

ALL = ["mlm", "wwm", "span_mlm", "mlm_nsp", "mlm_sop", "electra", "clm", "prefix_lm", "t5_span", "bart"]
VOCAB = 500
SENTINELS = 40
WITH_SENTINELS = SpecialIds(**{**SPECIAL.__dict__, "sentinels": tuple(range(VOCAB, VOCAB + SENTINELS))})
PERIOD = SPECIAL.sentence_ends[0]


def text_block_set(rng: np.random.Generator, num_blocks: int = 64, length: int = 64) -> BlockSet:
    """A packed-corpus-like BlockSet: words of 1-3 tokens, periods, a [SEP] every ~20 tokens."""
    stream = rng.integers(SPECIAL.count + 1, VOCAB, size=(num_blocks, length - 1))
    stream[rng.random(stream.shape) < 0.08] = PERIOD
    stream[rng.random(stream.shape) < 1 / 20] = SPECIAL.sep
    starts = (rng.random(stream.shape) < 0.6) | np.isin(stream, [SPECIAL.sep, PERIOD])
    starts[:, 1:] |= np.isin(stream[:, :-1], [SPECIAL.sep, PERIOD])
    return BlockSet(stream, starts.astype(np.uint8), SPECIAL.cls, SPECIAL.sep)


def model_for(name: str, **objective_overrides) -> PretrainingModel:
    torch.manual_seed(0)
    arch = ArchConfig(name=OBJECTIVE_ARCHS[name][0], n_layer=1, d_model=16, n_head=2, d_ff=32, max_len=128,
                      dropout=0.0, segment_embeddings=name in ("mlm_nsp", "mlm_sop"))
    vocab = VOCAB + SENTINELS
    body = build_body(arch, vocab)
    return PretrainingModel(body, build_objective(ObjectiveConfig(name=name, **objective_overrides), body,
                                                  WITH_SENTINELS, vocab))


def batches_of(model: PretrainingModel, blocks: BlockSet, steps: int, batch_size: int = 4):
    data = MicroBatches(model.objective.collate, blocks, batch_size, grad_accum=1, seed=3)
    return [data[step] for step in range(steps)]


# ---------------------------------------------------------------- prediction slots


def test_prediction_slots_list_positions_in_row_major_order_and_pad_to_capacity():
    predict = torch.tensor([[False, True, False], [True, False, True]])
    targets = torch.tensor([[10, 11, 12], [13, 14, 15]])
    exact = prediction_slots(predict, targets, None)
    assert exact["predict_index"].tolist() == [1, 3, 5]
    assert exact["predict_targets"].tolist() == [11, 13, 15]
    padded = prediction_slots(predict, targets, 5)
    assert padded["predict_index"].tolist() == [1, 3, 5, 0, 0]
    assert padded["predict_targets"].tolist() == [11, 13, 15, IGNORE_INDEX, IGNORE_INDEX]
    with pytest.raises(ValueError, match="exceed the fixed capacity 2"):
        prediction_slots(predict, targets, 2)


def test_slot_capacity_covers_binomial_masking_and_capping_keeps_the_first():
    rng = np.random.default_rng(0)
    capacity = slot_capacity(4 * 64, 0.15)
    assert capacity % 8 == 0 and capacity <= 4 * 64
    counts = rng.binomial(4 * 64, 0.15, size=100_000)
    assert counts.max() < capacity  # 8 standard deviations above the mean: never reached in practice
    selected = torch.tensor([[True, True, False], [True, True, True]])
    capped = cap_selection(selected, 3)
    assert capped.tolist() == [[True, True, False], [True, False, False]]
    assert cap_selection(selected, 5) is selected


@pytest.mark.parametrize("name", ALL)
def test_fixed_capacity_slots_give_the_exact_loss(name):
    """The same batch with prediction slots padded to the capacity (as under compile) and
    without: equal losses and counts, so compiled and eager runs optimise the same thing."""
    model = model_for(name)
    blocks = text_block_set(np.random.default_rng(1)).gather(np.arange(4))
    exact = model(model.objective.collate(blocks, torch.Generator().manual_seed(5)))
    model.objective.static_shapes = True
    static_batch = model.objective.collate(blocks, torch.Generator().manual_seed(5))
    static = model(static_batch)
    assert torch.allclose(static.loss, exact.loss, rtol=1e-6, atol=1e-7)
    assert int(static.num_predictions) == int(exact.num_predictions) > 0
    if "predict_index" in static_batch:
        padding = static_batch["predict_targets"] == IGNORE_INDEX
        assert padding.any() or name in ("clm",)  # clm predicts every position: its capacity is exact


# ---------------------------------------------------------------- ELECTRA's sampler


def test_gumbel_noise_is_a_function_of_the_seed():
    seed = torch.tensor([123456789012345])
    first, again = gumbel_noise(seed, torch.Size((64, 50))), gumbel_noise(seed, torch.Size((64, 50)))
    assert torch.equal(first, again)
    assert not torch.equal(first, gumbel_noise(seed + 1, torch.Size((64, 50))))
    assert torch.isfinite(first).all()
    # Standard Gumbel: mean = Euler-Mascheroni 0.5772, variance pi^2 / 6 = 1.645 (3200 draws: s.e. 0.023 / 0.05)
    assert abs(float(first.mean()) - 0.5772) < 0.1 and abs(float(first.var()) - 1.645) < 0.25


def test_gumbel_max_samples_follow_the_softmax():
    """argmax(logits + Gumbel noise) is a draw from softmax(logits): frequencies over 20000
    rows within 5 standard errors of the probabilities."""
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, float("-inf")])
    rows = 20_000
    noise = gumbel_noise(torch.tensor([7]), torch.Size((rows, 5)))
    samples = (logits + noise).argmax(-1)
    frequencies = torch.bincount(samples, minlength=5).double() / rows
    probs = logits.softmax(-1).double()
    standard_error = (probs * (1 - probs) / rows).sqrt()
    assert frequencies[4] == 0  # a -inf logit (a special token) is never drawn
    assert ((frequencies - probs).abs() <= 5 * standard_error + 1e-12).all(), (frequencies, probs)


# ---------------------------------------------------------------- compile


def compile_counted(model: PretrainingModel) -> tuple[torch.nn.Module, CompileCounterWithBackend]:
    counter = CompileCounterWithBackend("aot_eager")
    torch._dynamo.reset()
    return torch.compile(model, backend=counter, fullgraph=True), counter  # fullgraph: a graph break is an error


@pytest.mark.parametrize("name", ALL)
def test_every_objective_compiles_to_one_graph_that_matches_eager_and_never_recompiles(name):
    model = model_for(name)
    model.objective.static_shapes = True
    compiled, counter = compile_counted(model)
    blocks = text_block_set(np.random.default_rng(2))
    for batch in batches_of(model, blocks, steps=3):  # different masks, spans and prefixes each step
        eager = model(batch)
        out = compiled(batch)
        out.loss.backward()
        assert torch.allclose(out.loss, eager.loss, rtol=1e-5, atol=1e-6), (float(out.loss), float(eager.loss))
        assert int(out.num_predictions) == int(eager.num_predictions)
        for part in eager.parts:
            assert torch.allclose(out.parts[part], eager.parts[part], rtol=1e-5, atol=1e-6)
    assert counter.frame_count == 1  # compiled once at the first step: nothing recompiled after warm-up


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_every_objective_under_inductor_matches_eager(name):
    """The real backend (generated C++ on the CPU): slow, so not in the default set."""
    model = model_for(name)
    model.objective.static_shapes = True
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    for batch in batches_of(model, text_block_set(np.random.default_rng(2)), steps=2):
        eager, out = model(batch), compiled(batch)
        out.loss.backward()
        assert torch.allclose(out.loss, eager.loss, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- batches ahead of the step


def stream_batches(model: PretrainingModel, blocks: BlockSet, workers: int, first_step: int, last_step: int):
    data = MicroBatches(model.objective.collate, blocks, batch_size=4, grad_accum=2, seed=9)
    with BatchStream(data, first_step, last_step, torch.device("cpu"), workers) as stream:
        return [stream.next() for _ in range((last_step - first_step) * 2)]


def assert_same_batches(first: list[dict], second: list[dict]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize("name", ["span_mlm", "t5_span"])
def test_worker_processes_build_the_batches_the_loop_builds(name):
    model = model_for(name)
    blocks = text_block_set(np.random.default_rng(4))
    in_process = stream_batches(model, blocks, workers=0, first_step=0, last_step=5)
    assert_same_batches(stream_batches(model, blocks, workers=2, first_step=0, last_step=5), in_process)
    # A resumed run's stream, started at step 3, continues the same batches.
    assert_same_batches(stream_batches(model, blocks, workers=2, first_step=3, last_step=5), in_process[6:])
    assert not torch.equal(in_process[0]["input_ids"], in_process[1]["input_ids"])


def test_data_workers_and_compile_leave_a_training_run_unchanged(compose_config, tmp_path):
    """Pretraining with collation in 2 worker processes gives the in-process run's losses bit for
    bit; compiled (aot_eager), the same losses within float tolerance, and the summary says
    how long compilation took."""
    from pretrainer.pipeline import train

    def losses(name: str, *overrides: str) -> tuple[list[float], dict]:
        run_dir = tmp_path / name
        summary = train(compose_config("finetune=none", "trainer.max_steps=6", "arch.dropout=0.0", *overrides),
                        run_dir)
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if r.get("phase") == "pretrain"], summary

    reference, summary = losses("reference")
    assert summary["pretrain"]["compile_s"] is None
    with_workers, _ = losses("workers", "trainer.data_workers=2")
    assert with_workers == reference
    compiled, summary = losses("compiled", "trainer.compile=true", "trainer.compile_backend=aot_eager")
    assert np.allclose(compiled, reference, rtol=1e-4, atol=1e-5), (compiled, reference)
    assert summary["pretrain"]["compile_s"] >= 0.0
