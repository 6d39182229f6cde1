"""Tests of the embedded synthetic benchmark (pretrainer.data.synthetic)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from random import Random

import pytest

from pretrainer.data.synthetic import (
    TASK_NAMES,
    TOPICS,
    chance_level,
    generate_corpus,
    generate_task,
)
from pretrainer.data.synthetic import lexicon as lx
from pretrainer.data.synthetic.agreement import FLIP_NUMBER, SINGULAR_VERB_FORMS, agreement_splits
from pretrainer.data.synthetic.corpus import LONG_WORDS, SHORT_WORDS
from pretrainer.data.synthetic.discourse import Cast
from pretrainer.data.synthetic.grammar import PREPOSITIONS, SentenceMaker, is_reserved, name_pool, tables
from pretrainer.data.synthetic.topic_words import TOPIC_WORDS

TRAIN, EVAL = 240, 120
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # import from this checkout


def sentences(doc: str) -> list[str]:
    return re.split(r"(?<=\.) ", doc)


def tokens(sentence: str) -> list[str]:
    return sentence.rstrip(".").lower().split()


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return generate_corpus(0, 300)


@pytest.fixture(scope="module")
def tasks():
    return {name: generate_task(name, 0, TRAIN, EVAL) for name in TASK_NAMES}


def all_texts(task) -> list[str]:
    return [t for split in (task.train, task.dev, task.test) for ex in split
            for t in (ex.text_a, ex.text_b) if t is not None]


# --- determinism ---------------------------------------------------------------

def test_same_seed_same_output():
    assert generate_corpus(7, 40) == generate_corpus(7, 40)
    for name in TASK_NAMES:
        assert generate_task(name, 7, 30, 10) == generate_task(name, 7, 30, 10)


def test_different_seed_different_output():
    assert generate_corpus(1, 20) != generate_corpus(2, 20)
    for name in TASK_NAMES:
        assert generate_task(name, 1, 30, 10).train != generate_task(name, 2, 30, 10).train


def test_output_does_not_depend_on_string_hashing():
    # hash() and set order change with PYTHONHASHSEED; the output must not.
    code = ("import hashlib; from pretrainer.data.synthetic import *; "
            "t = [generate_task(n, 0, 20, 5) for n in TASK_NAMES]; p = minimal_pair_suite(0, 20); "
            "print(hashlib.sha256(repr((generate_corpus(0, 20), t, p)).encode()).hexdigest())")
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        digests.add(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                   capture_output=True, text=True, cwd=ROOT).stdout)
    assert len(digests) == 1


def test_streams_are_independent():
    # More documents extend the corpus; a larger eval split leaves train alone.
    assert generate_corpus(3, 50)[:20] == generate_corpus(3, 20)
    assert generate_task("topic", 3, 40, 10).train == generate_task("topic", 3, 40, 30).train


# --- corpus --------------------------------------------------------------------

def test_corpus_shape(corpus):
    assert len(corpus) == 300 and generate_corpus(0, 0) == []
    lengths = [len(doc.split()) for doc in corpus]
    # targets of 16..32 (short) or 56..92 words, overshoot by at most one sentence (< 40 words)
    short, long = SHORT_WORDS, LONG_WORDS
    assert min(lengths) >= short[0] and max(lengths) <= long[1] + 40
    assert 0.02 * len(corpus) < sum(n < long[0] for n in lengths) < 0.3 * len(corpus)
    for doc in corpus[:50]:
        for s in sentences(doc):
            assert s.endswith(".") and s[0].isupper() and s.count(".") == 1


def test_corpus_words_proportional_to_documents(corpus):
    # Mean ~74 words/doc with sd ~20: over 150+ docs the mean moves < 5%.
    small = sum(len(d.split()) for d in corpus[:150])
    large = sum(len(d.split()) for d in corpus)
    assert 1.8 < large / small < 2.2
    assert 55 < large / len(corpus) < 95


def test_corpus_documents_have_one_topic(corpus):
    word_topic = tables().word_topic
    shares = []
    for doc in corpus:
        counts = Counter(word_topic[w] for w in tokens(doc) if w in word_topic)
        shares.append(counts.most_common(1)[0][1] / sum(counts.values()))
    # topic words come 85% from the document topic and never from others
    assert min(shares) == 1.0


def polarity_lexicon() -> dict[str, int]:
    """Every word that carries polarity in the corpus -> 1 (positive) / 0 (negative)."""
    lexicon = {}
    for words, value in ((lx.POSITIVE_ADJECTIVES, 1), (lx.NEGATIVE_ADJECTIVES, 0),
                         (lx.POSITIVE_ADVERBS, 1), (lx.NEGATIVE_ADVERBS, 0)):
        lexicon |= dict.fromkeys(words, value)
    for nouns, value in ((lx.POSITIVE_NOUNS, 1), (lx.NEGATIVE_NOUNS, 0)):
        lexicon |= {form: value for n in nouns for form in (n, lx.plural(n))}
    for verbs, value in ((lx.POSITIVE_VERBS, 1), (lx.NEGATIVE_VERBS, 0), (lx.POSITIVE_REACTIONS, 1),
                         (lx.NEGATIVE_REACTIONS, 0), (lx.POSITIVE_RESPONSES, 1),
                         (lx.NEGATIVE_RESPONSES, 0)):
        lexicon |= {form: value for v in verbs for form in lx.verb_forms(v)}
    return lexicon


POLARITY = polarity_lexicon()


def clause_polarities(sentence: str) -> list[int | None]:
    """Each clause's polarity after negation (None: no polar word)."""
    result = []
    for clause in re.split(r" (?:and|but|so) ", sentence):
        words = tokens(clause)
        flip = bool(lx.NEGATION_WORDS & set(words))
        signs = {POLARITY[w] ^ flip for w in words if w in POLARITY}
        assert len(signs) <= 1, sentence  # one polarity per clause
        result.append(signs.pop() if signs else None)
    return result


def test_corpus_polarity_is_consistent_within_documents(corpus):
    # Every polar clause, negated or not, says the document's latent sentiment.
    for doc in corpus:
        signs = {p for s in sentences(doc) for p in clause_polarities(s)} - {None}
        assert len(signs) == 1, doc


def test_polarity_shapes_most_sentences_and_needs_negation(corpus):
    """Polarity decides words in most sentences (opinions, consequences, reactions, polar
    adverbs), and a consequence follows the polarity of its clause after negation."""
    polar = total = negated = consequences = 0
    for doc in corpus:
        for s in sentences(doc):
            total += 1
            polar += any(w in POLARITY for w in tokens(s))
            if " so " in s:
                first, second = clause_polarities(s)
                assert first is not None and first == second, s
                consequences += 1
                negated += bool(lx.NEGATION_WORDS & set(tokens(s.split(" so ")[0])))
    assert polar > 0.7 * total and consequences > 0.15 * total
    # 10% of opinions are negated opposites (more and word polarity is not learned at the demo budget)
    assert 0.05 < negated / consequences < 0.15


def test_corpus_exercises_agreement_across_attractors(corpus):
    """Subjects "the N <prep> the M" with M of the other number, then a verb that agrees with N."""
    nouns = {form: plural for v in (*tables().topics, tables().general) for pool in (v.agents, v.things)
             for s, p in pool.items if s != p for form, plural in ((s, False), (p, True))}
    verbs = {form: True for form in FLIP_NUMBER if form not in SINGULAR_VERB_FORMS}
    verbs |= dict.fromkeys(SINGULAR_VERB_FORMS, False)
    dets = set("the these those this that a an some every each many several two".split())
    attracted = 0
    for doc in corpus:
        for s in sentences(doc):
            ws = tokens(s)
            if not (ws[0] in dets and ws[1] in nouns and ws[2] in PREPOSITIONS and ws[3] in dets):
                continue
            j = 4 if ws[4] in nouns else 5  # an adjective before the attractor
            if ws[j] not in nouns or ws[j + 1] not in verbs:
                continue  # e.g. a second PP before the verb
            assert verbs[ws[j + 1]] == nouns[ws[1]], s  # the verb agrees with the head
            attracted += nouns[ws[j]] != nouns[ws[1]]
    # this narrow pattern (sentence-initial "det noun prep det [adj] noun verb") alone finds
    # ~20 per 100 documents; subjects with a PP or relative clause are ~2.5 per document
    assert attracted > 0.1 * len(corpus)


def test_restatements_are_entailed_and_properties_stay_fixed():
    """A document's cast keeps its properties; a restatement only drops modifiers (not an
    object's under negation), swaps synonyms, or says a property by its negated antonym."""
    m = SentenceMaker(Random("restatements"), name_pool(0))
    verb_synonyms = {a: b for x, y in lx.VERB_SYNONYMS for a, b in ((x, y), (y, x))}
    kinds = Counter()
    for topic in range(len(TOPICS)):
        cast = Cast(m, topic)
        for _ in range(150):
            st = cast.statement(adverb="gladly" if m.chance(0.5) else None)
            entity = st.subject if st.verb is None else st.obj
            for said in (st, cast.restatement(st)):
                if said is None:
                    continue
                if said.verb is None:  # the property is its pole, or "not" its opposite
                    assert said.predicate in (entity.opposite if said.negated else entity.pole)
                for adjective, who in ((said.subject_adj, said.subject), (said.obj_adj, said.obj)):
                    assert adjective is None or adjective in who.pole
            re = cast.restatement(st)
            if re is None:
                continue
            assert (re.subject, re.obj) == (st.subject, st.obj)
            if st.verb is None:
                kinds["antonym" if re.negated != st.negated else "synonym"] += 1
                assert re.negated or not st.negated  # "not cold" is never restated as "hot"
                continue
            assert re.negated == st.negated
            assert re.verb in (st.verb, lx.verb_forms(verb_synonyms.get(st.verb[0], st.verb[0])))
            assert st.subject_adj is not None or re.subject_adj is None  # nothing added
            if st.negated:  # "did not cook the hot soup" does not entail "did not cook the soup"
                assert (re.obj_adj, re.pp) == (st.obj_adj, st.pp)
            else:
                assert st.obj_adj is not None or re.obj_adj is None
                assert re.pp in (None, st.pp) and re.adverb in (None, st.adverb)
            kinds["dropped" if len(re.words()) < len(st.words()) else "kept"] += 1
    assert min(kinds.values()) > 20, kinds


def test_names_are_rare():
    docs = generate_corpus(0, 1500)
    names = set(name_pool(0))
    counts = Counter(w.rstrip(".") for d in docs for w in d.split() if w.rstrip(".") in names)
    total = sum(len(d.split()) for d in docs)
    assert len(counts) > 500                       # a long tail of distinct names
    assert max(counts.values()) < total / 5000     # none of them frequent


# --- all tasks -------------------------------------------------------------------

CLASSIFICATION_TASKS = [name for name in TASK_NAMES if name != "tagging"]  # tagging: tested on its own below


@pytest.mark.parametrize("name", CLASSIFICATION_TASKS)
def test_split_sizes_and_exact_balance(tasks, name):
    task = tasks[name]
    assert (len(task.train), len(task.dev), len(task.test)) == (TRAIN, EVAL, EVAL)
    assert task.description and task.name == name
    for split in (task.train, task.dev, task.test):
        counts = Counter(ex.label for ex in split)
        assert set(counts) == set(range(task.num_labels))
        # labels are dealt round-robin then shuffled: balance is exact up to
        # one example when the size is not a multiple of the class count
        assert max(counts.values()) - min(counts.values()) <= 1
    assert chance_level(name) == pytest.approx(1 / task.num_labels)
    assert task.is_pair_task == (name == "entailment")


@pytest.mark.parametrize("name", CLASSIFICATION_TASKS)
def test_task_sentences_disjoint_from_corpus_and_splits(tasks, corpus, name):
    corpus_sentences = {s for doc in corpus for s in sentences(doc)}
    assert not any(is_reserved(s) for s in corpus_sentences)
    task = tasks[name]
    texts = all_texts(task)
    assert all(is_reserved(t) for t in texts)
    assert not set(texts) & corpus_sentences
    assert len(set(texts)) == len(texts)  # no reuse within or across splits


# --- topic ---------------------------------------------------------------------

def test_topic_sentences_use_their_topic_words(tasks):
    task = tasks["topic"]
    assert task.label_names == TOPICS and len(TOPICS) == 8
    word_topic = tables().word_topic
    for ex in task.train + task.test:
        words = tokens(ex.text_a)
        counts = Counter(word_topic[w] for w in words if w in word_topic)
        assert counts[ex.label] >= 2 and set(counts) == {ex.label}
        assert not set(words) & set(TOPICS)


def test_topic_test_words_often_unseen_in_small_train():
    task = generate_task("topic", 4, 80, 200)
    word_topic = tables().word_topic
    seen = {w for ex in task.train for w in tokens(ex.text_a) if w in word_topic}
    test = {w for ex in task.test for w in tokens(ex.text_a) if w in word_topic}
    assert len(test - seen) > 0.3 * len(test)


# --- sentiment -------------------------------------------------------------------

def test_sentiment_one_polarity_word_and_negation_balance(tasks):
    task = tasks["sentiment"]
    assert task.label_names == ["negative", "positive"]
    polarity = {w: 1 for w in lx.POSITIVE_ADJECTIVES} | {w: 0 for w in lx.NEGATIVE_ADJECTIVES}
    for verbs, value in ((lx.POSITIVE_VERBS, 1), (lx.NEGATIVE_VERBS, 0)):
        polarity |= {form: value for v in verbs for form in lx.verb_forms(v)}
    word_labels = defaultdict(set)
    for split in (task.train, task.dev, task.test):
        negated = Counter()
        for ex in split:
            words = tokens(ex.text_a)
            found = [w for w in words if w in polarity]
            assert len(found) == 1, ex.text_a
            is_negated = bool(lx.NEGATION_WORDS & set(words))
            assert ex.label == polarity[found[0]] ^ is_negated
            negated[ex.label] += is_negated
            word_labels[found[0]].add(ex.label)
        for label in (0, 1):
            # (label, negated) cells are dealt round-robin: exact halves +-1
            n = sum(ex.label == label for ex in split)
            assert abs(negated[label] - n / 2) <= 1
    both = sum(len(labels) == 2 for labels in word_labels.values())
    assert both >= 0.6 * len(word_labels)  # ~7 uses per word at this size


# --- agreement -------------------------------------------------------------------

def test_agreement_structure_and_minimal_pairs():
    splits = agreement_splits(0, TRAIN, EVAL)
    assert [ex for ex, _ in splits["train"]] == generate_task("agreement", 0, TRAIN, EVAL).train
    plural_nouns = {p for v in (*tables().topics, tables().general)
                    for pool in (v.agents, v.things) for s, p in pool.items if s != p}
    heads_by_label = defaultdict(set)
    for ex, item in (pair for split in splits.values() for pair in split):
        assert ex.text_a == item.text and ex.label == int(item.acceptable)
        words = list(item.words)
        head, attractor = words[item.head_index], words[item.attractor_index]
        assert item.head_index + 2 <= item.attractor_index < item.verb_index
        assert (head in plural_nouns) == item.head_plural
        assert (attractor in plural_nouns) != item.head_plural
        # the grammatical version agrees with the head, not the attractor
        assert (words[item.verb_index] in SINGULAR_VERB_FORMS) != item.head_plural
        shown = tokens(ex.text_a)
        pairs = zip(shown, tokens(item.grammatical_text), strict=True)  # same length
        diff = [i for i, (a, b) in enumerate(pairs) if a != b]
        assert diff == ([] if item.acceptable else [item.verb_index])
        heads_by_label[ex.label].add(item.head_plural)
    assert heads_by_label == {0: {False, True}, 1: {False, True}}


# --- entailment ------------------------------------------------------------------

def test_entailment_pairs(tasks):
    task = tasks["entailment"]
    assert task.label_names == ["entailment", "neutral", "contradiction"]
    for ex in task.train:
        assert ex.text_b is not None and ex.text_a != ex.text_b


def test_entailment_overlap_alone_is_weak():
    # Best lookup from (hypothesis-is-subset, length change) to label: if the
    # generator leaked the label through overlap this would approach 1.0.
    task = generate_task("entailment", 5, 900, 0)
    cells = defaultdict(Counter)
    for ex in task.train:
        a, b = tokens(ex.text_a), tokens(ex.text_b)
        cells[set(b) <= set(a), (len(b) > len(a)) - (len(b) < len(a))][ex.label] += 1
    accuracy = sum(c.most_common(1)[0][1] for c in cells.values()) / len(task.train)
    assert accuracy < 0.6


# --- lexicon and morphology ------------------------------------------------------

def test_inflection():
    assert [lx.plural(w) for w in ("child", "box", "city", "key")] == \
        ["children", "boxes", "cities", "keys"]
    assert [lx.past(w) for w in ("run", "walk", "stop")] == ["ran", "walked", "stopped"]
    assert [lx.present_participle(w) for w in ("make", "run", "play")] == \
        ["making", "running", "playing"]
    assert [lx.third_person(w) for w in ("go", "watch", "study")] == ["goes", "watches", "studies"]
    assert [lx.past(w) for w in ("visit", "admit", "fry")] == ["visited", "admitted", "fried"]


def test_derivation():
    assert lx.negative_prefix("happy") == "unhappy"
    assert lx.noun_in_ness("happy") == "happiness"
    assert [lx.adverb_in_ly(w) for w in ("quick", "gentle", "easy", "true")] == \
        ["quickly", "gently", "easily", "truly"]


def test_lexicon_sizes_and_disjointness():
    owner: dict[str, set[str]] = defaultdict(set)
    for topic in TOPIC_WORDS:
        assert 40 <= len(topic.agents) + len(topic.things) <= 60
        assert len(topic.verbs) >= 15 and len(topic.adjectives) >= 10
        for noun in topic.agents + topic.things:
            owner[noun].add(topic.name)
            owner[lx.plural(noun)].add(topic.name)
        for verb in topic.verbs:
            for form in lx.verb_forms(verb):
                owner[form].add(topic.name)
        for adjective in topic.adjectives:
            owner[adjective].add(topic.name)
    other = set(lx.GENERAL_AGENTS + lx.GENERAL_THINGS + lx.GENERAL_ADJECTIVES + lx.ADVERBS)
    other |= {f for v in lx.GENERAL_VERBS + lx.INTRANSITIVE_VERBS for f in lx.verb_forms(v)}
    polar = set(POLARITY)
    assert all(len(topics) == 1 for topics in owner.values())
    assert not set(owner) & (other | polar) and not other & polar
    # no word carries both polarities; the polarity lists are disjoint from each other
    lists = [lx.POSITIVE_ADJECTIVES, lx.NEGATIVE_ADJECTIVES, lx.POSITIVE_ADVERBS, lx.NEGATIVE_ADVERBS,
             lx.POSITIVE_NOUNS, lx.NEGATIVE_NOUNS, lx.POSITIVE_VERBS + lx.POSITIVE_REACTIONS
             + lx.POSITIVE_RESPONSES, lx.NEGATIVE_VERBS + lx.NEGATIVE_REACTIONS + lx.NEGATIVE_RESPONSES]
    assert sum(map(len, lists)) == len({w for words in lists for w in words})
    assert 35 <= len(lx.POSITIVE_ADJECTIVES) <= 45 and 35 <= len(lx.NEGATIVE_ADJECTIVES) <= 45
    assert len(lx.POSITIVE_VERBS) == len(lx.NEGATIVE_VERBS) == 10


# --- errors --------------------------------------------------------------------

def test_unknown_task_lists_valid_names():
    for call in (lambda: generate_task("parsing", 0, 10, 10), lambda: chance_level("parsing")):
        with pytest.raises(ValueError) as info:
            call()
        assert all(name in str(info.value) for name in TASK_NAMES)


def test_tagging_task_tags_every_word_by_its_grammatical_role():
    from pretrainer.data.synthetic import generate_task
    from pretrainer.data.synthetic.grammar import is_reserved

    task = generate_task("tagging", 0, 300, 50)
    assert task.kind == "tagging" and task.num_labels == 12
    assert generate_task("tagging", 0, 300, 50).train == task.train  # same seed, same task
    names = task.label_names
    tags_seen = set()
    for example in task.train + task.dev + task.test:
        words, tags = example.text_a.split(), [names[i] for i in example.label]
        assert len(words) == len(tags) and words[-1] == "." and tags[-1] == "PUNCT"
        rendered = " ".join(words[:-1]) + "."
        assert is_reserved(rendered[0].upper() + rendered[1:])  # the rendered sentence is never a corpus sentence
        for i, (word, tag) in enumerate(zip(words, tags, strict=True)):
            if word.lower() in ("the", "a", "an", "every", "these", "those", "some"):
                assert tag == "DET", example.text_a
            if word in ("did", "does", "do"):
                assert tag == "AUX" and tags[i + 1] == "PART" and tags[i + 2] == "VERB"
            if word in ("was", "were", "is", "are"):
                assert tag == "AUX"
        tags_seen.update(tags)
    assert tags_seen == set(names)  # every tag occurs
    texts = [ex.text_a for ex in task.train + task.dev + task.test]
    assert len(set(texts)) == len(texts)  # splits are disjoint
