"""Objectives against their reference implementations, by statistics over many batches:
SpanBERT's span masking (facebookresearch/SpanBERT), BART's text infilling (fairseq's
`DenoisingDataset.add_whole_word_mask`) and T5's span corruption at its 512-token shape.

MLM's 15% and 80/10/10 (tests/test_mlm.py), whole-word masking (tests/test_objectives.py)
and T5's noise density and lengths (both files) are checked where they already are.
Tolerances are stated next to each check in standard deviations of the estimate (4 or more),
so a correct sampler fails with negligible probability.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import poisson
from tokenizers import Tokenizer
from tokenizers.models import WordLevel

from pretrainer.config import ObjectiveConfig
from pretrainer.objectives.bart import infill
from pretrainer.objectives.masking import (
    draw_until_covered,
    select_word_spans,
    stopping_thresholds,
    truncated_geometric_draw,
    truncated_geometric_probs,
)
from pretrainer.objectives.t5_span import noise_counts
from pretrainer.tokenization import SPECIAL_TOKENS, SpecialIds, add_special_tokens, sentinel_token
from tests.helpers import SPECIAL, block_batch
from tests.test_objectives import PERIOD, VOCAB, objective, text_blocks

GEOMETRIC = truncated_geometric_probs(0.2, 10)  # SpanBERT: Geometric(0.2) clipped at 10 words
GEOMETRIC_MEAN = float((np.arange(1, 11) * GEOMETRIC).sum())  # 3.797, the paper's 3.8


def word_runs(selected: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Lengths in words of the maximal runs of selected words in (B, T) `selected` (whole words,
    so a word is selected iff its first token is); a row's end ends a run."""
    rows, positions = np.nonzero(starts)
    rank = np.cumsum(starts, axis=1)[rows, positions] - 1
    per_word = np.zeros((len(starts), starts.shape[1] + 1), dtype=np.int8)  # the last column is never a word
    per_word[rows, rank] = selected[rows, positions]
    edges = np.diff(per_word.reshape(-1), prepend=0)
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


# ---------------------------------------------------------------- SpanBERT


@pytest.mark.parametrize(("block", "batches"), [(128, 25), (512, 6)])
def test_span_mlm_masked_runs_follow_the_clipped_geometric(block, batches):
    """Contiguous masked runs are whole spans: ~Geometric(0.2) clipped at 10 words (mean 3.8,
    P(1 word) = 0.224), covering 15% of the tokens. Spans cut at a document's end, trimmed to
    the budget or merged would shorten or lengthen them (the old sampler gave a mean of 2.99
    and P(1) = 0.31 at 128 tokens)."""
    span_mlm, _ = objective("span_mlm")
    rng, generator = np.random.default_rng(block), torch.Generator().manual_seed(block)
    runs, selected, candidates = [], 0, 0
    for _ in range(batches):
        blocks, starts = text_blocks(rng, batch=64, length=block)  # a [SEP] every ~60 tokens
        sel = span_mlm.collate(blocks, generator)["selected"].numpy()
        runs.append(word_runs(sel, starts))
        selected += sel.sum()
        candidates += (~np.isin(blocks.ids, SPECIAL.all_ids())).sum()
    runs = np.concatenate(runs)  # ~5k runs
    # Run lengths have std 2.55: the mean's std is 0.036 (0.15 is 4 sigma); P(1)'s is 0.006
    # (0.025 is 4 sigma); each other share's is <= 0.006 (0.025 is 4 sigma).
    assert runs.mean() == pytest.approx(GEOMETRIC_MEAN, abs=0.15)
    assert np.mean(runs == 1) == pytest.approx(GEOMETRIC[0], abs=0.025)
    assert np.abs(np.bincount(runs, minlength=11)[1:] / len(runs) - GEOMETRIC).max() < 0.025
    # Each row meets its budget to within about one span (std ~4 tokens) over >= 1,500 rows:
    # the share's std is < 0.001; 0.005 is > 5 sigma.
    assert selected / candidates == pytest.approx(0.15, abs=0.005)


@pytest.mark.parametrize("document_every", [60, 12])
def test_span_mlm_spans_stay_inside_one_document_and_hold_no_special_token(document_every):
    """Every span is one contiguous stretch of whole words inside one document, also when
    documents are shorter than the longest spans."""
    rng = np.random.default_rng(document_every)
    cfg = ObjectiveConfig(name="span_mlm")
    for _ in range(10):
        ids, starts = corpus_rows(rng, 64, 128, document_every)
        blocks = block_batch(ids, starts)
        is_candidate = ~np.isin(ids, SPECIAL.all_ids())
        selected, span_ids = select_word_spans(starts, is_candidate, cfg, rng)
        assert not selected[~is_candidate].any()
        assert ((span_ids >= 0) == selected).all()
        for row in range(len(ids)):
            spans = span_ids[row]
            begins = (spans >= 0) & (spans != np.concatenate([[-1], spans[:-1]]))
            assert begins.sum() == len(np.unique(spans[spans >= 0])), "a span is not one contiguous stretch"
            for span in np.unique(spans[spans >= 0]):
                where = np.flatnonzero(spans == span)
                assert starts[row, where[0]] and (where[-1] + 1 == len(spans) or starts[row, where[-1] + 1])
                assert len(np.unique(blocks.doc_ids[row, where])) == 1, "a span crosses a [SEP]"


def corpus_rows(rng: np.random.Generator, batch: int, length: int, document_every: int):
    """(ids, word starts) like `text_blocks`, with a [SEP] about every `document_every` tokens."""
    ids = rng.integers(SPECIAL.count + 1, VOCAB, size=(batch, length))
    ids[rng.random((batch, length)) < 0.08] = PERIOD
    ids[rng.random((batch, length)) < 1 / document_every] = SPECIAL.sep
    ids[:, 0] = SPECIAL.cls
    starts = (rng.random((batch, length)) < 0.6) | np.isin(ids, [SPECIAL.cls, SPECIAL.sep, PERIOD])
    starts[:, 1:] |= np.isin(ids[:, :-1], [SPECIAL.sep, PERIOD])
    return ids, starts


@pytest.mark.parametrize("cap", [10, 3])
def test_span_budgets_are_met_in_expectation_even_for_short_rows(cap):
    """Spans are kept whole, so the stopping threshold is lowered by the expected overshoot:
    the words drawn average the target, from a fraction of one span up."""
    cfg = ObjectiveConfig(name="span_mlm")
    rng = np.random.default_rng(cap)
    rows = 20_000
    for target in (0.6, 2.0, 7.3, 19.2):
        caps = np.full(rows, cap)
        thresholds = stopping_thresholds(np.full(rows, target), caps, cfg, 128, rng)
        lengths, _ = draw_until_covered(thresholds, truncated_geometric_draw(GEOMETRIC, caps), 3.8, rng)
        assert lengths.max() <= cap
        # A row's drawn words vary by at most ~3 (one span) around the target: the mean's std is
        # < 0.025; 0.1 is 4 sigma.
        assert lengths.sum(axis=1).mean() == pytest.approx(target, abs=0.1)


# ---------------------------------------------------------------- BART


def test_bart_word_spans_cover_mask_prob_of_words_with_poisson_lengths():
    """fairseq's whole-word mask: spans begin and end at word starts, remove exactly
    round(0.3 * words) words per row (the last span trimmed to the budget), and their lengths
    in words are Poisson(3)."""
    rng = np.random.default_rng(20)
    ids, starts = corpus_rows(rng, 200, 1024, 60)  # ~670 words, ~67 spans a row
    corrupted, _, spans = infill(ids, 0.3, 3.0, SPECIAL.mask, SPECIAL.pad, rng, word_starts=starts)
    body_starts = starts[:, 1:].copy()
    body_starts[:, 0] = True  # the body's first token begins a word (fairseq: after <s>)
    boundary = np.concatenate([body_starts, np.ones((len(ids), 1), dtype=bool)], axis=1)  # (B, T): one past the body
    words_before = np.concatenate([np.zeros((len(ids), 1), np.int64), np.cumsum(body_starts, axis=1)], axis=1)
    lengths = []
    for row in range(len(ids)):
        begin = spans.starts[row, : spans.counts[row]]
        end = spans.ends[row, : spans.counts[row]]
        assert boundary[row, begin].all() and boundary[row, end].all(), "a span boundary inside a word"
        words = words_before[row, end] - words_before[row, begin]  # span lengths in words
        assert words.sum() == round(0.3 * body_starts[row].sum())  # the budget, in words
        assert (corrupted[row] == SPECIAL.mask).sum() == len(words)  # one [MASK] per span
        lengths.extend(words[:-1])  # the last span drawn (the rightmost) is trimmed to the budget: left out
    lengths = np.array(lengths)  # ~13k spans
    # Each share of Poisson(3) has std <= 0.0037 (0.02 is > 5 sigma); the mean's std is 0.015. Leaving the
    # trimmed span out biases the others' mean by about -1 / (spans a row) = -0.015 (the span that crosses
    # the budget is the size-biased one): 0.09 is 5 sigma beyond that.
    assert np.abs(np.bincount(lengths, minlength=9)[:9] / len(lengths) - poisson.pmf(np.arange(9), 3.0)).max() < 0.02
    assert lengths.mean() == pytest.approx(3.0, abs=0.09)


def test_bart_replaces_random_token_prob_of_the_spans_with_a_random_token():
    """fairseq's --mask-random: each span (one token, --replace-length 1) becomes a random
    token instead of <mask> with probability random_token_prob."""
    bart, _ = objective("bart", "encoder_decoder", random_token_prob=0.1)
    rng = np.random.default_rng(21)
    ids, starts = corpus_rows(rng, 400, 128, 60)
    corrupted, lengths, spans = infill(ids, 0.3, 3.0, bart.span_fill(ids.shape, rng), SPECIAL.pad, rng, starts)
    whole = lengths < ids.shape[1]  # rows not cut at the block's length: every span emitted
    masks = (corrupted[whole] == SPECIAL.mask).sum()
    replaced = spans.counts[whole].sum() - masks  # random tokens are never [MASK]
    # ~3k spans: the share's std is 0.0055; 0.025 is 4.5 sigma.
    assert replaced / spans.counts[whole].sum() == pytest.approx(0.1, abs=0.025)
    all_random, _ = objective("bart", "encoder_decoder", random_token_prob=1.0)  # mask_token_prob: no role in bart
    batch = all_random.collate(block_batch(ids[:16], starts[:16]), torch.Generator().manual_seed(21))
    assert not (batch["input_ids"] == SPECIAL.mask).any() and (batch["attention_mask"].sum(1) < 128).all()


@pytest.mark.parametrize("permute", [True, False])
def test_bart_whole_word_spans_never_cut_a_word_and_the_off_switch_does(permute):
    """Through collate (sentence permutation on or off): with word spans a word is removed
    whole or kept whole, its tokens together in the input; token spans cut words."""
    rng = np.random.default_rng(22)
    ids, starts = corpus_rows(rng, 32, 128, 60)
    ordinary = ~np.isin(ids, [SPECIAL.cls, SPECIAL.sep, PERIOD])
    ids[ordinary] = np.concatenate([rng.permutation(np.arange(10, VOCAB))[:128] for _ in ids])[ordinary.reshape(-1)]
    cut = {}
    for whole_words in (True, False):
        bart, _ = objective("bart", "encoder_decoder", whole_word_spans=whole_words, permute_sentences=permute)
        batch = bart.collate(block_batch(ids, starts), torch.Generator().manual_seed(22))
        cut[whole_words] = sum(_words_cut(batch["input_ids"][row].tolist(), ids[row], starts[row])
                               for row in range(len(ids)))
    assert cut[True] == 0
    assert cut[False] > 100  # ~40% of token-span boundaries fall inside a word: ~900 here


def _words_cut(inputs: list[int], original: np.ndarray, starts: np.ndarray) -> int:
    """Word-internal token pairs (x, y) of `original` (ids unique but for [SEP] and periods,
    which are words of their own) that the corrupted `inputs` split: one kept and the other
    removed, or both kept but not adjacent."""
    position = {token: i for i, token in enumerate(inputs)}
    cut = 0
    for i in np.flatnonzero(~starts[2:]) + 2:  # y = original[i] continues the word of x = original[i - 1]
        x, y = position.get(int(original[i - 1])), position.get(int(original[i]))
        cut += (x is None) != (y is None) or (x is not None and y != x + 1)
    return cut


# ---------------------------------------------------------------- T5


def test_t5_span_corruption_at_512_tokens_uses_28_sentinels_in_t5_order():
    """T5's shape: 568 raw tokens -> 512 inputs and 114 targets, 85 noise tokens in 28 spans
    (mean length 3.04); span k of every row becomes <extra_id_k>. T5's ids for them decrease
    (its sentinels fill the top of its vocabulary from the end); here they are appended after
    the trained vocabulary in name order, which the model cannot tell apart."""
    cfg = ObjectiveConfig(name="t5_span")
    names = objective(cfg.name, "encoder_decoder")[0].special_tokens(cfg, 512)
    assert names == [sentinel_token(k) for k in range(28)] and names[0] == "<extra_id_0>"
    assert noise_counts(568, 0.15, 3.0) == (85, 28)
    words = {token: i for i, token in enumerate(SPECIAL_TOKENS)} | {".": PERIOD}
    words |= {f"w{i}": i for i in range(PERIOD + 1, VOCAB)}
    tokenizer = add_special_tokens(Tokenizer(WordLevel(words, unk_token="[UNK]")), names)
    special = SpecialIds.of(tokenizer)  # the sentinels as the pipeline reads them: by name
    t5, _ = objective("t5_span", "encoder_decoder", special=special, vocab=tokenizer.get_vocab_size())
    assert t5.raw_block_size(t5.cfg, 512) == 569  # + the [CLS] it drops
    blocks, _ = text_blocks(np.random.default_rng(23), batch=8, length=569)
    batch = t5.collate(blocks, torch.Generator().manual_seed(23))
    assert batch["input_ids"].shape == (8, 512) and batch["targets"].shape == (8, 114)
    for inputs, targets in zip(batch["input_ids"].numpy(), batch["targets"].numpy(), strict=True):
        used = [tokenizer.id_to_token(int(t)) for t in inputs if t in special.sentinels]
        assert used == names  # 28 spans, the k-th replaced by <extra_id_k>
        assert [tokenizer.id_to_token(int(t)) for t in targets if t in special.sentinels] == names
        assert (~np.isin(targets[:-1], special.sentinels)).sum() == 85  # noise tokens: mean span 85 / 28
