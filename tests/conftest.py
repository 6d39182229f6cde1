"""Shared fixtures: compose configs as the CLI does, with tiny sizes and a temp cache."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hydra import compose, initialize_config_dir

from pretrainer.cli import CONF_DIR, to_config
from pretrainer.config import Config

# Small enough that a whole pipeline runs in seconds on 2 CPU cores.
TINY = [
    "arch.n_layer=1", "arch.d_model=32", "arch.n_head=2", "arch.d_ff=64", "arch.max_len=64",
    "data.block_size=32", "tokenizer.vocab_size=300", "trainer.batch_size=8", "trainer.max_steps=4",
    "trainer.eval_every=2", "trainer.eval_batches=2", "trainer.log_every=1", "trainer.warmup_steps=1",
    "trainer.num_threads=1", "zero_shot.per_phenomenon=10",
]


@pytest.fixture
def compose_config(tmp_path) -> Callable[..., Config]:
    """compose_config(*overrides, tiny=True) -> typed Config, caching under tmp_path."""

    def _compose(*overrides: str, tiny: bool = True) -> Config:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            raw = compose("config", overrides=[*(TINY if tiny else []), f"cache_dir={tmp_path / 'cache'}", *overrides])
        return to_config(raw)

    return _compose


@pytest.fixture
def text_corpus(tmp_path):
    """A small local .txt corpus: one document per line."""
    import random

    rng = random.Random(0)
    words = "the cat sat on a mat while dogs ran far and birds sang over green hills near blue lakes".split()
    path = tmp_path / "corpus.txt"
    documents = (" ".join(rng.choice(words) for _ in range(rng.randint(10, 40))) for _ in range(300))
    path.write_text("\n".join(documents) + "\n")
    return path


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """Hugging Face libraries offline, with their dataset cache under tmp_path: the hub path on local data."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    return tmp_path / "hf_cache"
