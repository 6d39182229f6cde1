"""The analysis scripts under scripts/ (loaded by path: scripts/ is not a package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_neighbour_agreement_is_high_for_clustered_embeddings_and_chance_for_random_ones():
    neighbours = load_script("embedding_neighbours")
    generator = torch.Generator().manual_seed(0)
    labels = [i % 8 for i in range(400)]
    centres = torch.randn(8, 64, generator=generator)
    clustered = centres[labels] + 0.3 * torch.randn(400, 64, generator=generator)
    random = torch.randn(400, 64, generator=generator)
    ids = list(range(400))
    assert neighbours.neighbour_agreement(clustered, ids, labels) > 0.95
    assert abs(neighbours.neighbour_agreement(random, ids, labels) - 1 / 8) < 0.06


def test_word_groups_cover_every_topic_and_both_polarities():
    groups = load_script("embedding_neighbours").word_groups()
    assert len(groups["topic"]) == 8 and all(len(words) > 30 for words in groups["topic"])
    assert len(groups["polarity"]) == 2 and not set(groups["polarity"][0]) & set(groups["polarity"][1])
