"""The GPU path: bf16 autocast with torch.compile (inductor) for every objective, and a short
`pretrainer train trainer=gpu`. Marked `gpu`: `pytest -m gpu` runs them where CUDA exists;
the default (CPU) run deselects them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pretrainer.training.device import autocast
from tests.test_static_step import ALL, batches_of, model_for, text_block_set

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("name", ALL)
def test_bf16_compiled_step_matches_eager_and_does_not_recompile(name):
    from torch._dynamo.testing import CompileCounterWithBackend

    device = torch.device("cuda")
    model = model_for(name).to(device)
    model.objective.static_shapes = True
    counter = CompileCounterWithBackend("inductor")
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    for batch in batches_of(model, text_block_set(np.random.default_rng(2)), steps=3):
        batch = {key: value.to(device) for key, value in batch.items()}
        with autocast(device, True):
            eager, out = model(batch), compiled(batch)
        out.loss.backward()
        assert torch.isfinite(out.loss)
        assert torch.allclose(out.loss.float(), eager.loss.float(), rtol=2e-2)  # bf16: about 3 significant digits
    assert counter.frame_count == 1


def test_short_gpu_run_trains_and_reports_compile_time(compose_config, tmp_path):
    from pretrainer.pipeline import train

    cfg = compose_config("trainer=gpu", "finetune=none", "trainer.max_steps=30", "trainer.batch_size=16",
                         "trainer.eval_every=15", "trainer.log_every=5", "trainer.checkpoint_every=0")
    summary = train(cfg, tmp_path / "run")
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
              if r.get("phase") == "pretrain"]
    assert losses[-1] < losses[0]
    assert summary["pretrain"]["compile_s"] > 0
