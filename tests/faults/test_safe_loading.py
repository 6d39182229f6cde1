"""Malicious pickles through every path that loads a checkpoint: no code runs, the error is one line.

Each case plants a checkpoint whose pickle would create a marker file when unpickled (with a
correct sha256 beside it, so the hash check does not stop it) and runs one command on it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.conftest import RUN, assert_one_line_error, write_malicious_checkpoint


def plant_run(run_dir: Path, marker: Path) -> Path:
    """A run dir whose only checkpoint is malicious; returns the checkpoint."""
    checkpoint = run_dir / "checkpoints" / "step_00000002.pt"
    write_malicious_checkpoint(checkpoint, marker)
    return checkpoint


def resume_command(run_dir: Path, tmp_path: Path) -> list[str]:
    return ["train", *RUN, "resume=true", f"hydra.run.dir={run_dir}"]


def finetune_dir_command(run_dir: Path, tmp_path: Path) -> list[str]:
    return ["finetune", f"init={run_dir}", "finetune.tasks=[topic]", f"hydra.run.dir={tmp_path / 'ft'}"]


def finetune_file_command(run_dir: Path, tmp_path: Path) -> list[str]:
    return ["finetune", f"init={run_dir / 'checkpoints' / 'step_00000002.pt'}", "finetune.tasks=[topic]",
            f"hydra.run.dir={tmp_path / 'ft'}"]


def export_command(run_dir: Path, tmp_path: Path) -> list[str]:
    return ["export", str(run_dir), "--out", str(tmp_path / "hf")]


PATHS = {  # name -> (command builder, fragments of the one-line error)
    "resume=true": (resume_command, ["no usable checkpoint", "step_00000002.pt", "weights-only"]),
    "finetune init=<run dir>": (finetune_dir_command, ["no usable checkpoint", "weights-only"]),
    "finetune init=<file.pt>": (finetune_file_command, ["step_00000002.pt", "weights-only", "posix.system"]),
    "export RUN_DIR": (export_command, ["step_00000002.pt", "weights-only"]),
}


@pytest.mark.parametrize("path", list(PATHS))
def test_malicious_checkpoint_runs_no_code_on_any_path(path, run_cli, tmp_path):
    marker = tmp_path / "code-ran"
    run_dir = tmp_path / "run"
    plant_run(run_dir, marker)
    command, fragments = PATHS[path]
    result = run_cli(*command(run_dir, tmp_path))
    assert not marker.exists(), "unpickling ran the planted command"
    assert_one_line_error(result, 2, *fragments)


def test_malicious_checkpoint_through_the_embedding_neighbours_script(tmp_path):
    from scripts.embedding_neighbours import main

    marker = tmp_path / "code-ran"
    checkpoint = plant_run(tmp_path / "run", marker)
    with pytest.raises(SystemExit, match="weights-only") as stopped:
        main([str(checkpoint)])
    assert not marker.exists() and "\n" not in str(stopped.value)


def test_resume_quarantines_the_malicious_checkpoint_and_keeps_it(run_cli, tmp_path):
    marker = tmp_path / "code-ran"
    checkpoint = plant_run(tmp_path / "run", marker)
    run_cli(*resume_command(tmp_path / "run", tmp_path))
    assert not checkpoint.exists() and checkpoint.with_name(checkpoint.name + ".corrupt").is_file()
    assert not marker.exists()


def test_malicious_weights_in_a_hugging_face_dir_are_refused(run_cli, tmp_path):
    transformers = pytest.importorskip("transformers")
    marker = tmp_path / "code-ran"
    hf_dir = tmp_path / "hf"
    transformers.BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64).save_pretrained(hf_dir)
    write_malicious_checkpoint(hf_dir / "pytorch_model.bin", marker)
    result = run_cli("finetune", f"init={hf_dir}", "finetune.tasks=[topic]", f"hydra.run.dir={tmp_path / 'ft'}")
    assert not marker.exists()
    assert_one_line_error(result, 2, str(hf_dir), "weights-only")


def test_reproduce_never_loads_an_earlier_reproductions_checkpoint(run_cli, run_config, tmp_path):
    from pretrainer.pipeline import train

    original = tmp_path / "run"
    train(run_config(), original)
    marker = tmp_path / "code-ran"
    plant_run(tmp_path / "run-reproduced", marker)  # a planted "earlier reproduction"
    result = run_cli("reproduce", str(original))
    assert result.code == 0, result.stderr[-2000:]
    assert not marker.exists()
    assert "run-reproduced-2" in result.stdout and "identical" in result.stdout
    assert (tmp_path / "run-reproduced-2" / "summary.json").is_file()


@pytest.mark.parametrize("task", ["../../x", "/tmp/x", "a/b", ".hidden"])
def test_task_names_that_are_paths_are_refused(run_cli, tmp_path, task):
    data = tmp_path / "t.csv"
    data.write_text("text_a,label\nsome text,a\nother text,b\n")
    result = run_cli("train", *RUN, "finetune=files", f"finetune.tasks=[{task}]", f"finetune.train_file={data}",
                     f"finetune.test_file={data}", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_line_error(result, 2, "is not a task name")
    assert not (tmp_path / "x").exists() and not (tmp_path / "run" / "checkpoints").exists()
