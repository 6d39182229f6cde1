"""Masked LM: masking statistics, special tokens, reproducibility, sparse projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pretrainer.config import ArchConfig, ObjectiveConfig
from pretrainer.models import TransformerBody
from pretrainer.objectives.base import prediction_slots
from pretrainer.objectives.mlm import MaskedLM
from pretrainer.tokenization import SpecialIds
from tests.helpers import block_batch

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, count=5)
VOCAB = 200


def make_body() -> TransformerBody:
    return TransformerBody(ArchConfig(n_layer=1, d_model=16, n_head=2, d_ff=32, max_len=64), VOCAB)


def make_mlm(body: TransformerBody | None = None, **overrides) -> MaskedLM:
    return MaskedLM(ObjectiveConfig(**overrides), body or make_body(), SPECIAL, VOCAB)


def random_blocks(rng: np.random.Generator, batch: int = 64, length: int = 64) -> np.ndarray:
    """Blocks like the packed corpus: [CLS] first, [SEP] between documents, a padded tail."""
    blocks = rng.integers(SPECIAL.count, VOCAB, size=(batch, length))
    blocks[:, 0] = SPECIAL.cls
    blocks[rng.random((batch, length)) < 0.05] = SPECIAL.sep
    blocks[:, -6:] = SPECIAL.pad
    return blocks


def collect(mlm: MaskedLM, batches: int = 50):
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    out = [(torch.as_tensor(b), mlm.collate(block_batch(b), gen)) for b in (random_blocks(rng) for _ in range(batches))]
    return out


def test_selection_rate_and_80_10_10_split():
    mlm = make_mlm()
    selected = candidates = masked = kept = randomised = 0
    for original, batch in collect(mlm):
        is_candidate = original >= SPECIAL.count
        sel = batch["selected"]
        candidates += int(is_candidate.sum())
        selected += int(sel.sum())
        masked += int((sel & (batch["input_ids"] == SPECIAL.mask)).sum())
        kept += int((sel & (batch["input_ids"] == original)).sum())
        randomised += int((sel & (batch["input_ids"] != original) & (batch["input_ids"] != SPECIAL.mask)).sum())
    # ~170k candidates: the std of the selection rate is sqrt(.15*.85/170k) ~ 0.0009, so
    # 0.005 is > 5 sigma; the 80/10/10 shares over ~25k selections have std <= 0.0025,
    # so 0.015 is ~6 sigma. A random replacement can draw the original token (1/195),
    # which moves ~0.05% from "random" to "kept": well inside the tolerance.
    assert selected / candidates == pytest.approx(0.15, abs=0.005)
    assert masked / selected == pytest.approx(0.80, abs=0.015)
    assert kept / selected == pytest.approx(0.10, abs=0.015)
    assert randomised / selected == pytest.approx(0.10, abs=0.015)


def test_special_and_padding_tokens_are_never_selected_or_replaced():
    mlm = make_mlm(mask_prob=0.9)
    for original, batch in collect(mlm, batches=10):
        special = original < SPECIAL.count
        assert not batch["selected"][special].any()
        assert torch.equal(batch["input_ids"][special], original[special])
        # random replacements never introduce special tokens
        replaced = batch["selected"] & (batch["input_ids"] != SPECIAL.mask)
        assert (batch["input_ids"][replaced] >= SPECIAL.count).all()


def test_configured_rates_are_honoured():
    mlm = make_mlm(mask_prob=0.3, mask_token_prob=0.5, random_token_prob=0.0)
    selected = candidates = masked = 0
    for original, batch in collect(mlm, batches=20):
        candidates += int((original >= SPECIAL.count).sum())
        selected += int(batch["selected"].sum())
        masked += int((batch["selected"] & (batch["input_ids"] == SPECIAL.mask)).sum())
    assert selected / candidates == pytest.approx(0.3, abs=0.01)
    assert masked / selected == pytest.approx(0.5, abs=0.02)


def test_same_seed_same_masks_different_seed_different_masks():
    mlm = make_mlm()
    blocks = random_blocks(np.random.default_rng(1))
    a = mlm.collate(block_batch(blocks), torch.Generator().manual_seed(7))
    b = mlm.collate(block_batch(blocks), torch.Generator().manual_seed(7))
    c = mlm.collate(block_batch(blocks), torch.Generator().manual_seed(8))
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["selected"], b["selected"])
    assert not torch.equal(a["selected"], c["selected"])


def test_projection_is_computed_only_at_selected_positions():
    body = make_body()
    mlm = make_mlm(body)
    blocks = random_blocks(np.random.default_rng(2), batch=4, length=32)
    batch = mlm.collate(block_batch(blocks), torch.Generator().manual_seed(0))
    rows_seen = []
    mlm.head.register_forward_hook(lambda module, inputs, output: rows_seen.append(output.shape))
    out = mlm(body, batch)
    assert rows_seen == [torch.Size([int(batch["selected"].sum()), VOCAB])]
    assert out.num_predictions == int(batch["selected"].sum())
    assert torch.isfinite(out.loss)


def test_loss_ignores_unselected_positions():
    """Changing a target at an unselected position must not change the loss; at a selected one it must."""
    body = make_body().eval()
    mlm = make_mlm(body)
    blocks = random_blocks(np.random.default_rng(3), batch=2, length=32)
    batch = mlm.collate(block_batch(blocks), torch.Generator().manual_seed(0))
    loss = mlm(body, batch).loss

    def with_target_changed(position: tuple[int, int]) -> torch.Tensor:
        targets = batch["targets"].clone()
        targets[position] = SPECIAL.count + (int(targets[position]) - SPECIAL.count + 1) % (VOCAB - SPECIAL.count)
        slots = prediction_slots(batch["selected"], targets, None)  # as collation lists them
        return mlm(body, dict(batch, targets=targets) | slots).loss

    unselected = tuple((~batch["selected"]).nonzero()[0].tolist())
    selected = tuple(batch["selected"].nonzero()[0].tolist())
    assert torch.equal(with_target_changed(unselected), loss)
    assert not torch.equal(with_target_changed(selected), loss)


def test_lm_head_ties_or_unties_the_output_matrix():
    tied_body = make_body()
    assert make_mlm(tied_body).head.embedding.weight is tied_body.tok_emb.weight
    untied_body = TransformerBody(ArchConfig(n_layer=1, d_model=16, n_head=2, d_ff=32, max_len=64,
                                             tie_embeddings=False), VOCAB)
    head = make_mlm(untied_body).head
    assert head.embedding.weight is not untied_body.tok_emb.weight
    assert head.embedding.weight.shape == untied_body.tok_emb.weight.shape
