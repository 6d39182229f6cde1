"""Scratch baselines computed once: a randomly initialised body fine-tuned on a task does not
depend on what was pretrained, so a sweep over objectives (or pretraining settings) would
repeat the same scratch runs in every job. Each scratch run's result is kept under
`<cache_dir>/scratch/<key>.json` and reused when the key matches.

The key covers everything the scratch result depends on: the fine-tuning recipe, the body's
architecture and vocabulary size, the encoded task (token ids and labels of every split, so
the tokenizer, the data and `max_length` are in it), the seed, the device type and
precision, the torch version, and the source of the code that builds and trains the body (a
code change invalidates the cache). `finetune.reuse_scratch=false` always recomputes. A reused run logs
no per-epoch lines to metrics.jsonl and says so on the console.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pretrainer.config import ArchConfig, FinetuneConfig
from pretrainer.finetune.classifier import EncodedExamples
from pretrainer.hashing import fingerprint, write_text_atomic
from pretrainer.provenance import RESULT_NEUTRAL_KEYS

# Recipe fields that change what a run writes, not what it computes: the fine-tuning keys that are
# result-neutral for the whole run (provenance), and those whose effect the key covers otherwise
# (the task's data, the seed) or that choose which runs happen.
NOT_IN_KEY = (*(key.removeprefix("finetune.") for key in RESULT_NEUTRAL_KEYS if key.startswith("finetune.")),
              "tasks", "seeds", "seed", "scratch_baseline", "hub_name", "train_file", "dev_file", "test_file",
              "decode_errors")
_PACKAGE = Path(__file__).resolve().parent.parent
CODE = ("finetune/classifier.py", "finetune/recipe.py", "finetune/metrics.py", "models", "training/optim.py",
        "training/device.py")


def code_fingerprint() -> str:
    """A hash of the source that builds, trains and scores a fine-tuned body."""
    digest = hashlib.sha256()
    for name in CODE:
        path = _PACKAGE / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def data_key(splits: list[EncodedExamples]) -> str:
    """A task's encoded data (ids, token types and labels of every split, in order), hashed:
    computed once per task, not once per seed."""
    return fingerprint([fingerprint(split.ids, split.type_ids, split.labels) for split in splits])


@dataclass(frozen=True)
class ScratchCache:
    directory: Path
    identity: str  # the recipe, architecture, vocabulary, device and code, hashed

    @classmethod
    def of(cls, cache_dir: Path, cfg: FinetuneConfig, arch: ArchConfig, vocab_size: int, device_type: str,
           bf16: bool) -> ScratchCache:
        import torch

        recipe = {k: v for k, v in asdict(cfg).items() if k not in NOT_IN_KEY}
        return cls(Path(cache_dir).expanduser() / "scratch",
                   fingerprint(recipe, arch, vocab_size, device_type, bf16, code_fingerprint(), torch.__version__))

    @classmethod
    def for_finetuning(cls, cache_dir: Path, cfg: FinetuneConfig, arch: ArchConfig, vocab_size: int,
                       device_type: str, bf16: bool) -> ScratchCache | None:
        """The cache a fine-tuning command uses; None when it keeps no scratch runs
        (`finetune.reuse_scratch=false`, or no scratch baseline): then nothing is hashed."""
        if not (cfg.reuse_scratch and cfg.scratch_baseline):
            return None
        return cls.of(cache_dir, cfg, arch, vocab_size, device_type, bf16)

    def path(self, task_name: str, data: str, seed: int) -> Path:
        """Where one scratch run is kept; `data`: the task's `data_key`."""
        return self.directory / f"{task_name}-seed{seed}-{fingerprint(self.identity, task_name, data, seed)}.json"

    def load(self, path: Path) -> dict[str, Any] | None:
        """A stored run, or None (absent, or unreadable: then it is simply recomputed)."""
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def store(self, path: Path, run: dict[str, Any]) -> None:
        write_text_atomic(path, json.dumps(run))
