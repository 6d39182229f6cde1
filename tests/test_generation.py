"""`pretrainer generate` and `pretrainer fill-mask` on tiny runs of each family."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from hydra import compose, initialize_config_dir

from pretrainer.cli import CONF_DIR, to_config
from pretrainer.errors import ConfigError
from pretrainer.evaluation.generation import Decoding, fill_mask, generate
from pretrainer.evaluation.run import load_scorer
from pretrainer.tokenization.special import sentinel_token
from tests.conftest import TINY
from tests.faults.conftest import invoke_cli

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny pretrained run per objective: {objective: run dir}."""
    from pretrainer.pipeline import train

    root = tmp_path_factory.mktemp("generation")
    dirs = {}
    for objective in ("mlm", "clm", "t5_span", "bart"):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            raw = compose("config", overrides=[*TINY, f"cache_dir={root / 'cache'}", f"objective={objective}",
                                               "finetune=none", "zero_shot.suite=none", "data.num_documents=200"])
        with contextlib.redirect_stdout(io.StringIO()):
            train(to_config(raw), root / objective)
        dirs[objective] = root / objective
    return dirs


def test_fill_mask_ranks_tokens_for_every_mask(runs):
    scorer, tokenizer, _, _ = load_scorer(str(runs["mlm"]), CPU)
    filled = fill_mask(scorer, tokenizer, "the [MASK] sat on the [MASK] .", 4, CPU)
    assert len(filled) == 2 and all(len(candidates) == 4 for candidates in filled)
    for candidates in filled:
        probabilities = [p for _, p in candidates]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
        assert all(isinstance(token, str) and token for token, _ in candidates)
    with pytest.raises(ConfigError, match=r"no \[MASK\]"):
        fill_mask(scorer, tokenizer, "no gap here", 4, CPU)


def test_a_decoder_continues_the_prompt_reproducibly(runs):
    scorer, tokenizer, _, _ = load_scorer(str(runs["clm"]), CPU)
    greedy = Decoding(max_new_tokens=6, greedy=True)
    first = generate(scorer, tokenizer, "the cat", greedy, CPU)
    assert first == generate(scorer, tokenizer, "the cat", greedy, CPU)  # greedy: one answer
    assert first.startswith("the cat")
    assert len(first.split()) - 2 <= 6  # at most max_new_tokens (a word takes one token or more)
    sampled = [generate(scorer, tokenizer, "the cat", Decoding(max_new_tokens=12, seed=seed), CPU)
               for seed in (1, 1, 2)]
    assert sampled[0] == sampled[1] and sampled[0] != sampled[2]  # a seed fixes the sample
    with pytest.raises(ConfigError, match="fill-mask needs a masked-LM model"):
        fill_mask(scorer, tokenizer, "the [MASK]", 3, CPU)


def test_top_k_one_sampling_is_greedy(runs):
    scorer, tokenizer, _, _ = load_scorer(str(runs["clm"]), CPU)
    greedy = generate(scorer, tokenizer, "a dog", Decoding(max_new_tokens=8, greedy=True), CPU)
    assert generate(scorer, tokenizer, "a dog", Decoding(max_new_tokens=8, top_k=1, seed=5), CPU) == greedy


@pytest.mark.parametrize("objective", ["t5_span", "bart"])
def test_an_encoder_decoder_fills_the_gap(runs, objective):
    scorer, tokenizer, _, _ = load_scorer(str(runs[objective]), CPU)
    text = generate(scorer, tokenizer, "the cat [MASK] the mat .", Decoding(max_new_tokens=5, greedy=True), CPU)
    assert isinstance(text, str) and len(text.split()) <= 5
    assert sentinel_token(0) not in text and sentinel_token(1) not in text  # T5 stops at the next sentinel


def test_the_commands_print_results_and_refuse_the_wrong_family(runs, capsys):
    assert invoke_cli("fill-mask", str(runs["mlm"]), "the [MASK] sat .", "--top-k", "3") == 0
    out = capsys.readouterr().out
    assert out.startswith("[MASK] 1: ") and out.count(" 0.") == 3
    assert invoke_cli("generate", str(runs["clm"]), "the cat", "--num", "2", "--max-new-tokens", "4") == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2  # one line per sample
    assert invoke_cli("generate", str(runs["mlm"]), "the cat") == 2
    assert "use `pretrainer fill-mask`" in capsys.readouterr().err
    assert invoke_cli("generate", str(runs["clm"]), "the cat", "--temperature", "0") == 2
    assert "--temperature must be positive" in capsys.readouterr().err


def test_text_before_a_gap_adds_no_lone_space_token():
    """Byte-level BPE would encode "the cat " as the, Ġcat, Ġ: a token training never put before a mask."""
    from pretrainer.config import TokenizerConfig
    from pretrainer.evaluation.generation import _with_gaps
    from pretrainer.tokenization import train_tokenizer

    corpus = ["the cat sat on the mat .", "a dog sat on the rug ."] * 50
    tokenizer = train_tokenizer(TokenizerConfig(name="bpe", vocab_size=300, min_frequency=1), iter(corpus))
    ids = _with_gaps(tokenizer, "the cat [MASK] on the [MASK] .", [-1, -2])
    pieces = [tokenizer.id_to_token(i) if i >= 0 else "<gap>" for i in ids]
    assert pieces.count("<gap>") == 2 and not any(piece.strip("Ġ▁ ") == "" for piece in pieces), pieces
