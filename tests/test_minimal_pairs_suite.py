"""The embedded grammar's zero-shot minimal pairs (pretrainer.data.synthetic.minimal_pairs):
counts, determinism, minimality, the good side grammatical by construction, and both sides
held out from the pretraining text, whose grammar never shows a bad side."""

from __future__ import annotations

import re

import pytest

from pretrainer.data.synthetic import generate_corpus
from pretrainer.data.synthetic import lexicon as lx
from pretrainer.data.synthetic.agreement import FLIP_NUMBER, SINGULAR_VERB_FORMS
from pretrainer.data.synthetic.grammar import LOCATIVE_PREPOSITIONS, PREPOSITIONS, is_reserved, tables
from pretrainer.data.synthetic.minimal_pairs import (
    DETERMINER_NUMBER,
    PHENOMENA,
    PLURAL_DETERMINERS,
    minimal_pair_suite,
)

PER = 120
DOCUMENTS = 1500
SUBSTITUTIONS = ("agreement_simple", "agreement_attractor", "determiner_noun", "npi_negation",
                 "argument_structure")
T = tables()
VOCABS = (*T.topics, T.general)
NOUNS = {form: plural for v in VOCABS for pool in (v.agents, v.things) for s, p in pool.items
         if s != p for form, plural in ((s, False), (p, True))}
TRANSITIVE = {f for v in VOCABS for verb in v.verbs.items for f in verb[:3]}
ONLY_VERBS = TRANSITIVE - set(NOUNS)  # "diagnoses" is a noun too
INTRANSITIVE = {f for verb in T.intransitives.items for f in verb[:3]}
REACTIONS = {f for pool in T.reactions for verb in pool.items for f in verb[:3]}  # intransitive too
DETERMINERS = {"the", "a", "an", "this", "that", "these", "those", "every", "each", "some", "many",
               "several", "two", "any"}


def words(text: str) -> list[str]:
    return text.rstrip(".").lower().split()


def sentences(doc: str) -> list[str]:
    return re.split(r"(?<=\.) ", doc)


@pytest.fixture(scope="module")
def suite():
    return minimal_pair_suite(0, PER)


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus(0, DOCUMENTS)


@pytest.fixture(scope="module")
def corpus_sentences(corpus):
    return [s for doc in corpus for s in sentences(doc)]


# --- shape and determinism ---------------------------------------------------------------

def test_every_phenomenon_has_the_requested_count(suite):
    assert tuple(suite) == PHENOMENA and len(PHENOMENA) == 7
    assert all(len(pairs) == PER for pairs in suite.values())
    default = minimal_pair_suite(1)
    assert all(len(pairs) == 200 for pairs in default.values())
    assert minimal_pair_suite(0, 0) == dict.fromkeys(PHENOMENA, [])
    for pairs in suite.values():
        goods = [good for good, _ in pairs]
        assert len(set(goods)) == len(goods)  # no pair twice


def test_pairs_are_deterministic_per_seed(suite):
    assert minimal_pair_suite(0, PER) == suite
    shorter = minimal_pair_suite(0, 30)
    assert all(shorter[name] == suite[name][:30] for name in PHENOMENA)  # more pairs extend the list
    other = minimal_pair_suite(1, 30)
    assert all(other[name] != shorter[name] for name in PHENOMENA)


def test_pairs_render_like_the_corpus(suite):
    for pairs in suite.values():
        for pair in pairs:
            for text in pair:
                for s in sentences(text):
                    assert s.endswith(".") and s.count(".") == 1 and s[0].isupper() and "  " not in s


# --- minimality ----------------------------------------------------------------------------

def test_every_pair_differs_only_in_the_tested_words(suite):
    for name, pairs in suite.items():
        for good, bad in pairs:
            assert good != bad
            g, b = words(good), words(bad)
            assert len(g) == len(b), (good, bad)  # same length in words
            diff = [i for i, (x, y) in enumerate(zip(g, b, strict=True)) if x != y]
            if name in SUBSTITUTIONS:
                assert len(diff) == 1, (good, bad)
            elif name == "word_order":  # two adjacent words swapped
                i, j = diff
                assert j == i + 1 and (g[i], g[j]) == (b[j], b[i])
            else:  # topic: same first sentence, content words of the second replaced
                first_good, second_good = sentences(good)
                first_bad, second_bad = sentences(bad)
                assert first_good == first_bad and len(diff) >= 2


# --- the good side is grammatical by construction --------------------------------------------

def _head(ws: list[str]) -> int:
    """Index of the first noun (the subject's head)."""
    return next(i for i, w in enumerate(ws) if w in NOUNS)


def test_agreement_good_side_agrees_with_its_head_across_the_attractor(suite):
    for name in ("agreement_simple", "agreement_attractor"):
        for good, bad in suite[name]:
            g, b = words(good), words(bad)
            verb = next(i for i, (x, y) in enumerate(zip(g, b, strict=True)) if x != y)
            head = _head(g)
            plural = NOUNS[g[head]]
            assert (g[verb] in SINGULAR_VERB_FORMS) != plural, good  # the good verb agrees
            assert FLIP_NUMBER[g[verb]] == b[verb]                  # the bad one does not
            between = [NOUNS[w] for w in g[head + 1:verb] if w in NOUNS]
            if name == "agreement_simple":
                assert verb == head + 1 and not between
            else:  # an attractor of the other number sits in between
                assert verb >= head + 3 and (not plural) in between


def test_determiner_good_side_matches_its_noun(suite):
    for good, bad in suite["determiner_noun"]:
        g, b = words(good), words(bad)
        i = next(i for i, (x, y) in enumerate(zip(g, b, strict=True)) if x != y)
        noun = next(w for w in g[i + 1:] if w in NOUNS)
        assert (g[i] in PLURAL_DETERMINERS) == NOUNS[noun]
        assert b[i] == DETERMINER_NUMBER[g[i]]


def test_polarity_items_are_licensed_only_on_the_good_side(suite):
    for good, bad in suite["npi_negation"]:
        g, b = words(good), words(bad)
        assert {"any", "ever"} & set(g) and {"any", "ever"} & set(b)
        assert {"never", "nobody"} & set(g) and not {"never", "nobody", "not"} & set(b)


def test_argument_structure_good_side_gives_each_verb_its_frame(suite):
    for good, bad in suite["argument_structure"]:
        g, b = words(good), words(bad)
        i = next(i for i, (x, y) in enumerate(zip(g, b, strict=True)) if x != y)
        if g[i] in TRANSITIVE:  # an object follows; the bad verb is intransitive
            assert g[i + 1] in DETERMINERS and b[i] in INTRANSITIVE
        else:  # a preposition follows; the bad verb is transitive
            assert g[i] in INTRANSITIVE and g[i + 1] in LOCATIVE_PREPOSITIONS and b[i] in TRANSITIVE


def test_topic_consistency_good_side_stays_on_topic(suite):
    word_topic = T.word_topic
    for good, bad in suite["topic_consistency"]:
        topics_good = {word_topic[w] for w in words(good.replace(".", "")) if w in word_topic}
        first = {word_topic[w] for w in words(sentences(good)[0]) if w in word_topic}
        second_bad = {word_topic[w] for w in words(sentences(bad)[1]) if w in word_topic}
        assert len(topics_good) == 1 and len(first) == 1
        assert second_bad and not second_bad & first


# --- held out from pretraining; the corpus shows only the good side --------------------------

def test_no_pair_text_is_in_the_pretraining_corpus(suite, corpus, corpus_sentences):
    known = set(corpus_sentences)
    starts = {s[:40] for s in corpus_sentences}  # for the prefix check below
    for name, pairs in suite.items():
        for good, bad in pairs:
            if name == "topic_consistency":
                assert is_reserved(sentences(good)[0])
                assert not any(good in doc or bad in doc for doc in corpus)
                continue
            assert is_reserved(good) and good not in known and bad not in known
            # the bad sentence is not even the start of a corpus sentence
            stem = bad.rstrip(".")
            if stem[:40] in starts:
                assert not any(s.startswith(stem + " ") for s in corpus_sentences), bad
    assert not any(is_reserved(s) for s in known)


def clauses(sentence: str) -> list[list[str]]:
    return [c.split() for c in re.split(r" (?:and|but|so) ", sentence.rstrip(".").lower())]


def test_corpus_never_shows_a_bad_side(corpus_sentences):
    """What the pairs' bad sides do never happens in a sample of the corpus."""
    counts = dict.fromkeys(("any", "ever", "intransitive", "transitive", "demonstrative"), 0)
    for sentence in corpus_sentences:
        for ws in clauses(sentence):
            for i, w in enumerate(ws):
                nxt = ws[i + 1] if i + 1 < len(ws) else None
                if w in ("any", "ever"):  # a licensor earlier in the clause
                    assert {"not", "never", "nobody"} & set(ws[:i]), sentence
                    counts[w] += 1
                if w in INTRANSITIVE or w in REACTIONS:  # never an object
                    assert nxt is None or nxt in PREPOSITIONS, sentence
                    counts["intransitive"] += w in INTRANSITIVE
                if w in ONLY_VERBS and nxt is not None:  # never a bare preposition
                    assert nxt not in PREPOSITIONS, sentence
                    counts["transitive"] += 1
                if w in DETERMINER_NUMBER and nxt not in DETERMINERS:  # (not "that the ..." relatives)
                    noun = next(x for x in ws[i + 1:] if x in NOUNS or x in lx.INVARIANT_NOUNS)
                    if noun in NOUNS:
                        assert (w in PLURAL_DETERMINERS) == NOUNS[noun], sentence
                    counts["demonstrative"] += 1
                # word order: a determiner never ends a phrase ("that the" opens a relative clause)
                if nxt is not None and w in DETERMINERS and not (w == "that" and nxt == "the"):
                    assert nxt not in DETERMINERS | ONLY_VERBS | set(PREPOSITIONS), sentence
    # ... and its good side is common enough to learn (per 1500 documents, ~120k words)
    assert counts["any"] > 200 and counts["ever"] > 100 and counts["intransitive"] > 600
    assert counts["transitive"] > 5000 and counts["demonstrative"] > 2000
