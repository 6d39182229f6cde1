"""Resume tells the truth: a changed config is refused with the keys named (or accepted and
recorded as an amendment), the metrics log holds each step once, one process per run dir,
reproductions in fresh dirs, and an interrupted sweep resumes its unfinished job."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pretrainer.cli_sweeps import stable_sweep_dir
from pretrainer.errors import Interrupted, RunDirError
from pretrainer.pipeline import train
from pretrainer.provenance import read_manifest, reproduction_stages
from pretrainer.run_dir import hold_run_dir
from pretrainer.training import loop
from pretrainer.training.optim import lr_multiplier
from tests.faults.conftest import RUN, assert_one_line_error, finished_run


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def pretrain_steps(run_dir: Path, phase: str = "pretrain") -> list[int]:
    return [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["phase"] == phase]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, shared_cache) -> Path:
    """A finished RUN (8 steps); tests work on copies of it."""
    return finished_run(tmp_path_factory, shared_cache, "finished")


@pytest.fixture
def copy_of(finished, tmp_path) -> Path:
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


CHANGES = {  # override -> what the refusal names
    "trainer.lr=0.01": "trainer.lr (0.002 -> 0.01)",
    "trainer.max_steps=10": "trainer.max_steps (8 -> 10)",
    "seed=1": "seed (0 -> 1)",
    "arch.n_layer=2": "arch.n_layer (1 -> 2)",
    "objective.mask_prob=0.3": "objective.mask_prob (0.15 -> 0.3)",
    "trainer.batch_size=4": "trainer.batch_size (8 -> 4)",
    "tokenizer.vocab_size=400": "tokenizer.vocab_size (300 -> 400)",
    "finetune=synthetic": "finetune.tasks ([] -> ['topic'",
}


@pytest.mark.parametrize("override", list(CHANGES))
def test_a_changed_config_is_refused_naming_the_key(override, run_cli, copy_of, shared_cache):
    before = snapshot(copy_of)
    tokenizers_before = sorted((shared_cache / "tokenizers").iterdir())
    result = run_cli("train", *RUN, override, "resume=true", f"hydra.run.dir={copy_of}")
    assert_one_line_error(result, 2, "resume refused", CHANGES[override], "resume_allow_changes=[")
    assert snapshot(copy_of) == before  # manifest, .hydra record, metrics, summary: untouched
    assert sorted((shared_cache / "tokenizers").iterdir()) == tokenizers_before  # refused before any work


def test_several_changes_are_all_named(run_cli, copy_of):
    result = run_cli("train", *RUN, "trainer.lr=0.01", "trainer.max_steps=10", "resume=true",
                     f"hydra.run.dir={copy_of}")
    assert_one_line_error(result, 2, "trainer.lr", "trainer.max_steps",
                          "resume_allow_changes=[trainer.max_steps,trainer.lr]")


def test_a_change_that_cannot_alter_results_needs_no_permission(run_cli, copy_of):
    result = run_cli("train", *RUN, "trainer.log_every=2", "trainer.keep_checkpoints=5", "resume=true",
                     f"hydra.run.dir={copy_of}")
    assert result.code == 0, result.stderr[-2000:]


def test_another_optimizer_is_refused_even_when_allowed(run_cli, copy_of):
    """AdamW's moments cannot continue as Adafactor's: loading them would crash at the first step."""
    before = snapshot(copy_of)
    result = run_cli("train", *RUN, "trainer/optimizer=adafactor", "resume=true",
                     "resume_allow_changes=[trainer]", f"hydra.run.dir={copy_of}")
    assert_one_line_error(result, 2, "resume refused", "trainer.optimizer=adamw", "trainer/optimizer=adamw")
    assert snapshot(copy_of) == before


def test_an_allowed_change_is_an_amendment_not_a_rewrite(run_cli, copy_of):
    result = run_cli("train", *RUN, "trainer.max_steps=10", "resume=true",
                     "resume_allow_changes=[trainer.max_steps]", f"hydra.run.dir={copy_of}")
    assert result.code == 0, result.stderr[-2000:]
    manifest = json.loads((copy_of / "manifest.json").read_text())
    assert manifest["config"]["trainer"]["max_steps"] == 8  # what the run started with
    amendment = manifest["resumes"][-1]
    assert amendment["from_step"] == 8 and amendment["changes"] == {"trainer.max_steps": {"from": 8, "to": 10}}
    assert pretrain_steps(copy_of) == list(range(1, 11))


def test_an_allowed_lr_change_takes_effect(run_cli, run_config, monkeypatch, tmp_path):
    run_dir = tmp_path / "run"
    crash_at(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        train(run_config(), run_dir)
    monkeypatch.undo()
    train(run_config("trainer.lr=0.001", "resume=true", "resume_allow_changes=[trainer.lr]"), run_dir)
    logged = {r["step"]: r["lr"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["phase"] == "pretrain"}
    factor = lr_multiplier("cosine", 1, 8, 0.1)
    assert logged[6] == pytest.approx(0.002 * factor(6))  # before the resume
    assert logged[7] == pytest.approx(0.001 * factor(7)) and logged[8] == pytest.approx(0.001 * factor(8))


def test_an_allowed_architecture_change_is_a_clear_error_that_records_nothing(run_cli, copy_of):
    before = snapshot(copy_of)
    result = run_cli("train", *RUN, "arch.n_layer=2", "resume=true", "resume_allow_changes=[arch.n_layer]",
                     f"hydra.run.dir={copy_of}")
    assert_one_line_error(result, 2, "do not fit this model")
    assert snapshot(copy_of) == before  # no amendment in the manifest, metrics not cut


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run dir but the lock, by relative path."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_a_successful_resume_keeps_the_original_hydra_record(run_cli, copy_of):
    original = (copy_of / ".hydra" / "overrides.yaml").read_text()
    result = run_cli("train", *RUN, "trainer.log_every=2", "resume=true", f"hydra.run.dir={copy_of}")
    assert result.code == 0, result.stderr[-2000:]
    assert (copy_of / ".hydra" / "overrides.yaml").read_text() == original
    later = list((copy_of / ".hydra" / "later").glob("*/overrides.yaml"))
    assert len(later) == 1 and "resume=true" in later[0].read_text()


def test_a_changed_corpus_is_refused_then_packed_with_the_runs_tokenizer(run_cli, tmp_path):
    lines = [" ".join(f"w{(i * 7 + j) % 50}" for j in range(20)) for i in range(300)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n")
    run = ["train", *RUN, "data=text_files", f"data.paths=[{corpus}]", f"cache_dir={tmp_path / 'cache'}",
           f"hydra.run.dir={tmp_path / 'run'}"]
    assert run_cli(*run).code == 0
    tokenizer = (tmp_path / "run" / "tokenizer" / "tokenizer.json").read_text()
    corpus.write_text("\n".join(lines + ["an added line with new words"] * 40) + "\n")
    refused = run_cli(*run, "resume=true")
    assert_one_line_error(refused, 2, "the pretraining corpus changed", "resume_allow_changes=[data]")
    assert not (tmp_path / "cache" / "tokenizers").exists() or \
        len(list((tmp_path / "cache" / "tokenizers").iterdir())) == 1  # refused before training a tokenizer
    accepted = run_cli(*run, "resume=true", "trainer.max_steps=10", "resume_allow_changes=[data,trainer.max_steps]")
    assert accepted.code == 0, accepted.stderr[-2000:]
    assert (tmp_path / "run" / "tokenizer" / "tokenizer.json").read_text() == tokenizer  # the vocabulary stayed
    assert pretrain_steps(tmp_path / "run") == list(range(1, 11))
    manifest = read_manifest(tmp_path / "run")
    resumed = manifest["resumes"][-1]
    assert resumed["corpus"] == {"from": manifest["data_fingerprint"], "to": resumed["data_fingerprint"]}
    assert resumed["corpus"]["from"] != resumed["corpus"]["to"]
    with pytest.raises(RunDirError, match=r"corpus changed when it resumed from step \d+ .* cannot be replayed"):
        reproduction_stages(manifest)  # today's files would stand in for the corpus before the change


def test_a_resume_that_stops_early_leaves_no_stale_summary(run_config, copy_of, monkeypatch):
    crash_at(monkeypatch, 9)
    with pytest.raises(KeyboardInterrupt):
        train(run_config("trainer.max_steps=10", "resume=true", "resume_allow_changes=[trainer.max_steps]"), copy_of)
    assert not (copy_of / "summary.json").exists()  # the 8-step summary no longer describes this run


def test_a_run_dir_whose_checkpoints_all_failed_is_not_silently_restarted(run_cli, copy_of):
    for path in (copy_of / "checkpoints").glob("*.pt"):
        path.rename(path.with_name(path.name + ".corrupt"))
    resumed = run_cli("train", *RUN, "resume=true", f"hydra.run.dir={copy_of}")
    assert_one_line_error(resumed, 2, "has no usable checkpoint left", "step_00000008.pt.corrupt")
    fresh = run_cli("train", *RUN, f"hydra.run.dir={copy_of}")
    assert_one_line_error(fresh, 2, "already holds a run")


def test_moving_a_run_to_other_arithmetic_is_a_change(run_cli, copy_of):
    from pretrainer.training.checkpoint import load_checkpoint, save_checkpoint

    newest = copy_of / "checkpoints" / "step_00000008.pt"
    payload = load_checkpoint(newest)
    payload["execution"] = {"device": "cuda", "bf16": True}  # as if trained on a GPU with precision=auto
    rng = payload.pop("rng")
    payload.pop("format")
    save_checkpoint(newest.parent, 8, payload, keep=3, rng=rng)
    result = run_cli("train", *RUN, "resume=true", f"hydra.run.dir={copy_of}")
    assert_one_line_error(result, 2, "resume refused", "trainer.device ('cuda (resolved)' -> 'cpu (resolved)')",
                          "trainer.precision ('bf16 (resolved)' -> 'fp32 (resolved)')",
                          "resume_allow_changes=[trainer.device,trainer.precision]")
    allowed = run_cli("train", *RUN, "resume=true", "resume_allow_changes=[trainer.device,trainer.precision]",
                      f"hydra.run.dir={copy_of}")
    assert allowed.code == 0, allowed.stderr[-2000:]


def test_an_unknown_allowed_key_names_the_groups(run_cli, copy_of):
    result = run_cli("train", *RUN, "resume=true", "resume_allow_changes=[trainer.lrr]", f"hydra.run.dir={copy_of}")
    assert_one_line_error(result, 2, "'trainer.lrr' is not a config key", "trainer")


def crash_at(monkeypatch, step: int, error: BaseException | None = None) -> None:
    """Raise (KeyboardInterrupt: no save) when the loop starts step index `step`."""
    real_step = loop._optimizer_step

    def crash(*args, **kwargs):
        if args[-1] == step:
            raise error or KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "_optimizer_step", crash)


def test_the_metrics_log_holds_each_step_once_after_a_resume(run_config, monkeypatch, tmp_path):
    run_dir = tmp_path / "run"
    crash_at(monkeypatch, 7)  # steps 1-7 logged, checkpoint at 6
    with pytest.raises(KeyboardInterrupt):
        train(run_config(), run_dir)
    assert pretrain_steps(run_dir) == list(range(1, 8))
    monkeypatch.undo()
    train(run_config("resume=true"), run_dir)
    assert pretrain_steps(run_dir) == list(range(1, 9))
    assert pretrain_steps(run_dir, "pretrain_eval") == [4, 8]


def test_a_second_process_on_a_run_dir_is_refused(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    with hold_run_dir(run_dir):
        result = run_cli("train", *RUN, f"hydra.run.dir={run_dir}")
    assert_one_line_error(result, 2, f"{run_dir} is in use by pretrainer pid")
    assert not (run_dir / "checkpoints").exists()


def test_a_run_dir_holding_a_run_is_not_overwritten_without_resume(run_cli, copy_of):
    checkpoints = sorted((copy_of / "checkpoints").iterdir())
    result = run_cli("train", *RUN, f"hydra.run.dir={copy_of}")
    assert_one_line_error(result, 2, "already holds a run", "resume=true")
    assert sorted((copy_of / "checkpoints").iterdir()) == checkpoints


def test_reproduce_writes_a_fresh_dir_each_time(run_cli, finished, tmp_path):
    original = tmp_path / "run"
    shutil.copytree(finished, original)
    first, second = run_cli("reproduce", str(original)), run_cli("reproduce", str(original))
    assert first.code == second.code == 0, second.stderr[-2000:]
    assert "in " + str(tmp_path / "run-reproduced") + ":" in first.stdout
    assert str(tmp_path / "run-reproduced-2") in second.stdout and "resuming" not in second.stdout
    assert pretrain_steps(tmp_path / "run-reproduced-2") == list(range(1, 9))
    busy = run_cli("reproduce", str(original), "--out", str(tmp_path / "run-reproduced"))
    assert_one_line_error(busy, 2, "is not an empty dir")


REPRODUCE_FAULTS = {  # name -> (damage to a copy of a finished run, fragment of the error)
    "no summary": (lambda run: (run / "summary.json").unlink(), "did not finish"),
    "garbled manifest": (lambda run: (run / "manifest.json").write_text("{not json"), "is not valid JSON"),
    "no manifest": (lambda run: (run / "manifest.json").unlink(), "not a pretrainer run dir"),
}


@pytest.mark.parametrize("fault", list(REPRODUCE_FAULTS))
def test_reproduce_of_a_bad_run_dir_is_one_line(fault, run_cli, copy_of):
    damage, fragment = REPRODUCE_FAULTS[fault]
    damage(copy_of)
    assert_one_line_error(run_cli("reproduce", str(copy_of)), 2, fragment)


def test_reproduce_into_a_file_is_one_line(run_cli, copy_of, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    assert_one_line_error(run_cli("reproduce", str(copy_of), "--out", str(target)), 2, "is not an empty dir")


def test_reproduce_replays_a_run_resumed_with_changes(run_cli, copy_of):
    resumed = run_cli("train", *RUN, "trainer.max_steps=10", "resume=true",
                      "resume_allow_changes=[trainer.max_steps]", f"hydra.run.dir={copy_of}")
    assert resumed.code == 0
    result = run_cli("reproduce", str(copy_of))
    assert result.code == 0, result.stderr[-2000:]
    assert "2 legs" in result.stdout and "identical" in result.stdout


def test_resume_keeps_the_sweep_dir():
    args = ["-m", "objective=mlm,clm", "seed=0"]
    assert stable_sweep_dir("train", args) == stable_sweep_dir("train", [*args, "resume=true"])
    assert stable_sweep_dir("train", args) != stable_sweep_dir("train", [*args, "seed=1"])


def test_a_rerun_sweep_resumes_its_interrupted_job(run_cli, monkeypatch, tmp_path):
    sweep = tmp_path / "sweep"
    command = ["train", "-m", *RUN, "seed=0,1", f"hydra.sweep.dir={sweep}"]
    real_step = loop._optimizer_step
    calls = {"n": 0}

    def terminated_in_job_1_step_6(*args, **kwargs):  # job 0 takes 8 steps; job 1 dies at its 6th
        calls["n"] += 1
        if calls["n"] == 8 + 6:
            raise Interrupted(15, "terminated")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "_optimizer_step", terminated_in_job_1_step_6)
    stopped = run_cli(*command)
    assert stopped.code == 143 and (sweep / "0" / "summary.json").is_file()
    assert not (sweep / "1" / "summary.json").exists()
    monkeypatch.setattr(loop, "_optimizer_step", real_step)

    rerun = run_cli(*command)
    assert rerun.code == 0, rerun.stderr[-2000:]
    assert "already completed" in rerun.stdout and "resuming the unfinished job" in rerun.stdout
    assert pretrain_steps(sweep / "1") == list(range(1, 9))
    assert json.loads((sweep / "1" / "manifest.json").read_text())["resumes"][0]["from_step"] == 4
