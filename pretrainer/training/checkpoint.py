"""Checkpoints: written atomically, verified before use, loaded without running code.

A run keeps its newest `trainer.keep_checkpoints` checkpoints as `checkpoints/step_<step>.pt`,
each with a `step_<step>.pt.sha256` beside it (`sha256sum -c` reads it). The file is a
`torch.save` dict of tensors and plain Python values only, so it loads with
`torch.load(weights_only=True)`, which never unpickles arbitrary objects:

    format                 "pretrainer-checkpoint-v2"
    model                  state dict of the pretraining model: `body.*` and the objective's heads `objective.*`
                           (FSDP2 runs: `sharded` and `shard_files` name `step_<step>.dcp/` instead, see sharded.py)
    optimizer, scheduler   their state dicts
    train_state            TrainState as a dict (step, tokens seen, eval losses, skipped steps, ...)
    rng                    torch (CPU and CUDA), numpy and Python RNG states, as tensors and numbers
    config                 the resolved run config as a plain dict
    tokenizer_fingerprint  hash of the run's tokenizer.json; a checkpoint is only valid with it
    data_fingerprint       content hash of the pretraining corpus

Before a checkpoint is used its sha256 is compared with the recorded one (a file without
one, e.g. `last.pt` of earlier versions, gets the zip CRC check instead). `resume=true`
falls back to the newest good checkpoint and renames a bad one to `*.corrupt` (kept, not
deleted); an explicitly named checkpoint that fails is an error.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import random
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from pretrainer.errors import CheckpointError
from pretrainer.hashing import file_sha256, write_text_atomic
from pretrainer.loggers import warn

CHECKPOINT_FORMAT = "pretrainer-checkpoint-v2"
LEGACY_FORMAT = "pretrainer-checkpoint-v1"  # `last.pt` of earlier versions: numpy's RNG state pickled as an array
LEGACY_NAME = "last.pt"
STEP_FILE = re.compile(r"step_(\d+)\.pt")
TEMP_PREFIX = ".tmp-"
# What a legacy checkpoint's numpy RNG state needs besides tensors; rebuilding an array runs no user code.
# (numpy 2 renamed numpy.core to numpy._core: a file pickled under either names its own.)
_RECONSTRUCT = (getattr(np, "_core", None) or np.core).multiarray._reconstruct
NUMPY_ARRAY_GLOBALS = [_RECONSTRUCT, (_RECONSTRUCT, "numpy.core.multiarray._reconstruct"),
                       (_RECONSTRUCT, "numpy._core.multiarray._reconstruct"), np.ndarray, np.dtype,
                       type(np.dtype(np.uint32))]


def checkpoint_file(directory: Path, step: int) -> Path:
    return directory / f"step_{step:08d}.pt"


def digest_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


# ---- saving -----------------------------------------------------------------------------------------------------


def save_checkpoint(directory: Path, step: int, payload: dict[str, Any], keep: int,
                    rng: dict[str, Any] | None = None) -> Path:
    """Write `payload` as the checkpoint of `step` and keep the newest `keep`; returns its path.

    `rng` is the RNG state to record (default: now). The digest is computed as the bytes are
    written (torch's zip writer writes sequentially) and written before the file is renamed into
    place, so a crash never leaves a checkpoint that looks verified but is not.
    """
    directory.mkdir(parents=True, exist_ok=True)
    remove_temp_files(directory)  # left by a save that was killed
    path = checkpoint_file(directory, step)
    tmp = directory / f"{TEMP_PREFIX}{path.name}.{os.getpid()}"
    payload = {"format": CHECKPOINT_FORMAT, "rng": rng or rng_state(), **payload}
    try:
        with open(tmp, "wb") as handle:
            writer = _HashingWriter(handle)
            torch.save(payload, writer)
            handle.flush()
            os.fsync(handle.fileno())
        write_text_atomic(digest_file(path), f"{writer.digest.hexdigest()}  {path.name}\n")
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:
        raise CheckpointError(f"could not write checkpoint {path}: {_write_failure(error, directory)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    prune_checkpoints(directory, keep)
    return path


class _HashingWriter:
    """A file-like object that hashes what passes through it on the way to `handle`."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def _write_failure(error: Exception, directory: Path) -> str:
    """A readable cause; torch reports a full disk as `unexpected pos` from its zip writer."""
    free = shutil.disk_usage(directory).free
    if getattr(error, "errno", None) == errno.ENOSPC or "unexpected pos" in str(error) or free < 1 << 20:
        return f"no space left on the device ({free / 2**20:.1f} MiB free); the previous checkpoint is intact"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def remove_temp_files(directory: Path) -> None:
    """Files and FSDP2 shard directories (`.tmp-step_<n>.dcp`) that a killed save left behind."""
    for leftover in directory.glob(f"{TEMP_PREFIX}*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints (quarantined `*.corrupt` files stay)."""
    for path in step_checkpoints(directory)[keep:]:
        path.unlink(missing_ok=True)
        digest_file(path).unlink(missing_ok=True)
        shutil.rmtree(path.with_suffix(".dcp"), ignore_errors=True)  # FSDP2's shards of that step


def step_checkpoints(directory: Path) -> list[Path]:
    """`step_*.pt` files, newest first."""
    found = [(int(m.group(1)), p) for p in directory.glob("step_*.pt") if (m := STEP_FILE.fullmatch(p.name))]
    return [path for _, path in sorted(found, reverse=True)]


def list_checkpoints(directory: Path) -> list[Path]:
    """Every checkpoint of a run, newest first; a legacy `last.pt` comes after the step files."""
    legacy = [directory / LEGACY_NAME] if (directory / LEGACY_NAME).is_file() else []
    return step_checkpoints(directory) + legacy if directory.is_dir() else []


# ---- verifying and loading --------------------------------------------------------------------------------------


def verify_checkpoint(path: Path) -> None:
    """Raise CheckpointError unless `path` holds the bytes that were saved."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    recorded = digest_file(path)
    if recorded.is_file():
        expected = (recorded.read_text().split() or [""])[0]
        found = file_sha256(path)
        if found != expected:
            raise CheckpointError(f"{path} is corrupt: its sha256 is {found[:16]}…, {recorded.name} "
                                  f"recorded {expected[:16] or 'nothing'}…")
        return
    try:  # no recorded digest (an older checkpoint, or a copied file): the zip's own CRCs
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
    # A damaged zip fails in many ways: bad magic, a member name that is no longer UTF-8
    # (UnicodeDecodeError, a ValueError), flag bits for features zipfile lacks, a short read.
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as error:
        raise unreadable(path, error) from None
    if bad_member is not None:
        raise CheckpointError(f"{path} is corrupt: CRC mismatch in {bad_member}")


def unreadable(path: Path, error: Exception) -> CheckpointError:
    """The error for a file that zipfile or torch.load could not read: the file and the first
    line of the reason."""
    return CheckpointError(f"{path} is not a readable checkpoint ({str(error).splitlines()[0]})")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Verify, then load with weights-only unpickling; any failure is a CheckpointError naming the file."""
    path = Path(path)
    verify_checkpoint(path)
    try:
        with torch.serialization.safe_globals(NUMPY_ARRAY_GLOBALS):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} was not loaded: it holds objects other than tensors and plain values "
                              f"({_unsafe_globals(path)}); checkpoints are loaded weights-only") from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise unreadable(path, error) from None
    if not isinstance(payload, dict) or payload.get("format") not in (CHECKPOINT_FORMAT, LEGACY_FORMAT):
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    if payload["format"] == LEGACY_FORMAT:
        payload["rng"] = _legacy_rng(payload["rng"])
    if "sharded" in payload:  # FSDP2's weights live in a shard directory beside the file
        from pretrainer.training.sharded import check_shards

        check_shards(path, payload)
        payload["checkpoint_dir"] = str(path.parent)
    return payload


def _unsafe_globals(path: Path) -> str:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - only a detail for the message; the load was refused either way
        return "unreadable pickle"
    return "references " + ", ".join(names[:5]) if names else "unsupported pickle"


def load_latest(directory: Path, quarantine: bool) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in `directory` that verifies and loads, or None when there is none.

    A bad one is skipped with a warning naming it (and, with `quarantine`, renamed to
    `*.corrupt` so that it is neither used nor pruned again); if every checkpoint is bad,
    a CheckpointError lists them.
    """
    problems = []
    candidates = list_checkpoints(directory)
    for i, path in enumerate(candidates):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as error:
            problems.append(str(error))
            if quarantine:
                _quarantine(path)
            if i + 1 < len(candidates):  # the last one's problem is in the error below
                warn(f"{error}; {'renamed it to *.corrupt; ' if quarantine else ''}using {candidates[i + 1].name}")
    if problems:
        raise CheckpointError(f"no usable checkpoint in {directory}: " + "; ".join(problems))
    return None


def _quarantine(path: Path) -> None:
    for file in (path, digest_file(path)):
        if file.exists():
            file.rename(file.with_name(file.name + ".corrupt"))


def resolve_checkpoint(init: str) -> tuple[Path, dict[str, Any], Path]:
    """(checkpoint file, its payload, its run dir) from a run dir (its newest good
    checkpoint) or an explicit checkpoint file (which must verify)."""
    path = Path(init).expanduser()
    if path.is_dir():
        found = load_latest(path / "checkpoints", quarantine=False)
        if found is None:
            raise CheckpointError(f"{path} has no checkpoint in {path / 'checkpoints'} (give a run dir or a .pt file)")
        return found[0], found[1], path
    if not path.is_file():
        raise CheckpointError(f"{path}: no such run dir or checkpoint file")
    return path, load_checkpoint(path), path.parent.parent


# ---- RNG state --------------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every global RNG, as tensors and plain values (weights-only loadable)."""
    return {**torch_rng_state(), "numpy": _numpy_state(np.random.get_state()), "python": random.getstate()}


def torch_rng_state() -> dict[str, Any]:
    """The global RNGs a training step draws from (dropout): torch's CPU and CUDA generators.
    Masks and data order come from per-step generators; numpy's and Python's global RNGs are
    not used by a step. Cheap enough to take before every step."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _numpy_state(state: tuple) -> dict[str, Any]:
    """numpy's legacy global RNG state (name, key array, pos, has_gauss, cached) with the key as a tensor."""
    name, key, pos, has_gauss, cached = state
    return {"name": name, "key": torch.from_numpy(key.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
            "cached_gaussian": cached}


def restore_rng(payload: dict[str, Any]) -> None:
    state = payload["rng"]
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():  # a machine with fewer GPUs restores those it has
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["key"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    if state.get("python") is not None:
        random.setstate(_as_tuples(state["python"]))


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _legacy_rng(state: dict[str, Any]) -> dict[str, Any]:
    return {"torch": state["torch"], "numpy": _numpy_state(state["numpy"])}


def body_state_dict(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The body's weights alone (what fine-tuning starts from)."""
    prefix = "body."
    return {k[len(prefix):]: v for k, v in model_state(payload).items() if k.startswith(prefix)}


def model_state(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The pretraining model's whole state dict, also from a sharded (FSDP2) checkpoint."""
    if "sharded" not in payload:
        return payload["model"]
    from pretrainer.training.sharded import full_model_state

    return full_model_state(Path(payload["checkpoint_dir"]) / payload["sharded"])
