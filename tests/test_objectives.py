"""Every objective against its paper, by statistics over many batches.

Tolerances are stated next to each check; they are several standard deviations of the
estimate, so a correct sampler fails with negligible probability while a wrong rate,
length distribution or split is caught.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from pretrainer.config import ArchConfig, ObjectiveConfig
from pretrainer.models import TransformerBody, build_body
from pretrainer.objectives import build_objective
from pretrainer.objectives.bart import infill, permute_sentences
from pretrainer.objectives.masking import (
    place_spans,
    sample_span_lengths,
    truncated_geometric_draw,
    truncated_geometric_probs,
)
from pretrainer.objectives.sentence_pairs import build_sentence_pairs
from pretrainer.objectives.t5_span import corrupted_lengths, random_spans_noise_mask, raw_length_for_input
from tests.helpers import SPECIAL, block_batch

VOCAB = 2000  # large, so a random replacement rarely equals the original (1/1995)
PERIOD = SPECIAL.sentence_ends[0]


def arch(name: str = "encoder", **overrides) -> ArchConfig:
    return ArchConfig(name=name, n_layer=1, d_model=16, n_head=2, d_ff=32, max_len=256, **overrides)


def objective(name: str, arch_name: str = "encoder", special=SPECIAL, vocab=VOCAB, **overrides):
    cfg = ObjectiveConfig(name=name, **overrides)
    body = build_body(arch(arch_name, segment_embeddings=name in ("mlm_nsp", "mlm_sop")), vocab)
    return build_objective(cfg, body, special, vocab), body


def text_blocks(rng: np.random.Generator, batch: int = 32, length: int = 128, word_share: float = 0.6):
    """Packed-corpus-like rows: [CLS], words of 1-3 tokens, a period ending ~1 word in 8,
    [SEP] between documents every ~60 tokens. Returns the batch and the word starts."""
    ids = rng.integers(SPECIAL.count + 1, VOCAB, size=(batch, length))
    ids[rng.random((batch, length)) < 0.08] = PERIOD
    ids[rng.random((batch, length)) < 1 / 60] = SPECIAL.sep
    ids[:, 0] = SPECIAL.cls
    starts = rng.random((batch, length)) < word_share
    starts |= np.isin(ids, [SPECIAL.cls, SPECIAL.sep, PERIOD])
    starts[:, 1:] |= np.isin(ids[:, :-1], [SPECIAL.sep, PERIOD])  # the token after a separator starts a word
    return block_batch(ids, starts), starts


def collect(obj, batches: int = 20, seed: int = 0, **block_kwargs):
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        blocks, starts = text_blocks(rng, **block_kwargs)
        yield blocks, starts, obj.collate(blocks, generator)


def words_of(starts_row: np.ndarray) -> list[np.ndarray]:
    """Token positions of each word in a row."""
    bounds = np.append(np.flatnonzero(starts_row), len(starts_row))
    return [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def assert_whole_words_and_no_special(selected: np.ndarray, ids: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Every word is selected whole or not at all, special tokens never; returns the special-token map."""
    is_special = np.isin(ids, SPECIAL.all_ids())
    assert not (selected & is_special).any()
    for row in range(len(selected)):
        for word in words_of(starts[row]):
            chosen = selected[row, word][~is_special[row, word]]
            assert chosen.all() or not chosen.any(), "a word was split"
    return is_special


# ---------------------------------------------------------------- whole-word masking


def test_wwm_selects_whole_words_only_at_the_configured_rate():
    wwm, _ = objective("wwm")
    selected_tokens = candidate_tokens = 0
    for blocks, starts, batch in collect(wwm):
        sel = batch["selected"].numpy()
        is_special = assert_whole_words_and_no_special(sel, blocks.ids, starts)
        selected_tokens += sel.sum()
        candidate_tokens += (~is_special).sum()
    # ~75k candidate tokens in ~45k words: the rate's std is about sqrt(.15*.85/45k)*1.5 ~ 0.0025; 0.012 is ~5 sigma.
    assert selected_tokens / candidate_tokens == pytest.approx(0.15, abs=0.012)


def test_wwm_words_come_from_the_tokenizer_not_from_markers(compose_config, tmp_path):
    """BPE has no `##`: the packed corpus still records which tokens begin words."""
    from pretrainer.data.blocks import load_or_pack
    from pretrainer.data.sources import open_corpus
    from pretrainer.tokenization import load_or_train_tokenizer, tokenizer_fingerprint

    cfg = compose_config("tokenizer=bpe", "tokenizer.vocab_size=300")
    corpus = open_corpus(cfg.data.__class__(num_documents=50))
    tokenizer, _ = load_or_train_tokenizer(cfg.tokenizer, corpus.fingerprint, corpus.documents(), tmp_path)
    packed = load_or_pack(corpus.documents(), tokenizer, corpus.fingerprint, tokenizer_fingerprint(tokenizer),
                          64, 0.0, tmp_path)
    batch = packed.train.gather(np.arange(4))
    for row_ids, row_starts in zip(batch.ids, batch.word_starts, strict=True):
        for position in range(2, len(row_ids)):
            token = tokenizer.id_to_token(int(row_ids[position]))
            # Byte-level BPE marks a space-prefixed (word-initial) piece with "Ġ"; punctuation
            # and [SEP] are words of their own. A piece without either continues the word.
            if token.startswith("\u0120") or token == "[SEP]":
                assert row_starts[position]
            elif token.isalpha() and tokenizer.id_to_token(int(row_ids[position - 1])).lstrip("\u0120").isalpha():
                assert not row_starts[position]


# ---------------------------------------------------------------- SpanBERT


def test_span_lengths_follow_the_truncated_geometric_distribution():
    probs = truncated_geometric_probs(0.2, 10)
    expected_mean = float((np.arange(1, 11) * probs).sum())
    assert expected_mean == pytest.approx(3.8, abs=0.01)  # the mean SpanBERT reports
    rng = np.random.default_rng(0)
    drawn, counts = sample_span_lengths(np.full(200, 300), truncated_geometric_draw(probs), expected_mean, rng)
    assert (drawn.sum(axis=1) == 300).all()  # each row's lengths cover exactly its budget
    lengths = drawn[np.arange(drawn.shape[1]) < counts[:, None] - 1]  # each row's last is trimmed: left out
    # ~15k lengths with std ~2.4: the mean's std is 0.02; 0.08 is 4 sigma.
    assert lengths.mean() == pytest.approx(expected_mean, abs=0.08)
    assert lengths.min() == 1 and lengths.max() == 10
    histogram = np.bincount(lengths, minlength=11)[1:] / len(lengths)
    assert np.abs(histogram - probs).max() < 0.015  # each share's std <= 0.004


def test_placed_spans_never_overlap_or_touch():
    rng = np.random.default_rng(1)
    lengths = rng.poisson(3, size=(200, 11))
    counts = rng.integers(1, 12, size=200)
    lengths[np.arange(11) >= counts[:, None]] = 0
    spans = place_spans(np.full(200, 100), lengths, counts, rng)
    assert (spans.counts == counts).all()  # 100 items leave room for all of them
    for row in range(200):
        starts, ends = spans.starts[row, : counts[row]], spans.ends[row, : counts[row]]
        assert (starts[1:] > ends[:-1]).all() and ends[-1] <= 100 and starts[0] >= 0


def test_spans_that_do_not_fit_are_dropped_and_the_rest_placed():
    """Rows over-filled with spans (a short segment given more than fit, as span_mlm's choice of
    segment per span does): the longest prefix that fits is kept, whatever width remains."""
    spans = place_spans(np.array([10]), np.array([[3, 3, 3, 3]]), np.array([4]), np.random.default_rng(0))
    assert spans.counts.tolist() == [2]  # 3 + 1 + 3 fit in 10 items, a third span would need 11
    rng = np.random.default_rng(2)
    for _ in range(300):
        rows, width = int(rng.integers(1, 6)), int(rng.integers(1, 8))
        lengths = rng.integers(1, 6, size=(rows, width))
        counts = rng.integers(0, width + 1, size=rows)
        lengths[np.arange(width) >= counts[:, None]] = 0
        items = rng.integers(0, 25, size=rows)
        spans = place_spans(items, lengths, counts, rng)
        for row in range(rows):
            kept = spans.counts[row]
            assert kept <= counts[row] and (spans.lengths[row, :kept] == lengths[row, :kept]).all()
            assert (lengths[row, : kept + 1] + 1).sum() > items[row] + 1 or kept == counts[row]  # the next did not fit
            starts, ends = spans.starts[row, :kept], spans.ends[row, :kept]
            assert (starts[1:] > ends[:-1]).all() and (starts >= 0).all() and (ends <= items[row]).all()
    # A batch where it happened in span_mlm's collation (about 1 micro-batch in 20,000 of the demo)
    span_mlm, _ = objective("span_mlm")
    batch = span_mlm.collate(text_blocks(np.random.default_rng(1423), batch=4)[0], torch.Generator().manual_seed(681))
    assert batch["selected"].any()


def test_span_mlm_masks_whole_word_spans_with_one_decision_per_span():
    span_mlm, _ = objective("span_mlm")
    selected = candidates = 0
    decisions = {"mask": 0, "random": 0, "kept": 0}
    for blocks, starts, batch in collect(span_mlm, batches=30):
        sel, inputs = batch["selected"].numpy(), batch["input_ids"].numpy()
        is_special = assert_whole_words_and_no_special(sel, blocks.ids, starts)
        for row in range(len(sel)):
            # Spans never touch nor hold a special token, so each run of selected tokens is
            # one span and carries one decision.
            for run in _selected_runs(sel[row]):
                kinds = {_kind(inputs[row, i], blocks.ids[row, i]) for i in run}
                assert len(kinds) == 1, f"mixed decisions in one span: {kinds}"
                decisions[kinds.pop()] += 1
        selected += sel.sum()
        candidates += (~is_special).sum()
    # ~110k candidates: the token rate's std is below 0.003 (words are picked in spans); 0.012 is 4 sigma.
    assert selected / candidates == pytest.approx(0.15, abs=0.012)
    spans = sum(decisions.values())  # ~3k spans: each share's std <= 0.008
    assert decisions["mask"] / spans == pytest.approx(0.8, abs=0.03)
    assert decisions["random"] / spans == pytest.approx(0.1, abs=0.025)


def _selected_runs(selected: np.ndarray) -> list[list[int]]:
    runs, current = [], []
    for i, sel in enumerate(selected):
        if sel:
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


def _kind(token: int, original: int) -> str:
    return "mask" if token == SPECIAL.mask else ("kept" if token == original else "random")


# ---------------------------------------------------------------- NSP / SOP


@pytest.mark.parametrize("task", ["nsp", "sop"])
def test_sentence_pairs_are_balanced_and_negatives_are_what_the_paper_says(task):
    rng = np.random.default_rng(2)
    labels = []
    for _ in range(40):
        blocks, _ = text_blocks(rng, batch=16)
        pairs = build_sentence_pairs(blocks, task, SPECIAL, rng)
        labels.extend(pairs.labels)
        for row in range(16):
            seg_a, seg_b = _segments(pairs.input_ids[row], pairs.token_type_ids[row])
            content = blocks.ids[row].tolist()
            if task == "nsp":
                assert (pairs.doc_a[row] != pairs.doc_b[row]) == bool(pairs.labels[row])
                if not pairs.labels[row]:
                    assert _contains(content, seg_a + seg_b)
            else:
                assert pairs.doc_a[row] == pairs.doc_b[row]
                first, second = (seg_b, seg_a) if pairs.labels[row] else (seg_a, seg_b)
                assert _contains(content, first + second), "segments are not consecutive in that order"
            assert SPECIAL.sep not in seg_a + seg_b  # both segments lie inside one document
    # 640 labels: the share's std is 0.02; 0.08 is 4 sigma.
    assert np.mean(labels) == pytest.approx(0.5, abs=0.08)


@pytest.mark.parametrize("task", ["nsp", "sop"])
def test_the_pair_label_does_not_show_in_how_segments_end_or_how_long_they_are(task):
    """BERT's segments are whole sentences: a random B or a swapped pair ends with a sentence end
    as often as a true pair does, and a random B is about as long as the true B it replaces
    (a random B cut to length ended mid-sentence: label readable off its last token)."""
    rng = np.random.default_rng(3)
    ends_with_period, lengths = {0: [], 1: []}, {0: [], 1: []}
    for _ in range(60):
        blocks, _ = text_blocks(rng, batch=16)
        pairs = build_sentence_pairs(blocks, task, SPECIAL, rng)
        for row in range(16):
            seg_a, seg_b = _segments(pairs.input_ids[row], pairs.token_type_ids[row])
            label = int(pairs.labels[row])
            ends_with_period[label] += [seg_a[-1] == PERIOD, seg_b[-1] == PERIOD]
            lengths[label].append(len(seg_b))
    # ~480 pairs a label: a share's std is <= 0.016, a mean length's (std ~20 tokens) about 1 token
    assert np.mean(ends_with_period[0]) == pytest.approx(np.mean(ends_with_period[1]), abs=0.06)
    assert np.mean(ends_with_period[0]) > 0.9
    assert np.mean(lengths[0]) == pytest.approx(np.mean(lengths[1]), abs=4)


def _segments(ids: np.ndarray, types: np.ndarray) -> tuple[list[int], list[int]]:
    """[CLS] A [SEP] B [SEP] [PAD]... -> (A, B), checking the token types on the way."""
    real = ids[ids != SPECIAL.pad]
    assert real[0] == SPECIAL.cls and real[-1] == SPECIAL.sep
    first_sep = int(np.flatnonzero(real == SPECIAL.sep)[0])
    assert (types[: first_sep + 1] == 0).all() and (types[first_sep + 1 : len(real)] == 1).all()
    return real[1:first_sep].tolist(), real[first_sep + 1 : -1].tolist()


def _contains(sequence: list[int], part: list[int]) -> bool:
    return any(sequence[i : i + len(part)] == part for i in range(len(sequence) - len(part) + 1))


@pytest.mark.parametrize("name", ["mlm_nsp", "mlm_sop"])
def test_pair_objectives_mask_no_padding_and_report_both_losses(name):
    obj, body = objective(name)
    blocks, starts, batch = next(collect(obj))
    assert not (batch["selected"] & ~batch["attention_mask"]).any()
    out = obj(body, batch)
    task = name.split("_")[1]
    assert set(out.parts) == {"mlm", task}
    assert float(out.loss.detach()) == pytest.approx(float(out.parts["mlm"] + out.parts[task]), rel=1e-5)


# ---------------------------------------------------------------- prefix LM


def test_prefix_lm_attention_sees_the_whole_prefix_but_no_later_suffix_token():
    torch.manual_seed(0)
    model = TransformerBody(arch("decoder"), VOCAB).eval()
    ids = torch.randint(5, VOCAB, (1, 20))
    prefix = torch.tensor([8])

    def changed_positions(position: int) -> set[int]:
        perturbed = ids.clone()
        perturbed[0, position] = (perturbed[0, position] + 1 - 5) % (VOCAB - 5) + 5
        diff = (model(ids, prefix_lengths=prefix) - model(perturbed, prefix_lengths=prefix)).abs().amax(-1)[0]
        return set(torch.nonzero(diff > 1e-6).flatten().tolist())

    assert changed_positions(7) == set(range(20))  # a prefix token is seen by every position
    assert changed_positions(12) == set(range(12, 20))  # a suffix token only by itself and later ones
    assert changed_positions(8) == set(range(8, 20))  # the first suffix token is already causal


@pytest.mark.parametrize("positions", ["t5_relative_bias", "alibi", "rotary"])
def test_a_prefix_token_tells_the_order_of_its_right_hand_neighbours(positions):
    """Reversing prefix tokens 2..7 changes what tokens 0 and 1 see. With T5's bias a causal
    stack's one-directional buckets put every key to the right in one bucket (the outputs
    moved by 2e-7); prefix_lm's arch.relative_bidirectional gives the right its own buckets."""
    torch.manual_seed(0)
    ids = torch.randint(5, VOCAB, (1, 12))
    reversed_ids = ids.clone()
    reversed_ids[0, 2:8] = ids[0, 2:8].flip(0)
    prefix = torch.tensor([8])

    def shift(**overrides) -> float:
        torch.manual_seed(1)
        body = TransformerBody(replace(arch("decoder"), positions=positions, **overrides), VOCAB).eval()
        with torch.no_grad():
            for parameter in body.parameters():  # T5's bias starts at zero; give every bucket its own value
                parameter.add_(0.1 * torch.randn_like(parameter))
            outputs = body(ids, prefix_lengths=prefix), body(reversed_ids, prefix_lengths=prefix)
        return float((outputs[0] - outputs[1])[0, :2].abs().max())

    if positions == "t5_relative_bias":
        assert shift(relative_bidirectional=True) > 1e-3
        assert shift() < 1e-5  # a plain decoder's one-directional buckets: no order to the right
    else:  # ALiBi (symmetric in the prefix) and rotary see it as they are
        assert shift() > 1e-3


def test_prefix_lm_predicts_only_after_the_prefix_and_prefix_lengths_are_uniform():
    obj, body = objective("prefix_lm", "decoder")
    lengths = []
    for _, _, batch in collect(obj, batches=30):
        prefix = batch["prefix_lengths"]
        lengths.append(prefix)
        out = obj(body, batch)
        assert out.num_predictions == int((128 - prefix).sum())  # tokens P..T-1 of each row
    lengths = torch.cat(lengths).numpy()
    assert lengths.min() >= 1 and lengths.max() <= 127
    # Uniform on 1..127: mean 64, 960 draws -> std of the mean 1.2; 5 is 4 sigma.
    assert lengths.mean() == pytest.approx(64, abs=5)


# ---------------------------------------------------------------- T5 span corruption


def test_t5_lengths_match_the_t5_computation():
    # T5 (and Hugging Face's run_t5_mlm_flax) pair 512 inputs with 568 raw tokens and 114 targets.
    assert raw_length_for_input(512, 0.15, 3.0) == 568
    assert corrupted_lengths(568, 0.15, 3.0) == (512, 114)
    for block in (32, 64, 128, 256):
        assert corrupted_lengths(raw_length_for_input(block, 0.15, 3.0), 0.15, 3.0)[0] == block


def test_t5_noise_density_and_mean_span_length():
    rng = np.random.default_rng(3)
    noise_tokens = spans = tokens = 0
    for mask in random_spans_noise_mask(500, 141, 0.15, 3.0, rng):
        assert not mask[0]  # the first span is non-noise, as in T5
        noise_tokens += mask.sum()
        spans += (mask[1:] & ~mask[:-1]).sum()
        tokens += len(mask)
    assert noise_tokens / tokens == pytest.approx(0.15, abs=0.005)  # rounding per row only
    assert noise_tokens / spans == pytest.approx(3.0, abs=0.1)


def test_t5_sentinels_are_unique_ordered_and_filling_them_back_restores_the_text():
    from pretrainer.tokenization import SpecialIds

    special = SpecialIds(**{**SPECIAL.__dict__, "sentinels": tuple(range(VOCAB, VOCAB + 40))})
    obj, body = objective("t5_span", "encoder_decoder", special=special, vocab=VOCAB + 40)
    generator = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(4)
    for _ in range(5):
        blocks, _ = text_blocks(rng, length=obj.raw_block_size(obj.cfg, 128))
        batch = obj.collate(blocks, generator)
        assert batch["input_ids"].shape[1] == 128  # exactly the configured block
        for row in range(len(blocks.ids)):
            inputs, targets = batch["input_ids"][row].tolist(), batch["targets"][row].tolist()
            used = [t for t in inputs if t in special.sentinels]
            assert used == list(special.sentinels[: len(used)])  # unique, in order
            assert [t for t in targets if t in special.sentinels] == used
            assert _fill_sentinels(inputs, targets, special.sentinels) == blocks.ids[row, 1:].tolist()
        assert (batch["decoder_input_ids"][:, 1:] == batch["targets"][:, :-1]).all()
    out = obj(body, batch)
    assert out.num_predictions == batch["targets"].numel()


def _fill_sentinels(inputs: list[int], targets: list[int], sentinels: tuple[int, ...]) -> list[int]:
    spans, current = {}, None
    for token in targets[:-1]:  # the final EOS ends the target
        if token in sentinels:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)
    restored = []
    for token in inputs[:-1]:
        restored.extend(spans[token] if token in sentinels else [token])
    return restored


# ---------------------------------------------------------------- BART


def test_bart_infilling_rate_span_lengths_and_order():
    rng = np.random.default_rng(5)
    lengths, removed, total = [], 0, 0
    tokens = np.tile(np.arange(100, 228), (300, 1))  # (300, 128)
    corrupted, input_lengths, spans = infill(tokens, 0.3, 3.0, SPECIAL.mask, SPECIAL.pad, rng)
    assert corrupted.shape == tokens.shape  # padded to the block, never longer
    for row in range(300):
        out, used = corrupted[row, : input_lengths[row]], spans.lengths[row, : spans.counts[row]]
        assert (corrupted[row, input_lengths[row] :] == SPECIAL.pad).all()
        assert (out == SPECIAL.mask).sum() == len(used)  # one [MASK] per span, zero-length ones included
        assert len(out) == tokens.shape[1] - used.sum() + len(used)
        kept = out[out != SPECIAL.mask]
        assert kept[0] == tokens[row, 0] and (np.diff(kept) > 0).all()  # kept tokens keep their order
        removed += used.sum()
        total += tokens.shape[1] - 1
        lengths.extend(used[:-1])  # the last span is trimmed to the budget: left out
    assert removed / total == pytest.approx(0.3, abs=0.005)  # exact up to rounding per row
    # Poisson(3): ~3.7k lengths, std 1.73 -> the mean's std is 0.03; 0.12 is 4 sigma.
    assert np.mean(lengths) == pytest.approx(3.0, abs=0.12)
    assert np.mean(np.array(lengths) == 0) == pytest.approx(np.exp(-3), abs=0.015)


def test_bart_sentence_permutation_keeps_sentences_and_separators():
    rng = np.random.default_rng(6)
    tokens = np.array([SPECIAL.cls, 10, 11, PERIOD, 12, PERIOD, 13, 14, 15, PERIOD, SPECIAL.sep, 20, PERIOD, 21, 22])
    seen = set()
    for out in permute_sentences(np.tile(tokens, (50, 1)), np.array([PERIOD]), SPECIAL.sep, rng):
        assert out[0] == SPECIAL.cls and out[10] == SPECIAL.sep
        first_doc = out[1:10].tolist()
        assert _is_sentence_permutation(first_doc, tokens[1:10].tolist())
        assert _is_sentence_permutation(out[11:].tolist(), tokens[11:].tolist())
        seen.add(tuple(first_doc))
    assert len(seen) == 6  # all 3! orders of the first document's sentences occur


def _is_sentence_permutation(permuted: list[int], original: list[int]) -> bool:
    """`permuted` is the sentences of `original` (the last may lack a period) in some order."""
    from itertools import permutations

    return any(sum(map(list, order), []) == permuted for order in permutations(_split(original)))


def _split(tokens: list[int]) -> list[tuple[int, ...]]:
    sentences, current = [], []
    for token in tokens:
        current.append(token)
        if token == PERIOD:
            sentences.append(tuple(current))
            current = []
    return sentences + ([tuple(current)] if current else [])


def test_bart_targets_are_the_uncorrupted_input():
    obj, body = objective("bart", "encoder_decoder", mask_prob=0.3, mean_span_length=3.0)
    for blocks, _, batch in collect(obj, batches=3):
        original = torch.as_tensor(blocks.ids)
        assert torch.equal(torch.cat([batch["decoder_input_ids"][:, :1], batch["targets"]], dim=1), original)
        assert not torch.equal(batch["input_ids"][:, : original.shape[1]], original)
    assert torch.isfinite(obj(body, batch).loss)


# ---------------------------------------------------------------- ELECTRA


def test_electra_labels_replaced_tokens_and_samples_no_special_token():
    obj, body = objective("electra", mask_token_prob=1.0, random_token_prob=0.0)
    assert obj.generator.cfg.d_model == 8 and body.cfg.d_model == 16  # 1/4 of the width, rounded to whole heads
    assert obj.generator.embedding is body.tok_emb  # shared token embeddings
    blocks, _, batch = next(collect(obj))
    generator_logits = obj.head(obj.generator(batch["input_ids"], None)[batch["selected"]])
    corrupted = obj.sample_replacements(generator_logits.detach(), batch)
    targets, selected = batch["targets"], batch["selected"]
    assert torch.equal(corrupted[~selected], targets[~selected])  # only masked positions change
    assert (corrupted[selected] != targets[selected]).float().mean() > 0.5  # an untrained generator rarely guesses
    assert not np.isin(corrupted[selected].numpy(), SPECIAL.all_ids()).any()
    out = obj(body, batch)
    assert set(out.parts) == {"generator", "discriminator"}
    expected = out.parts["generator"] + 50.0 * out.parts["discriminator"]
    assert float(out.loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    out.loss.backward()
    assert body.stack.blocks[0].attn.qkv.weight.grad.abs().sum() > 0  # the discriminator learns
    assert obj.generator.stack.blocks[0].attn.qkv.weight.grad.abs().sum() > 0  # and so does the generator


# ---------------------------------------------------------------- all objectives

ALL = ["mlm", "wwm", "span_mlm", "mlm_nsp", "mlm_sop", "electra", "clm", "prefix_lm", "t5_span", "bart"]


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_masks(name):
    from pretrainer.config import OBJECTIVE_ARCHS
    from pretrainer.tokenization import SpecialIds

    special = SpecialIds(**{**SPECIAL.__dict__, "sentinels": tuple(range(VOCAB, VOCAB + 40))})
    obj, _ = objective(name, OBJECTIVE_ARCHS[name][0], special=special, vocab=VOCAB + 40)
    blocks, _ = text_blocks(np.random.default_rng(0), batch=8)
    first = obj.collate(blocks, torch.Generator().manual_seed(11))
    again = obj.collate(blocks, torch.Generator().manual_seed(11))
    other = obj.collate(blocks, torch.Generator().manual_seed(12))
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    if name != "clm":  # the only objective without randomness
        assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize("name", ALL)
def test_every_objective_trains_on_the_embedded_corpus(compose_config, tmp_path, name):
    import json

    from pretrainer.pipeline import train

    cfg = compose_config(f"objective={name}", "finetune=none", "data.num_documents=300",
                         "trainer.max_steps=40", "trainer.eval_every=40", "trainer.lr=3e-3")
    summary = train(cfg, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r.get("phase") == "pretrain"]
    # The last 10 steps, not 5: span_mlm's loss is noisy (a row's masked-token count varies).
    assert np.mean(losses[-10:]) < np.mean(losses[:5]) - 0.2, losses
    assert summary["choices"]["objective"] == name
