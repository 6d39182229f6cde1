"""Scratch baselines are computed once per (task, recipe, architecture, data, seed, code) and
reused by later runs, e.g. the other jobs of a sweep over objectives."""

from __future__ import annotations

import json

from pretrainer.config import ArchConfig, FinetuneConfig
from pretrainer.finetune.classifier import EncodedExamples
from pretrainer.finetune.scratch_cache import ScratchCache, data_key

FT = ["finetune.tasks=[sentiment]", "finetune.train_size=40", "finetune.eval_size=30", "finetune.epochs=2",
      "data.num_documents=200"]


def scratch_lines(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("phase") == "finetune" and r["init"] == "scratch"]


def test_a_second_objective_reuses_the_scratch_baseline(compose_config, tmp_path, capsys):
    from pretrainer.pipeline import train

    first = train(compose_config("objective=mlm", *FT), tmp_path / "mlm")
    second = train(compose_config("objective=wwm", *FT), tmp_path / "wwm")
    assert "reused from the scratch cache" in " ".join(capsys.readouterr().out.split())  # console lines wrap
    reused, computed = second["finetune"]["sentiment"]["scratch"], first["finetune"]["sentiment"]["scratch"]
    assert [run.pop("reused") for run in reused["seeds"]] == [True]  # the summary says which runs were reused
    assert reused == computed
    assert second["finetune"]["sentiment"]["pretrained"] != first["finetune"]["sentiment"]["pretrained"]
    assert len(scratch_lines(tmp_path / "mlm")) == 2 and scratch_lines(tmp_path / "wwm") == []  # not re-run
    for run in ("mlm", "wwm"):  # the reused run's predictions are written all the same
        assert (tmp_path / run / "predictions" / "sentiment" / "scratch" / "seed0" / "test.jsonl").is_file()
    # A different recipe, or reuse turned off, computes the baseline again.
    train(compose_config("objective=wwm", *FT, "finetune.lr=2e-3"), tmp_path / "lr")
    train(compose_config("objective=wwm", *FT, "finetune.reuse_scratch=false"), tmp_path / "off")
    assert len(scratch_lines(tmp_path / "lr")) == 2 and len(scratch_lines(tmp_path / "off")) == 2


def test_the_key_follows_data_seed_recipe_architecture_and_device(tmp_path):
    arch = ArchConfig(name="encoder", n_layer=1, d_model=32, n_head=2, d_ff=64, max_len=64)
    data = EncodedExamples([[2, 5, 3]], [[0, 0, 0]], [1], ["a"])
    other = EncodedExamples([[2, 6, 3]], [[0, 0, 0]], [1], ["b"])
    cache = ScratchCache.of(tmp_path, FinetuneConfig(), arch, 100, "cpu", False)
    base = cache.path("t", data_key([data]), 0)
    assert base == ScratchCache.of(tmp_path, FinetuneConfig(save_predictions=False), arch, 100, "cpu", False).path(
        "t", data_key([data]), 0)  # what a run writes is not in the key
    key = data_key([data])
    assert len({base, cache.path("t", data_key([other]), 0), cache.path("t", key, 1),
                ScratchCache.of(tmp_path, FinetuneConfig(lr=1e-4), arch, 100, "cpu", False).path("t", key, 0),
                ScratchCache.of(tmp_path, FinetuneConfig(), arch, 101, "cpu", False).path("t", key, 0),
                ScratchCache.of(tmp_path, FinetuneConfig(), arch, 100, "cuda", True).path("t", key, 0)}) == 6
