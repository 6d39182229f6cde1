"""ELECTRA replaced-token detection (Clark et al. 2020).

A small generator (a masked LM whose width is `generator_fraction` of the body's, on the
body's token embeddings) fills the masked positions with tokens sampled from its own
predictions; the body, as discriminator, labels every real token original or replaced
(a sampled token equal to the original counts as original). Sampling is Gumbel-max over
counter-based noise seeded per batch, so it is static in shape and needs no host sync. Loss = generator MLM +
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
from pretrainer.models.attention import self_attention_pattern
from pretrainer.models.transformer import TransformerStack, init_weights
from pretrainer.objectives.base import IGNORE_INDEX, ObjectiveOutput, mean_cross_entropy
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
        return self.stack(x, self_attention_pattern(False, attention_mask, document_ids=document_ids))


class Electra(MaskedLM):
    def __init__(self, cfg: ObjectiveConfig, body: nn.Module, special: SpecialIds, vocab_size: int):
        super().__init__(cfg, body, special, vocab_size)
        self.generator = Generator(body.cfg, body.tok_emb, cfg.generator_fraction)
        # The generator's MLM head maps its width back to the (tied) embedding width.
        self.head = LMHead(body.tok_emb, transform=True, tied=body.cfg.tie_embeddings,
                           init_std=body.cfg.init_std, in_dim=self.generator.cfg.d_model)
        d_model = body.cfg.d_model
        self.discriminator_head = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, 1))
        self.register_buffer("never_sampled", self.is_special.clone(), persistent=False)  # (V,) on the model's device

    def collate(self, blocks, generator):
        batch = super().collate(blocks, generator)
        # The seed of this batch's sampling noise: samples are a function of (seed, step).
        sample_seed = torch.randint(0, 2**62, (1,), generator=generator)
        scored = ~self.is_special[batch["targets"]]  # (B, T): special and padding tokens are never judged
        return batch | {"sample_seed": sample_seed, "scored": scored}

    def forward(self, body: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        attention_mask, document_ids = batch.get("attention_mask"), batch.get("document_ids")
        generator_hidden = self.generator(batch["input_ids"], attention_mask, document_ids)  # (B, T, C_g)
        rows = generator_hidden.flatten(0, 1).index_select(0, batch["predict_index"])  # (K, C_g)
        generator_logits = self.head(rows)  # (K, V)
        generator_loss, _ = mean_cross_entropy(generator_logits, batch["predict_targets"])
        corrupted = self.sample_replacements(generator_logits.detach(), batch)  # (B, T)
        hidden = body(corrupted, attention_mask, document_ids=document_ids)  # (B, T, C)
        logits = self.discriminator_head(hidden).squeeze(-1).float()  # (B, T)
        replaced = (corrupted != batch["targets"]).float()  # a sample equal to the original counts as original
        scored = batch["scored"]
        per_token = F.binary_cross_entropy_with_logits(logits, replaced, reduction="none")  # (B, T)
        count = scored.sum()
        disc_loss = (per_token * scored).sum() / count.clamp(min=1)
        loss = generator_loss + self.cfg.discriminator_weight * disc_loss
        return ObjectiveOutput(loss=loss, num_predictions=count,
                               parts={"generator": generator_loss.detach(), "discriminator": disc_loss.detach()})

    def sample_replacements(self, generator_logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(K, V) generator logits at the prediction slots -> corrupted ids (B, T): a sample
        from the generator's softmax at each selected position (Gumbel-max over counter-based
        noise, so it is a function of the batch's seed on any device and has static shapes)."""
        targets = batch["targets"]  # (B, T)
        logits = generator_logits.float().masked_fill(self.never_sampled, float("-inf"))  # (K, V)
        noise = gumbel_noise(batch["sample_seed"], logits.shape)  # (K, V)
        samples = (logits + noise).argmax(-1)  # (K,)
        # Padding slots (IGNORE_INDEX targets) write into one spare position past the end.
        flat = torch.cat([targets.flatten(), targets.new_zeros(1)])  # (B * T + 1,)
        write_at = torch.where(batch["predict_targets"] != IGNORE_INDEX, batch["predict_index"], targets.numel())
        return flat.scatter(0, write_at, samples)[:-1].view_as(targets)


_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash of int64 values in [0, 2^32) (xor-shift-multiply rounds; the
    multipliers are below 2^31, so no product leaves int64)."""
    for multiplier in (0x7FEB352D, 0x2C1B3C6D, 0x297A2D39):
        x = ((x ^ (x >> 16)) * multiplier) & _MASK32
    return x ^ (x >> 16)


def gumbel_noise(seed: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Standard Gumbel noise of `shape` (K, V), a pure function of `seed` (1,) int64 and the
    element index, computed on the seed's device with integer ops only (no generator object,
    no host sync: torch.compile traces it into the step)."""
    count = shape[0] * shape[1]
    index = torch.arange(count, device=seed.device, dtype=torch.int64).view(shape)
    key = _mix32(seed & _MASK32) ^ _mix32((seed >> 32) ^ 0x5BD1E995)  # (1,)
    bits = _mix32((index ^ key) & _MASK32)
    uniform = ((bits >> 8).float() + 0.5) * (1.0 / 2**24)  # (0, 1), exact in fp32
    return -torch.log(-torch.log(uniform))
