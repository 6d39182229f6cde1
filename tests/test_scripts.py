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


def test_seed_table_never_pools_different_configurations(tmp_path, capsys):
    from tests.test_report import write_run

    for job, (objective, seed, pretrained) in enumerate([("mlm", 0, 0.9), ("mlm", 1, 0.7), ("clm", 0, 0.6)]):
        write_run(tmp_path / str(job), [f"objective={objective}", f"seed={seed}"],
                  {"topic": {"pretrained": {seed: pretrained}, "scratch": {seed: 0.5}}})
    load_script("seed_table").main([str(tmp_path)])
    captured = capsys.readouterr()
    assert "warning: 2 configurations (differing in objective)" in captured.err
    mlm, clm = captured.out.split("## objective=mlm")[1].split("## objective=clm")
    assert "2 runs" in mlm and "| topic | 0.500 | 0.800 ± 0.141 |" in mlm  # the two mlm seeds, not the clm run
    assert "1 runs" in clm and "| topic | 0.500 | 0.600 ± 0.000 |" in clm


def test_number_probe_reads_a_number_direction_and_not_noise():
    probe = load_script("embedding_neighbours").number_probe
    generator = torch.Generator().manual_seed(0)
    nouns = torch.randn(100, 32, generator=generator)  # one vector per noun; its two forms differ by number
    direction = torch.randn(32, generator=generator)
    embedding = torch.cat([nouns - 0.5 * direction, nouns + 0.5 * direction,
                           torch.randn(200, 32, generator=generator)])
    singular, plural = list(range(100)), list(range(100, 200))
    assert probe(embedding, singular, plural) > 0.95
    assert abs(probe(embedding, list(range(200, 300)), list(range(300, 400))) - 0.5) < 0.1  # random rows: chance


def test_noun_forms_pair_each_singular_with_its_plural():
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "chef": 1, "chefs": 2, "soup": 3, "soups": 4}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    # Every other noun of the lexicon is one [UNK] token here: not a whole word, so not counted.
    singular, plural = load_script("embedding_neighbours").noun_forms(tokenizer)
    assert sorted(zip(singular, plural, strict=True)) == [(1, 2), (3, 4)]
