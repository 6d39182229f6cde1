"""The document mask of packed blocks: attention stays inside each document, with every
objective that reads packed blocks, and is refused where an objective builds its own sequences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pretrainer.config import ConfigError, ObjectiveConfig
from pretrainer.models import TransformerBody
from tests.helpers import SPECIAL
from tests.test_objectives import VOCAB, arch, objective, text_blocks


def _perturbed_outputs(model, ids: torch.Tensor, position: int, **kwargs) -> set[int]:
    """Positions whose output changes when the token at `position` changes."""
    perturbed = ids.clone()
    perturbed[0, position] = (perturbed[0, position] + 1 - 5) % (VOCAB - 5) + 5
    diff = (model(ids, **kwargs) - model(perturbed, **kwargs)).abs().amax(-1)[0]
    return set(torch.nonzero(diff > 1e-6).flatten().tolist())


@pytest.mark.parametrize("arch_name", ["encoder", "decoder"])
def test_document_mask_keeps_attention_inside_each_packed_document(arch_name):
    torch.manual_seed(0)
    model = TransformerBody(arch(arch_name), VOCAB).eval()
    ids = torch.randint(5, VOCAB, (1, 12))
    ids[0, 0], ids[0, 4], ids[0, 8] = SPECIAL.cls, SPECIAL.sep, SPECIAL.sep  # documents 0-4, 5-8, 9-11
    obj, _ = objective("clm" if arch_name == "decoder" else "mlm", arch_name)
    document_ids = obj.document_ids(ids)
    assert document_ids.tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]]
    seen = _perturbed_outputs(model, ids, 6, document_ids=document_ids)
    assert seen == ({5, 6, 7, 8} if arch_name == "encoder" else {6, 7, 8})  # never documents 0 or 2
    assert _perturbed_outputs(model, ids, 6) == (set(range(12)) if arch_name == "encoder" else set(range(6, 12)))


def test_document_mask_combines_with_the_prefix_lm_pattern():
    torch.manual_seed(0)
    model = TransformerBody(arch("decoder"), VOCAB).eval()
    ids = torch.randint(5, VOCAB, (1, 12))
    ids[0, 0], ids[0, 6] = SPECIAL.cls, SPECIAL.sep  # documents 0-6 and 7-11
    obj, _ = objective("prefix_lm", "decoder")
    kwargs = {"prefix_lengths": torch.tensor([9]), "document_ids": obj.document_ids(ids)}
    assert _perturbed_outputs(model, ids, 8, **kwargs) == {7, 8, 9, 10, 11}  # prefix token: its document only
    assert _perturbed_outputs(model, ids, 3, **kwargs) == set(range(7))


@pytest.mark.parametrize("name", ["mlm", "wwm", "span_mlm", "electra", "clm", "prefix_lm"])
def test_block_objectives_mask_documents_by_default_and_can_attend_across(name):
    arch_name = "decoder" if name in ("clm", "prefix_lm") else "encoder"
    default, body = objective(name, arch_name)
    across, _ = objective(name, arch_name, document_mask=False)
    blocks, _ = text_blocks(np.random.default_rng(0), batch=4)
    generator = torch.Generator().manual_seed(0)
    batch = default.collate(blocks, generator)
    sep = torch.as_tensor(blocks.ids) == SPECIAL.sep
    assert torch.equal(batch["document_ids"], sep.cumsum(1) - sep.long())
    assert "document_ids" not in across.collate(blocks, torch.Generator().manual_seed(0))
    assert torch.isfinite(default(body, batch).loss)


@pytest.mark.parametrize("name", ["mlm_nsp", "mlm_sop", "t5_span", "bart"])
def test_document_mask_is_refused_where_the_objective_builds_its_own_sequences(name):
    assert not ObjectiveConfig(name=name).masks_documents
    with pytest.raises(ConfigError, match="does not apply to .*mlm, wwm"):
        ObjectiveConfig(name=name, document_mask=True)
