"""A sweep's size and varying keys reach its jobs through the environment Hydra sets around
each job, so jobs that a launcher runs in other processes (submitit, SLURM) are named and
counted as local ones are."""

from __future__ import annotations

import importlib.util
import json

import pytest

from pretrainer.cli_sweeps import (
    SWEEP_ENV,
    clear_outcomes,
    read_outcomes,
    running_sweep,
    sweep_dir_of,
    sweep_env_override,
    write_outcome,
)
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


def test_a_sweep_run_elsewhere_is_reported_from_the_outcomes_its_jobs_left(tmp_path):
    """submitit/SLURM jobs run in other processes: what finished, what failed and what never
    reported are read back from each job's outcome file, not from the launcher's memory."""
    sweep = tmp_path / "sweep"
    write_outcome(sweep / "1", {"job": 1, "error": "job 1 (seed=1): ConfigError: too short"})
    write_outcome(sweep / "0", {"job": 0, "overrides": "seed=0", "summary": {"run_name": "seed=0"}})
    finished, failed = read_outcomes(sweep, expected=3)  # job 2 was killed before it could write one
    assert [outcome["summary"]["run_name"] for outcome in finished] == ["seed=0"]
    assert failed == ["job 1 (seed=1): ConfigError: too short", f"1 of 3 jobs left no outcome in {sweep}/<job>/ "
                      "(killed, or never started: see the launcher's logs)"]
    write_outcome(sweep / "2", {"job": 2, "overrides": "seed=2", "summary": {"run_name": "seed=2"},
                                "error": "runs/x: diverged earlier: loss is nan"})  # skipped, still a failure
    finished, failed = read_outcomes(sweep, expected=3)
    assert [outcome["job"] for outcome in finished] == [0, 2] and failed[-1] == "runs/x: diverged earlier: loss is nan"
    clear_outcomes(sweep)  # a re-run of the sweep starts from none
    assert read_outcomes(sweep, expected=2) == ([], [f"2 of 2 jobs left no outcome in {sweep}/<job>/ "
                                                     "(killed, or never started: see the launcher's logs)"])
    assert sweep_dir_of(["-m", "hydra.sweep.dir=a/b", "seed=0,1", f"hydra.sweep.dir={sweep}"]) == sweep
    assert sweep_dir_of(["-m", "hydra.sweep.dir=multirun/${now:%H-%M}"]) is None  # only the jobs resolve it


def test_a_launcher_that_stops_on_a_killed_job_still_gets_the_sweep_reported(tmp_path, monkeypatch, capsys):
    """submitit's launcher raises (Hydra exits 1) when a job was killed: the jobs that finished
    are still summarised and the lost one named, from their outcome files."""
    from pretrainer import cli

    sweep = tmp_path / "sweep"

    def submitit_like(**_):
        def decorate(_job):
            def launch():  # job 0 ran in another process; job 1 was killed before writing its outcome
                summary = {"run_name": "seed=0", "pretrain": {"final_eval_loss": 3.5}, "wall_time_s": 9.0}
                write_outcome(sweep / "0", {"job": 0, "overrides": "seed=0", "summary": summary})
                raise SystemExit(1)
            return launch
        return decorate

    monkeypatch.setattr(cli.hydra, "main", submitit_like)
    for name in ("SWEEP_JOBS", "FAILED_JOBS", "SWEEP_DIR"):  # this process's own record: none, as under submitit
        monkeypatch.setattr(cli, name, [])
    with pytest.raises(SystemExit) as exited:
        cli.run_hydra("train", ["-m", "seed=0,1", "finetune=none", f"hydra.sweep.dir={sweep}"])
    assert exited.value.code == 1
    stderr = capsys.readouterr().err
    assert "1 of 2 jobs left no outcome" in stderr and "the launcher stopped (exit code 1)" in stderr
    assert "seed=0" in (sweep / "sweep_summary.md").read_text()


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
    assert "seed=0" in (sweep / "sweep_summary.md").read_text()  # written by the launching process
    # one job failing at run time (one document packs into no block): exit 1, and the failure named
    failing = run_cli("train", "-m", "hydra/launcher=submitit_local", "debug=fast", "data.max_documents=300,1",
                      "finetune=none", "zero_shot.suite=none", f"hydra.sweep.dir={tmp_path / 'failing'}",
                      f"cache_dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert failing.returncode == 1 and "1 job(s) of the sweep failed" in failing.stderr, failing.stderr[-2000:]
    assert "data.max_documents=1," in failing.stderr and "packs into no training block" in failing.stderr
