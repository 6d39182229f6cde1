"""ELECTRA replaced-token detection (Clark et al. 2020).

A small generator (a masked LM whose width is `generator_fraction` of the body's, on the
body's token embeddings) fills the masked positions with tokens sampled from its own
predictions; the body, as discriminator, labels every real token original or replaced
(a sampled token equal to the original counts as original). Loss = generator MLM +
`discriminator_weight` (lambda = 50) x discriminator loss; both parts are reported. As in
the paper, the selected positions are all replaced by `[MASK]` in the generator's input
(`mask_token_prob: 1.0` in `conf/objective/electra.yaml`), and no gradient flows from the
discriminator into the sampling. Fine-tuning starts from the discriminator (the body);
the generator lives in the objective and is discarded.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from pretrainer.config import ArchConfig, ObjectiveConfig
from pretrainer.models import LMHead
from pretrainer.models.transformer import TransformerStack, init_weights, self_attention_mask
from pretrainer.objectives.base import ObjectiveOutput
from pretrainer.objectives.mlm import MaskedLM
from pretrainer.tokenization import SpecialIds


def generator_arch(arch: ArchConfig, fraction: float) -> ArchConfig:
    """The body's shape at `fraction` of its width: fewer heads of the same size."""
    n_head = max(1, round(arch.n_head * fraction))
    head_dim = arch.d_model // arch.n_head
    return replace(arch, d_model=n_head * head_dim, n_head=n_head, d_ff=max(1, round(arch.d_ff * fraction)))


class Generator(nn.Module):
    """Shared token embeddings (B, T) -> (B, T, C_g): a projection to the generator's width, then its own stack."""

    def __init__(self, arch: ArchConfig, embedding: nn.Embedding, fraction: float):
        super().__init__()
        self.cfg = generator_arch(arch, fraction)
        self.embedding = embedding  # the body's, shared (its gradient comes from both losses)
        self.project = nn.Linear(arch.d_model, self.cfg.d_model)
        self.stack = TransformerStack(self.cfg, self.cfg.n_layer)
        init_weights(self.stack, self.cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                document_ids: torch.Tensor | None = None) -> torch.Tensor:
        x = self.project(self.embedding(input_ids))
        mask, _ = self_attention_mask(False, input_ids.shape[1], attention_mask, document_ids=document_ids)
        return self.stack(x, mask, is_causal=False)


class Electra(MaskedLM):
    def __init__(self, cfg: ObjectiveConfig, body: nn.Module, special: SpecialIds, vocab_size: int):
        super().__init__(cfg, body, special, vocab_size)
        self.generator = Generator(body.cfg, body.tok_emb, cfg.generator_fraction)
        # The generator's MLM head maps its width back to the (tied) embedding width.
        self.head = LMHead(body.tok_emb, transform=True, tied=body.cfg.tie_embeddings,
                           init_std=body.cfg.init_std, in_dim=self.generator.cfg.d_model)
        d_model = body.cfg.d_model
        self.discriminator_head = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, 1))

    def collate(self, blocks, generator):
        batch = super().collate(blocks, generator)
        # The seed of this batch's sampling generator: samples are a function of (seed, step).
        return batch | {"sample_seed": torch.randint(0, 2**62, (1,), generator=generator)}

    def forward(self, body: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        attention_mask, selected, targets = batch.get("attention_mask"), batch["selected"], batch["targets"]
        document_ids = batch.get("document_ids")
        generator_hidden = self.generator(batch["input_ids"], attention_mask, document_ids)  # (B, T, C_g)
        generator_logits = self.head(generator_hidden[selected])  # (N, V)
        generator_loss = F.cross_entropy(generator_logits.float(), targets[selected]) if selected.any() \
            else generator_logits.sum() * 0.0
        corrupted, replaced = self.sample_replacements(generator_logits.detach(), batch)
        hidden = body(corrupted, attention_mask, document_ids=document_ids)  # (B, T, C)
        logits = self.discriminator_head(hidden).squeeze(-1)  # (B, T)
        scored = ~self.is_special.to(corrupted.device)[targets]  # special and padding tokens never count
        disc_loss = F.binary_cross_entropy_with_logits(logits[scored].float(), replaced[scored].float())
        loss = generator_loss + self.cfg.discriminator_weight * disc_loss
        return ObjectiveOutput(loss=loss, num_predictions=int(scored.sum()),
                               parts={"generator": generator_loss.detach(), "discriminator": disc_loss.detach()})

    def sample_replacements(self, generator_logits: torch.Tensor,
                            batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(corrupted ids, replaced) (B, T): generator samples at the selected positions."""
        targets, selected = batch["targets"], batch["selected"]
        logits = generator_logits.float()  # (N, V)
        logits[:, self.is_special.to(logits.device)] = float("-inf")  # never sample special tokens
        sampler = torch.Generator(device=logits.device).manual_seed(int(batch["sample_seed"]))
        samples = torch.multinomial(logits.softmax(-1), 1, generator=sampler).squeeze(1)  # (N,)
        corrupted = targets.clone()
        corrupted[selected] = samples
        return corrupted, corrupted != targets
