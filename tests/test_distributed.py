"""Data-parallel pretraining in 2 CPU processes (gloo), against 1 process with the same global
batch: the same losses, every block read once per epoch, signals agreed on, exact resume on
the same or another world size, from DDP and FSDP2 (sharded) checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrainer import pipeline
from pretrainer.data.blocks import BlockSet
from pretrainer.launch import expand_nodelist, launch_environment, launched_distributed
from pretrainer.training.batches import MicroBatches
from pretrainer.training.checkpoint import body_state_dict, load_checkpoint
from tests.distributed_helpers import DIST_RUN, compose_run, pretrain_losses, run_ranks

TOLERANCE = 2e-5  # the same arithmetic, summed in another order across processes
SIGTERM_EXIT = 128 + signal.SIGTERM


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache) -> Path:
    """One process, grad_accum=2: the global batch of 2 processes with grad_accum=1."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    pipeline.train(compose_run(f"cache_dir={cache}", "trainer.grad_accum=2"), run_dir)
    return run_dir


def assert_same_losses(run_dir: Path, reference: Path) -> None:
    found, expected = pretrain_losses(run_dir), pretrain_losses(reference)
    assert [(phase, step) for phase, step, _ in found] == [(phase, step) for phase, step, _ in expected]
    np.testing.assert_allclose([loss for *_, loss in found], [loss for *_, loss in expected], rtol=0, atol=TOLERANCE)


# ---- launch environment -----------------------------------------------------------------------------------------


def test_slurm_nodelist_expands_ranges_and_keeps_zero_padding():
    assert expand_nodelist("gpu[01-03,07],login1") == ["gpu01", "gpu02", "gpu03", "gpu07", "login1"]
    assert expand_nodelist("node[9-11]") == ["node9", "node10", "node11"]
    assert expand_nodelist("a1,b2") == ["a1", "b2"]


def test_ranks_come_from_slurm_variables_and_every_task_agrees_on_the_rendezvous():
    job = {"SLURM_NTASKS": "16", "SLURM_JOB_NODELIST": "node[001-002]", "SLURM_JOB_ID": "4242"}
    tasks = [launch_environment({**job, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank % 8)})
             for rank in range(16)]
    assert {(t["MASTER_ADDR"], t["MASTER_PORT"], t["WORLD_SIZE"]) for t in tasks} == {("node001", "24242", "16")}
    assert [int(t["RANK"]) for t in tasks] == list(range(16))
    assert tasks[9]["LOCAL_RANK"] == "1"


def test_torchrun_variables_win_and_a_single_task_is_not_distributed():
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1",
                "SLURM_NTASKS": "8", "SLURM_PROCID": "5"}
    assert launch_environment(torchrun)["RANK"] == "1"
    assert not launched_distributed({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"})
    assert not launched_distributed({})


# ---- the global batch sequence ------------------------------------------------------------------------------------


def _blocks(num_blocks: int) -> BlockSet:
    stream = np.arange(num_blocks * 3, dtype=np.uint16).reshape(num_blocks, 3)  # block size 4: [CLS] + 3
    return BlockSet(stream, np.ones_like(stream, dtype=np.uint8), cls_id=60000, sep_id=60001)


def test_ranks_read_disjoint_slices_of_the_one_global_sequence():
    """2 ranks x grad_accum 1 read exactly the blocks of 1 rank x grad_accum 2, step by step, and
    over an epoch no block is read twice across the ranks (hashed sample ids)."""
    blocks, batch = _blocks(96), 4
    alone = MicroBatches(None, blocks, batch, 2, seed=3)
    ranks = [MicroBatches(None, blocks, batch, 1, seed=3, rank=r, world_size=2) for r in range(2)]
    steps = 96 // (batch * 2)  # one epoch
    seen = []
    for step in range(steps):
        split = [ranks[r].block_indices(step) for r in range(2)]
        together = [alone.block_indices(2 * step + micro) for micro in range(2)]
        assert all(np.array_equal(a, b) for a, b in zip(split, together, strict=True))
        seen += [hashlib.sha1(blocks.gather(ids).ids[row].tobytes()).hexdigest()
                 for ids in split for row in range(batch)]
    assert len(seen) == len(set(seen)) == 96


# ---- runs in 2 processes ------------------------------------------------------------------------------------------


def test_torchrun_ddp_matches_one_process_and_rank_0_alone_writes(tmp_path, cache, reference):
    """The CLI under torchrun: one run dir (rank 0's clock), the losses of 1 process with the same
    global batch, each metrics line once, the summary and manifest from rank 0."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "pretrainer.cli", "train", *DIST_RUN, f"cache_dir={cache}"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    run_dirs = [path.parent for path in (tmp_path / "runs").glob("*/*/summary.json")]
    assert len(run_dirs) == 1, list((tmp_path / "runs").rglob("*"))
    run_dir = run_dirs[0]
    assert_same_losses(run_dir, reference)
    assert (run_dir / "manifest.json").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    assert not (run_dir / ".hydra" / "incoming").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["pretrain"]["processes"] == 2
    assert summary["pretrain"]["tokens"] == 8 * 2 * 8 * 32


def test_a_sweep_under_torchrun_runs_every_job_on_all_ranks(tmp_path, cache):
    """The process group outlives a job (it cannot be joined twice on its port): the second
    job trains in 2 processes too, and rank 0 alone writes the sweep summary."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "pretrainer.cli", "train", "-m", *DIST_RUN, f"cache_dir={cache}", "trainer.max_steps=2",
               "trainer.lr=1e-3,2e-3"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = sorted((tmp_path / "multirun").glob("*/*/summary.json"))
    assert [path.parent.name for path in summaries] == ["0", "1"]
    assert all(json.loads(path.read_text())["pretrain"]["processes"] == 2 for path in summaries)
    assert result.stdout.count("sweep summary (also in") == 1


def test_fsdp_matches_one_process_and_writes_sharded_checkpoints(tmp_path, cache, reference):
    run_dir = tmp_path / "run"
    assert run_ranks(2, run_dir, f"cache_dir={cache}", "trainer.parallel=fsdp") == [0, 0]
    assert_same_losses(run_dir, reference)
    shards = run_dir / "checkpoints" / "step_00000008.dcp"
    assert sorted(p.name for p in shards.iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    payload = torch.load(run_dir / "checkpoints" / "step_00000008.pt", weights_only=True)
    assert "model" not in payload and payload["sharded"] == shards.name
    # What fine-tuning and export read: the whole body, gathered from the shards in this process.
    sharded = body_state_dict(load_checkpoint(run_dir / "checkpoints" / "step_00000008.pt"))
    whole = body_state_dict(load_checkpoint(reference / "checkpoints" / "step_00000008.pt"))
    assert sharded.keys() == whole.keys()
    for key, value in whole.items():
        torch.testing.assert_close(sharded[key], value, rtol=0, atol=1e-4)  # 8 AdamW steps amplify 1e-7s


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_compile_composes_with_ddp_and_fsdp(tmp_path, cache, reference, parallel):
    """torch.compile of the DDP wrapper / the FSDP2-sharded model (aot_eager: the graph capture
    without code generation, as on the CPU) trains as eager does."""
    run_dir = tmp_path / "run"
    assert run_ranks(2, run_dir, f"cache_dir={cache}", f"trainer.parallel={parallel}", "trainer.compile=true",
                     "trainer.compile_backend=aot_eager") == [0, 0]
    assert_same_losses(run_dir, reference)


def test_bf16_autocast_composes_with_fsdp(tmp_path, cache, reference):
    run_dir = tmp_path / "run"
    assert run_ranks(2, run_dir, f"cache_dir={cache}", "trainer.parallel=fsdp", "trainer.precision=bf16") == [0, 0]
    found, expected = pretrain_losses(run_dir), pretrain_losses(reference)
    np.testing.assert_allclose([loss for *_, loss in found], [loss for *_, loss in expected], atol=5e-3)
    assert [loss for *_, loss in found] != [loss for *_, loss in expected]  # bf16 arithmetic did run


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_a_signal_to_one_rank_stops_both_and_the_run_resumes_exactly(tmp_path, cache, reference, parallel):
    """Rank 1 alone gets SIGTERM during step 3: both ranks stop after it with one checkpoint;
    resumed in 2 processes, the run continues as if never stopped."""
    run_dir = tmp_path / "run"
    run = [f"cache_dir={cache}", f"trainer.parallel={parallel}"]
    assert run_ranks(2, run_dir, *run, signal_rank=1, signal_step=3) == [SIGTERM_EXIT, SIGTERM_EXIT]
    assert (run_dir / "checkpoints" / "step_00000004.pt").is_file()
    assert not (run_dir / "checkpoints" / "step_00000006.pt").exists()
    assert run_ranks(2, run_dir, *run, "resume=true") == [0, 0]
    assert_same_losses(run_dir, reference)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_a_two_process_checkpoint_resumes_in_one_process(tmp_path, cache, reference, parallel):
    """A different world size: 2 processes x grad_accum 1 stop at step 4; 1 process x grad_accum 2
    (the same global batch) continues exactly, from a DDP or a sharded FSDP2 checkpoint."""
    run_dir = tmp_path / "run"
    assert run_ranks(2, run_dir, f"cache_dir={cache}", f"trainer.parallel={parallel}", signal_rank=0,
                     signal_step=3) == [SIGTERM_EXIT, SIGTERM_EXIT]
    pipeline.train(compose_run(f"cache_dir={cache}", "trainer.grad_accum=2", "resume=true"), run_dir)
    assert_same_losses(run_dir, reference)


def test_zero_shot_points_under_ddp_are_rank_0s_alone_and_leave_training_as_it_was(tmp_path, cache, reference):
    """zero_shot.every in 2 processes: rank 0 scores while rank 1 waits at the next step's
    collective; the losses stay those of 1 process, each point is logged once, at its step."""
    run_dir = tmp_path / "run"
    assert run_ranks(2, run_dir, f"cache_dir={cache}", "zero_shot.every=2") == [0, 0]
    found = pretrain_losses(run_dir, phases=("pretrain", "pretrain_eval"))
    expected = pretrain_losses(reference)
    assert [(phase, step) for phase, step, _ in found] == [(phase, step) for phase, step, _ in expected]
    np.testing.assert_allclose([loss for *_, loss in found], [loss for *_, loss in expected], rtol=0, atol=TOLERANCE)
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in logged if record["phase"] == "zero_shot"] == [2, 4, 6]
    curve = json.loads((run_dir / "summary.json").read_text())["zero_shot"]["curve"]
    assert [point["step"] for point in curve] == [2, 4, 6, 8]


def test_resuming_with_another_global_batch_is_refused(tmp_path, cache, reference):
    """2 processes' checkpoint, resumed in 1 process with the same grad_accum: half the global
    batch; refused, naming grad_accum."""
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    from pretrainer.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.grad_accum.*16 blocks per step"):
        pipeline.train(compose_run(f"cache_dir={cache}", "trainer.grad_accum=1", "resume=true",
                                   "trainer.max_steps=10"), run_dir)


def test_srun_tasks_find_each_other_from_slurm_variables(tmp_path, cache, reference):
    """What `srun pretrainer train ...` starts (scripts/slurm/pretrain_2x8.sbatch): 2 tasks with only
    SLURM's variables; they derive their ranks and rendezvous and train as torchrun's would."""
    from pretrainer.launch import PORT_BASE, PORT_SPAN
    from tests.distributed_helpers import free_port

    run_dir = tmp_path / "run"
    job = {**os.environ, "OMP_NUM_THREADS": "1", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "localhost",
           "SLURM_JOB_ID": str(free_port(PORT_BASE, PORT_BASE + PORT_SPAN) - PORT_BASE)}  # its port: a free one
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        job.pop(key, None)
    command = [sys.executable, "-m", "pretrainer.cli", "train", *DIST_RUN, f"cache_dir={cache}",
               f"hydra.run.dir={run_dir}"]
    tasks = [subprocess.Popen(command, cwd=tmp_path, env={**job, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    outputs = [task.communicate(timeout=180) for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert_same_losses(run_dir, reference)
    assert "x 2 processes (ddp)" in outputs[0][0].replace("\n", "") and outputs[1][0] == ""  # rank 0 alone prints
