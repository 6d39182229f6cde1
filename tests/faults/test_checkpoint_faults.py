"""Damaged checkpoints: resume falls back to the newest good one and ends where an uninterrupted
run ends; an explicitly named bad checkpoint is a one-line error; saves that fail say why and
leave nothing behind."""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from pretrainer.errors import CheckpointError
from pretrainer.pipeline import train
from pretrainer.training import checkpoint as checkpoint_module
from pretrainer.training import loop
from pretrainer.training.checkpoint import (
    digest_file,
    list_checkpoints,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from tests.faults.conftest import (
    RUN,
    assert_one_line_error,
    finished_run,
    flip_bytes,
    flip_tensor_bytes,
    truncate_half,
)


def step_file(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:08d}.pt"


def interrupt_at(monkeypatch, stop_step: int) -> None:
    """Crash (like a kill) when the loop starts step `stop_step`, without a save."""
    real_step = loop._optimizer_step

    def crash(*args, **kwargs):
        if args[-1] == stop_step:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "_optimizer_step", crash)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shared_cache):
    """The final weights of the uninterrupted run (RUN: 8 steps, checkpoints every 2, keep 3)."""
    return finished_run(tmp_path_factory, shared_cache, "reference")


def interrupted_run(run_config, monkeypatch, run_dir: Path) -> None:
    """Checkpoints at steps 2, 4, 6, then a crash during step 7."""
    interrupt_at(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        train(run_config(), run_dir)
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(run_dir / "checkpoints")] == [
        "step_00000006.pt", "step_00000004.pt", "step_00000002.pt"]


FAULTS = {  # name -> damage done to the newest checkpoint (step 6)
    "16 flipped bytes": lambda path: flip_bytes(path),
    "truncated to half": truncate_half,
    "emptied": lambda path: path.write_bytes(b""),
    "not a zip": lambda path: path.write_bytes(b"\x00garbage" * 100),
    "sha256 file garbled": lambda path: digest_file(path).write_text("not a digest\n"),
    "sha256 file deleted, bytes flipped (zip CRC)": lambda path: (digest_file(path).unlink(), flip_tensor_bytes(path)),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_resume_falls_back_to_the_newest_good_checkpoint(fault, run_config, monkeypatch, reference, tmp_path,
                                                         capsys):
    run_dir = tmp_path / "run"
    interrupted_run(run_config, monkeypatch, run_dir)
    newest = step_file(run_dir, 6)
    FAULTS[fault](newest)
    capsys.readouterr()

    summary = train(run_config("resume=true"), run_dir)

    warning = capsys.readouterr().err
    assert str(newest) in warning and "using step_00000004.pt" in warning
    assert newest.with_name(newest.name + ".corrupt").exists()  # kept aside, not deleted
    assert summary["pretrain"]["steps"] == 8
    resumed, straight = resolve_checkpoint(str(run_dir))[1], resolve_checkpoint(str(reference))[1]
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


@pytest.mark.parametrize("fault", list(FAULTS))
def test_an_explicit_bad_checkpoint_is_a_one_line_error(fault, run_cli, reference, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(reference, copy)
    path = step_file(copy, 8)
    FAULTS[fault](path)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    result = run_cli("finetune", f"init={path}", "finetune.tasks=[topic]", f"hydra.run.dir={tmp_path / 'ft'}")
    assert_one_line_error(result, 2, str(path))
    assert path.exists()  # an explicit checkpoint is reported, never renamed


def test_a_deleted_newest_checkpoint_resumes_from_the_previous(run_config, monkeypatch, reference, tmp_path):
    run_dir = tmp_path / "run"
    interrupted_run(run_config, monkeypatch, run_dir)
    step_file(run_dir, 6).unlink()  # its .sha256 stays behind
    train(run_config("resume=true"), run_dir)
    assert torch.equal(resolve_checkpoint(str(run_dir))[1]["model"]["body.tok_emb.weight"],
                       resolve_checkpoint(str(reference))[1]["model"]["body.tok_emb.weight"])


def test_resume_with_every_checkpoint_bad_names_them_all(run_cli, run_config, monkeypatch, tmp_path):
    run_dir = tmp_path / "run"
    interrupted_run(run_config, monkeypatch, run_dir)
    for step in (2, 4, 6):
        flip_bytes(step_file(run_dir, step))
    result = run_cli("train", *RUN, "resume=true", f"hydra.run.dir={run_dir}")
    assert_one_line_error(result, 2, "no usable checkpoint", "step_00000002.pt", "step_00000004.pt",
                          "step_00000006.pt", warnings=2)  # one per checkpoint skipped on the way


def test_only_the_newest_checkpoints_are_kept(reference):
    names = sorted(p.name for p in (reference / "checkpoints").iterdir())
    assert names == [f"step_0000000{s}.pt{suffix}" for s in (4, 6, 8) for suffix in ("", ".sha256")]


def test_a_save_removes_temp_files_left_by_a_killed_save(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    leftover = directory / ".tmp-step_00000004.pt.12345"
    leftover.write_bytes(b"half a checkpoint")
    # FSDP2's staging directory of shards (sharded.save_shards), from a save killed at another step
    shards = directory / ".tmp-step_00000003.dcp"
    shards.mkdir()
    (shards / "__0_0.distcp").write_bytes(b"half a shard")
    save_checkpoint(directory, 5, {"model": {}}, keep=2)
    assert not leftover.exists() and not shards.exists()
    assert (directory / "step_00000005.pt").is_file()


def test_a_full_disk_is_named_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    directory = tmp_path / "checkpoints"
    save_checkpoint(directory, 1, {"model": {"w": torch.ones(3)}}, keep=2)

    def full_disk(*args, **kwargs):  # what torch's zip writer raises on ENOSPC
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4054")

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
    with pytest.raises(CheckpointError, match="no space left on the device") as error:
        save_checkpoint(directory, 2, {"model": {"w": torch.zeros(3)}}, keep=2)
    assert "step_00000002.pt" in str(error.value)
    assert sorted(p.name for p in directory.iterdir()) == ["step_00000001.pt", "step_00000001.pt.sha256"]
    assert torch.equal(load_checkpoint(directory / "step_00000001.pt")["model"]["w"], torch.ones(3))


def test_a_failed_save_during_a_run_is_one_line(run_cli, monkeypatch, tmp_path):
    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(checkpoint_module.torch, "save", read_only)
    result = run_cli("train", *RUN, f"hydra.run.dir={tmp_path / 'run'}")
    # warnings=1: the 8-step preset evaluates twice and says so (fewer than 3 evaluations)
    assert_one_line_error(result, 2, "could not write checkpoint", "Read-only file system", warnings=1)
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp-*"))


@pytest.mark.parametrize("numpy_module", ["numpy._core", "numpy.core"])  # as numpy 2 / numpy 1 pickled it
def test_a_checkpoint_of_the_previous_format_still_resumes(numpy_module, run_config, monkeypatch, reference,
                                                           tmp_path):
    """`checkpoints/last.pt` as earlier versions wrote it (numpy RNG state pickled as an array,
    no .sha256, a config without the newer keys) loads weights-only and resumes exactly."""
    import numpy as np

    run_dir = tmp_path / "run"
    interrupted_run(run_config, monkeypatch, run_dir)
    payload = load_checkpoint(step_file(run_dir, 4))
    numpy = payload["rng"]["numpy"]
    payload["rng"] = {"torch": payload["rng"]["torch"],
                      "numpy": (numpy["name"], numpy["key"].numpy().astype(np.uint32), numpy["pos"],
                                numpy["has_gauss"], numpy["cached_gaussian"])}
    payload["format"] = "pretrainer-checkpoint-v1"
    for group, key in [("trainer", "keep_checkpoints"), ("trainer", "nonfinite"), ("trainer", "max_skips"),
                       ("data", "decode_errors"), ("data", "verify_cache"), ("finetune", "decode_errors")]:
        del payload["config"][group][key]
    del payload["config"]["resume_allow_changes"], payload["data_fingerprint"]
    for key in ("skipped_steps", "consecutive_skips"):
        del payload["train_state"][key]
    for path in (run_dir / "checkpoints").iterdir():
        path.unlink()
    torch.save(payload, run_dir / "checkpoints" / "last.pt")
    rename_pickled_module(run_dir / "checkpoints" / "last.pt", b"numpy._core.multiarray",
                          numpy_module.encode() + b".multiarray")

    train(run_config("resume=true"), run_dir)
    resumed, straight = resolve_checkpoint(str(run_dir))[1], resolve_checkpoint(str(reference))[1]
    assert resumed["train_state"]["step"] == 8
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def rename_pickled_module(path: Path, old: bytes, new: bytes) -> None:
    """Rewrite a module name inside a torch zip's pickle (what an older numpy would have written)."""
    import io
    import zipfile

    with zipfile.ZipFile(path) as source:
        members = [(info.filename, source.read(info.filename)) for info in source.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as target:
        for name, data in members:
            target.writestr(name, data.replace(old, new) if name.endswith("data.pkl") else data)
    path.write_bytes(buffer.getvalue())


def test_a_member_name_damaged_into_bad_utf8_is_a_checkpoint_error(tmp_path):
    """Flipped bytes can land in a zip member's name: with the UTF-8 flag set, zipfile raises
    UnicodeDecodeError (not BadZipFile) while testing the CRCs; it must still be a CheckpointError."""
    path = tmp_path / "step_00000001.pt"
    torch.save({"format": "x", "weights": torch.zeros(4)}, path)
    data = bytearray(path.read_bytes())
    assert data[:4] == b"PK\x03\x04"  # the first member's local header: flags at 6, its name at 30
    data[6] |= 0x08  # bit 11 (0x0800, little-endian high byte): the name is UTF-8
    data[30 + 1] = 0x9C  # a UTF-8 continuation byte where a character must start
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is not a readable checkpoint"):
        load_checkpoint(path)
