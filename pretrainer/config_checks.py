"""Checks of settings that only apply to one choice of another: part of the schema's
validation (`pretrainer.config`), kept here to keep that module short.

- A source's own keys given with another source (`data.paths=[...]` without `data=text_files`)
  are refused: nothing would read them, and the default corpus or tasks would run instead.
- The fine-tuning recipe against the body it starts from. The body is not always the config's
  own `arch`: `pretrainer finetune init=...` takes the checkpoint's, so it checks the recipe
  once the checkpoint is read, against that architecture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pretrainer.errors import ConfigError

if TYPE_CHECKING:
    from pretrainer.config import ArchConfig, DataConfig, FinetuneConfig

# source -> the keys only it reads (set to anything but their default, they choose it)
DATA_SOURCE_KEYS = {"text_files": ("paths",), "hub": ("name", "config", "revision", "streaming")}
TASK_SOURCE_KEYS = {"files": ("train_file", "dev_file", "test_file")}


def check_data_source(data: DataConfig) -> None:
    _check_source_keys("data", data, DATA_SOURCE_KEYS)
    if data.source == "text_files" and not data.paths:
        raise ConfigError("data=text_files needs data.paths=[file1.txt,file2.jsonl,...]")
    if data.source == "hub" and not data.name:
        raise ConfigError("data=hub needs data.name=<dataset name or local dataset directory>")


def check_task_source(finetune: FinetuneConfig) -> None:
    _check_source_keys("finetune", finetune, TASK_SOURCE_KEYS)
    if finetune.eval_size is None and finetune.source != "glue":
        raise ConfigError("finetune.eval_size=null (each GLUE task's own dev carve) is for finetune=glue/...")
    if finetune.source == "files" and finetune.tasks and not (finetune.train_file and finetune.test_file):
        raise ConfigError("finetune.source=files needs finetune.train_file and finetune.test_file "
                          "(and optionally finetune.dev_file)")


def _check_source_keys(group: str, section, keys_of: dict[str, tuple[str, ...]]) -> None:
    """Refuse a key that only another source reads; the message names the source that reads it."""
    for source, keys in keys_of.items():
        for key in keys:
            value = getattr(section, key)
            if source != section.source and value not in (None, False, []):
                raise ConfigError(f"{group}.{key}={value} is read by {group}={source}, and this run's "
                                  f"{group}.source is {section.source}: add {group}={source} (nothing would read "
                                  f"{group}.{key}, and the {section.source} {'corpus' if group == 'data' else 'tasks'} "
                                  "would be used)")


def check_finetune_body(finetune: FinetuneConfig, arch: ArchConfig, body: str = "the config's arch") -> None:
    """Refuse a recipe `arch` cannot run; `body` names where the architecture comes from."""
    if finetune.pooling == "decoder" and arch.name != "encoder_decoder":
        raise ConfigError(f"finetune.pooling=decoder (BART-style) needs an encoder_decoder body; {body} is "
                          f"arch={arch.name}")
    if finetune.mode == "aux_lm" and (arch.name != "decoder" or not arch.tie_embeddings):
        raise ConfigError("finetune.mode=aux_lm (GPT's auxiliary LM loss) needs a decoder with tied embeddings "
                          f"(the LM head is the input embedding); {body} is arch={arch.name} with "
                          f"arch.tie_embeddings={str(arch.tie_embeddings).lower()}")
    # Only a learned position table stops at max_len; sinusoids, rotary and relative biases extend.
    if finetune.max_length > arch.max_len and arch.positions == "learned":
        raise ConfigError(f"finetune.max_length={finetune.max_length} exceeds arch.max_len={arch.max_len} of {body} "
                          "(learned positions)")
