"""The fine-tuning recipe checked against the body it starts from. Part of the schema's
cross-group checks (`pretrainer.config`); here because the body is not always the config's
own `arch`: `pretrainer finetune init=...` takes the checkpoint's, so it checks the recipe once
the checkpoint is read, against that architecture."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pretrainer.errors import ConfigError

if TYPE_CHECKING:
    from pretrainer.config import ArchConfig, FinetuneConfig


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
