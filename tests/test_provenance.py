"""Provenance: the manifest, bit-identical re-runs on CPU, `pretrainer reproduce`."""

from __future__ import annotations

import json

from pretrainer.pipeline import train
from pretrainer.provenance import compare_results, config_fingerprint, read_manifest
from tests.test_pipeline import SMALL_DATA, read_jsonl, run_cli

TIMING = {"tokens_per_s"}  # the only per-line value that depends on the clock


def test_every_run_dir_has_a_manifest(compose_config, tmp_path):
    cfg = compose_config(*SMALL_DATA, "finetune.tasks=[topic]", "seed=3")
    summary = train(cfg, tmp_path / "run")
    manifest = read_manifest(tmp_path / "run")
    assert manifest["config_fingerprint"] == config_fingerprint(cfg)
    assert manifest["config"]["seed"] == 3
    assert manifest["seeds"]["trainer"] == 3 and manifest["seeds"]["finetune"] == [3]
    assert manifest["tokenizer_fingerprint"] == summary["tokenizer"]["fingerprint"]
    assert len(manifest["data_fingerprint"]) == 16
    assert manifest["git"]["commit"] is None or len(manifest["git"]["commit"]) == 40
    assert manifest["packages"]["torch"] and manifest["hardware"]["cpu_count"] >= 1 and manifest["command"]


def test_same_seed_on_cpu_gives_identical_metrics(compose_config, tmp_path):
    cfg = compose_config(*SMALL_DATA, "finetune.tasks=[sentiment]", "finetune.reuse_scratch=false")  # both compute
    runs = [read_jsonl(train(cfg, tmp_path / name) and tmp_path / name / "metrics.jsonl") for name in ("a", "b")]
    strip = [[{k: v for k, v in line.items() if k not in TIMING} for line in run] for run in runs]
    assert strip[0] == strip[1] and len(strip[0]) >= 8


def test_compare_results_is_exact_on_the_same_machine_and_tolerant_elsewhere():
    original = {"pretrain": {"final_eval_loss": 5.0, "tokens_per_s": 100.0}, "finetune": {"t": {"test": {"a": 0.5}}}}
    rerun = {"pretrain": {"final_eval_loss": 5.01, "tokens_per_s": 50.0}, "finetune": {"t": {"test": {"a": 0.52}}}}
    assert len(compare_results(original, rerun, exact=True)) == 2  # timing is never compared
    assert compare_results(original, rerun, exact=False) == []  # 0.2% on the loss, 0.02 on the score


def test_reproduce_confirms_a_run_and_detects_a_changed_result(compose_config, tmp_path):
    run = tmp_path / "run"
    train(compose_config(*SMALL_DATA, "finetune.tasks=[topic]"), run)
    same = run_cli("reproduce", str(run), cwd=tmp_path)
    assert same.returncode == 0, same.stderr[-2000:]
    assert "identical" in same.stdout and (tmp_path / "run-reproduced" / "summary.json").is_file()
    summary = json.loads((run / "summary.json").read_text())
    summary["finetune"]["topic"]["pretrained"]["test"]["accuracy"] += 0.01  # a deliberately changed result
    (run / "summary.json").write_text(json.dumps(summary))
    changed = run_cli("reproduce", str(run), "--out", str(tmp_path / "again"), cwd=tmp_path)
    assert changed.returncode == 1 and "finetune/topic/pretrained/test/accuracy" in changed.stderr
