"""scripts/bench.py: our training step vs Hugging Face transformers at identical shapes."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from tests.test_scripts import SCRIPTS

pytest.importorskip("transformers")  # optional: `pip install 'pretrainer[hf]'`


def load_bench():
    """scripts/bench.py as a module (scripts/ is not a package), registered in sys.modules:
    its dataclasses resolve their annotations through it."""
    spec = importlib.util.spec_from_file_location("pretrainer_bench_script", SCRIPTS / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = load_bench()

# The two models have the same shapes, so their non-embedding parameter counts are equal:
# 0 parameters apart is the tolerance (one missing bias vector or norm would show).
PARAMETER_TOLERANCE = 0
WORKLOADS = tuple(bench.WORKLOADS)


def small_shape(workload: str) -> bench.Shape:
    """1 layer x 32 wide, 2 x 32 tokens (T5: 32 inputs -> 9 targets), 300 ids: seconds on one CPU core."""
    return bench.Shape(workload, "test", n_layer=1, d_model=32, n_head=2, d_ff=64, max_len=32, batch=2, block=32,
                       vocab=300)


def assert_same_parameters(ours: tuple[int, int], hf: tuple[int, int]) -> None:
    """(non-embedding, of them the decoder's) of both sides, equal within PARAMETER_TOLERANCE."""
    assert ours[0] > 0
    assert abs(ours[0] - hf[0]) <= PARAMETER_TOLERANCE, f"non-embedding parameters: ours {ours[0]:,}, HF {hf[0]:,}"
    assert abs(ours[1] - hf[1]) <= PARAMETER_TOLERANCE, f"decoder parameters: ours {ours[1]:,}, HF {hf[1]:,}"


@pytest.mark.parametrize("workload", WORKLOADS)
def test_one_row_times_both_sides_on_identical_shapes_and_writes_parseable_json(workload, tmp_path):
    torch.set_num_threads(1)
    settings = bench.Settings(device=torch.device("cpu"), warmup=2, steps=2, peak_tflops=1.0)
    rows = bench.run_benchmark([small_shape(workload)], [False], settings)

    assert len(rows) == 1
    row = rows[0]
    assert row.ours.tokens_per_s > 0 and row.hf.tokens_per_s > 0
    assert row.ratio == pytest.approx(row.ours.tokens_per_s / row.hf.tokens_per_s)
    assert 0 < row.mfu_ours and 0 < row.mfu_hf  # given a peak (1 TFLOP/s here), MFU is computed on CPU too
    assert row.collation_ms > 0 and row.ours.compile_s is None  # eager: nothing compiled
    assert all(torch.isfinite(torch.tensor([row.ours.last_loss, row.hf.last_loss])))
    assert_same_parameters((row.ours.non_embedding_params, row.ours.decoder_params),
                           (row.hf.non_embedding_params, row.hf.decoder_params))
    assert (row.ours.decoder_params > 0) == (workload == "t5")

    path = tmp_path / "bench.json"
    bench.write_json(path, rows, bench.notes(rows, settings), {"threads": 1})
    written = json.loads(path.read_text())
    assert written["rows"][0]["workload"] == workload
    assert written["rows"][0]["ours"]["tokens_per_s"] == pytest.approx(row.ours.tokens_per_s)
    assert any("MFU =" in line for line in written["notes"])


@pytest.mark.parametrize("size", ["tiny", "mini", "base"])
def test_preset_shapes_have_equal_non_embedding_parameters_on_both_sides(size):
    """Counted on the meta device (no memory), so the GPU shapes (GPT-2 124M, BERT-base,
    T5-base) are checked here too."""
    for workload in WORKLOADS:
        shape = bench.make_shape(workload, size)
        with torch.device("meta"):
            assert_same_parameters(bench.our_parameters(bench.our_model(shape, document_mask=False)),
                                   bench.hf_parameters(bench.hf_model(shape)))


def test_gpu_shapes_are_the_hf_models_pretraining_shapes():
    gpt2, bert, t5 = (bench.make_shape(name, "base") for name in ("gpt2", "bert", "t5"))
    assert (gpt2.batch, gpt2.block, gpt2.vocab, gpt2.max_len) == (16, 1024, 50304, 1024)
    assert (bert.batch, bert.block, bert.vocab) == (256, 128, 30522)
    assert (t5.batch, t5.block, t5.target, t5.vocab) == (64, 512, 114, 32128)
    assert bench.make_shape("t5", "tiny").target == 29  # the CPU shape: 128 inputs


def test_cli_prints_the_table_and_the_json_path(tmp_path, capsys):
    path = tmp_path / "out" / "rows.json"
    bench.main(["--device", "cpu", "--workloads", "gpt2", "--sizes", "tiny", "--vocab", "300", "--threads", "1",
                "--warmup", "1", "--steps", "1", "--json", str(path)])
    out = capsys.readouterr().out
    assert f"JSON: {path}" in out and "ours/HF" in out
    assert [row["mode"] for row in json.loads(path.read_text())["rows"]] == ["eager"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_shapes_with_compile():
    settings = bench.Settings(device=torch.device("cuda"), warmup=3, steps=3, peak_tflops=bench.H100_BF16_DENSE_TFLOPS,
                              data_workers=4)
    rows = bench.run_benchmark([bench.make_shape(name, "base") for name in WORKLOADS], [True], settings)
    for row in rows:
        assert row.ours.tokens_per_s > 0 and row.hf.tokens_per_s > 0
        assert 0 < row.mfu_ours < 1 and 0 < row.mfu_hf < 1
        assert row.ours.compile_s is not None and row.hf.compile_s is not None
        assert row.ours.peak_mem_mib > 0 and row.hf.peak_mem_mib > 0
        assert_same_parameters((row.ours.non_embedding_params, row.ours.decoder_params),
                               (row.hf.non_embedding_params, row.hf.decoder_params))
