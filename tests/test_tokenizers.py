"""Tokenizer kinds: round trips (property-tested), determinism, unknown words, Chinese,
clear errors, the cache, BPE-dropout and the diagnostics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pretrainer.config import ConfigError, TokenizerConfig
from pretrainer.tokenization import KINDS, SPECIAL_TOKENS, UNK, train_tokenizer, with_bpe_dropout
from pretrainer.tokenization.diagnostics import measure

ENGLISH = [
    "the quick brown fox jumps over the lazy dog.", "a gardener waters the small plants every morning.",
    "unhappy hunters were not observing the rainy hills.", "she quickly sold seven old books, then left.",
    "dogs and cats sleep near the warm kitchen fire.", "the river flows slowly under the stone bridge.",
] * 30
CHINESE = ["我们今天去公园散步，天气很好。", "这是一个测试句子，用来检查分词。", "他喜欢在图书馆看书和学习。"] * 30
ALL_KINDS = sorted(KINDS)


def train(kind: str, corpus: list[str] = ENGLISH, **fields) -> object:
    fields = {"vocab_size": 400 if kind in ("bpe", "word_char", "unigram") else 120, "min_frequency": 1} | fields
    return train_tokenizer(TokenizerConfig(name=kind, **fields), iter(corpus))


@pytest.fixture(scope="module")
def exact_bpe():
    """Byte-level BPE with no normalisation: decoding must give back the input exactly."""
    return train("bpe", ENGLISH + CHINESE, normalization="none", lowercase=False)


UNICODE_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)  # any code point but surrogates


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=UNICODE_TEXT)
def test_byte_level_bpe_round_trips_arbitrary_unicode(exact_bpe, text):
    assume(not any(token in text for token in SPECIAL_TOKENS))  # "[UNK]" written out is the special token itself
    encoding = exact_bpe.encode(text, add_special_tokens=False)
    assert exact_bpe.decode(encoding.ids, skip_special_tokens=False) == text
    assert exact_bpe.token_to_id(UNK) not in encoding.ids


@pytest.mark.parametrize("text", [
    "emoji 👩‍👩‍👧 and flags 🇫🇷🇯🇵", "control\x00\x07\x1b[0m\ttab\r\nnewline", "中文没有空格也可以",
    "e\u0301 vs é, n\u0303", "x" * 5000, "  leading and trailing spaces  ", "",
])
def test_byte_level_bpe_round_trips_hard_cases(exact_bpe, text):
    assert exact_bpe.decode(exact_bpe.encode(text, add_special_tokens=False).ids) == text


WORDS = st.lists(st.sampled_from(sorted({w.strip(".,") for s in ENGLISH for w in s.split()})), min_size=1, max_size=30)


@pytest.mark.parametrize("kind", ["wordpiece", "unigram", "char", "word", "word_char"])
def test_other_kinds_round_trip_up_to_their_normalisation(kind):
    tokenizer = train(kind)

    @settings(max_examples=100, deadline=None)
    @given(words=WORDS)
    def check(words):
        text = " ".join(words) + "."
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        decoded = tokenizer.decode(ids)
        assert tokenizer.encode(decoded, add_special_tokens=False).ids == ids  # stable under decode -> encode
        if kind in ("unigram", "char", "word_char"):  # these keep every space: the text comes back as it was
            assert decoded == text

    check()


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_same_input_trains_the_same_tokenizer_byte_for_byte(kind):
    fields = {"vocab_size": 800 if kind != "char" else 200}
    assert train(kind, ENGLISH + CHINESE, **fields).to_str() == train(kind, ENGLISH + CHINESE, **fields).to_str()


def test_word_maps_unseen_words_to_unk_and_word_char_never_does():
    word, word_char = train("word"), train("word_char")
    unk = word.token_to_id(UNK)
    tokens = word.encode("the zebra jumps", add_special_tokens=False).ids
    assert tokens[1] == unk and tokens[0] != unk and tokens[2] != unk

    @settings(max_examples=200, deadline=None)
    @given(text=UNICODE_TEXT)
    def never_unknown(text):
        assert word_char.token_to_id(UNK) not in word_char.encode(text, add_special_tokens=False).ids

    never_unknown()
    pieces = word_char.encode("the zebra", add_special_tokens=False).tokens
    assert pieces[0] == "\u0120the" and len(pieces) > 2  # a known word whole, an unknown one in characters


@pytest.mark.parametrize("kind", ["unigram", "bpe", "char"])
def test_chinese_is_cut_into_pieces_not_one_unknown(kind):
    tokenizer = train(kind, ENGLISH + CHINESE)
    sentence = "他们今天在公园看书。"  # 他们 and the order are new; the characters were seen
    encoding = tokenizer.encode(sentence, add_special_tokens=False)
    assert len(encoding.ids) >= 4
    assert tokenizer.token_to_id(UNK) not in encoding.ids


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_empty_corpus_is_a_clear_error(kind):
    with pytest.raises(ConfigError, match="corpus empty"):
        train(kind, ["", "   "])


def test_vocabulary_below_the_alphabet_is_a_clear_error():
    with pytest.raises(ConfigError, match="below the alphabet"):
        TokenizerConfig(name="bpe", vocab_size=200)
    with pytest.raises(ConfigError, match="below the alphabet"):
        train("wordpiece", ENGLISH + CHINESE, vocab_size=40)
    with pytest.raises(ConfigError, match="below the alphabet"):
        train("unigram", ENGLISH + CHINESE, vocab_size=280)


def test_bpe_dropout_segments_into_more_pieces_and_is_only_for_bpe():
    plain = train("bpe", vocab_size=500)
    dropped = with_bpe_dropout(plain, 0.3)
    text = " ".join(ENGLISH[:6])
    plain_count = len(plain.encode(text).ids)
    dropped_counts = [len(dropped.encode(text).ids) for _ in range(20)]
    assert min(dropped_counts) > plain_count  # 30% of merges skipped: always more pieces on ~50 words
    assert json.loads(plain.to_str())["model"]["dropout"] is None  # the saved tokenizer stays deterministic
    with pytest.raises(ConfigError, match="tokenizer=bpe"):
        TokenizerConfig(name="wordpiece", bpe_dropout=0.1)


def test_diagnostics_on_a_hand_checkable_case():
    tokenizer = train("char")
    report = measure(tokenizer, "char", ["ab c", "the dog"], block_size=5, show=["ab"])
    # "ab c": a | b | ▁ c -> words "ab" (2 tokens) and "c" (▁ and c: 2); "the dog": 3 + 4.
    assert (report.words, report.tokens) == (4, 11)
    assert report.fertility == pytest.approx(11 / 4) and report.split_share == 1.0
    assert report.unk_rate == 0.0 and report.bytes_per_token == pytest.approx(11 / 11)
    assert report.length_percentiles["max"] == 7 and report.over_block_share == 0.5
    assert report.samples == [{"text": "ab", "tokens": ["a", "b"]}]
    word = train("word")
    unknown = measure(word, "word", ["the zebra the"], block_size=128, show=[])
    assert unknown.unk_rate == pytest.approx(1 / 3) and unknown.split_share == 0.0


def test_cache_keys_cover_training_settings_only(tmp_path):
    from pretrainer.tokenization import tokenizer_cache_entry

    base = TokenizerConfig(name="bpe", vocab_size=400)
    entry = tokenizer_cache_entry(base, "corpus", tmp_path)
    assert tokenizer_cache_entry(TokenizerConfig(name="bpe", vocab_size=400, show="x", diagnostic_documents=5,
                                                 bpe_dropout=0.1), "corpus", tmp_path) == entry
    for changed in ({"vocab_size": 500}, {"lowercase": False}, {"normalization": "nfkc"}, {"min_frequency": 3},
                    {"sample_documents": 10}, {"name": "word_char"}):
        assert tokenizer_cache_entry(TokenizerConfig(**{"name": "bpe", "vocab_size": 400} | changed), "corpus",
                                     tmp_path) != entry, changed
    assert tokenizer_cache_entry(base, "other corpus", tmp_path) != entry


def test_trained_tokenizers_load_with_plain_tokenizers(tmp_path):
    from tokenizers import Tokenizer

    for kind in ALL_KINDS:
        path = tmp_path / f"{kind}.json"
        path.write_text(train(kind).to_str())
        loaded = Tokenizer.from_file(str(path))
        ids = loaded.encode("the dog", "a cat").ids
        assert ids[0] == loaded.token_to_id("[CLS]") and ids.count(loaded.token_to_id("[SEP]")) == 2
        assert np.array_equal(ids, train(kind).encode("the dog", "a cat").ids)
