"""A sweep's size and varying keys reach its jobs through the environment Hydra sets around
each job, so jobs that a launcher runs in other processes (submitit, SLURM) are named and
counted as local ones are."""

from __future__ import annotations

import importlib.util
import json

import pytest

from pretrainer.cli_sweeps import SWEEP_ENV, running_sweep, sweep_env_override
from tests.test_pipeline import run_cli


def test_the_override_carries_the_job_count_and_the_varying_keys(monkeypatch):
    jobs = [["objective=mlm", "seed=0", "arch/size=tiny"], ["objective=mlm", "seed=1", "arch/size=tiny"],
            ["objective=clm", "seed=0", "arch/size=tiny"]]
    override = sweep_env_override(jobs)
    assert override == f"++hydra.job.env_set.{SWEEP_ENV}='3 objective seed'"
    value = override.split("=", 1)[1].strip("'")
    monkeypatch.setenv(SWEEP_ENV, value)
    assert running_sweep() == (3, ["objective", "seed"])


def test_outside_a_sweep_there_is_no_context(monkeypatch):
    monkeypatch.delenv(SWEEP_ENV, raising=False)
    assert running_sweep() == (None, [])
    monkeypatch.setenv(SWEEP_ENV, "4")  # a sweep where nothing varies (one job per seed list of one)
    assert running_sweep() == (4, [])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
                    reason="needs the slurm extra (hydra-submitit-launcher)")
def test_jobs_run_by_a_launcher_in_other_processes_are_named_by_what_varies(tmp_path):
    """submitit's local launcher runs each job in a process of its own, as SLURM would."""
    sweep = tmp_path / "sweep"
    result = run_cli("train", "-m", "hydra/launcher=submitit_local", "debug=fast", "seed=0,1", "finetune=none",
                     "zero_shot.suite=none", f"hydra.sweep.dir={sweep}", f"cache_dir={tmp_path / 'cache'}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summaries = [json.loads((sweep / str(job) / "summary.json").read_text()) for job in range(2)]
    assert [summary["run_name"] for summary in summaries] == ["seed=0", "seed=1"]
