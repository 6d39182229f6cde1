"""Part-of-speech tagging: one sentence -> a Universal-Dependencies-style tag per word.

The tags come from the grammar itself: every phrase builder's output has a known shape
(determiner, optional adjective, noun; preposition and noun phrase or name; auxiliary,
negation, verb ...), so each word is tagged by the role it was generated for, not by a
dictionary: a word that is a noun in one sentence and a verb in another gets both tags.
Words are drawn uniformly (many are rare in a small train split), so the labels alone
cannot teach most of the lexicon, while the corpus shows every word in context.
"""

from __future__ import annotations

from ..examples import LabeledExample
from .grammar import PRONOUNS, SentenceMaker, render

TAGS = ["DET", "ADJ", "NOUN", "PROPN", "PRON", "VERB", "AUX", "PART", "ADV", "ADP", "SCONJ", "PUNCT"]
DESCRIPTION = "tagging: the part of speech of every word (12 UD-style tags from the grammar; chance = majority tag)"
_AUX = {"do", "does", "did"}
_PRONOUN_WORDS = {word for word, _ in PRONOUNS}


def _noun_phrase_tags(words: list[str]) -> list[str]:
    """`np()` output: determiner, optional adjective, head noun."""
    return ["DET", "ADJ", "NOUN"] if len(words) == 3 else ["DET", "NOUN"]


def _pp(m: SentenceMaker, topic: int) -> tuple[list[str], list[str]]:
    words = m.pp(topic)
    if len(words) == 2 and words[1] in m.names:  # "near Alvarez"
        return words, ["ADP", "PROPN"]
    return words, ["ADP", *_noun_phrase_tags(words[1:])]


def _subject(m: SentenceMaker, topic: int) -> tuple[list[str], list[str], bool]:
    r = m.random()
    if r < 0.08:
        word, plural = PRONOUNS[int(m.random() * len(PRONOUNS))]
        return [word], ["PRON"], plural
    if r < 0.16:
        return [m.name()], ["PROPN"], False
    plural = m.chance(0.4)
    words = m.np(topic, m.chance(0.75), plural)
    tags = _noun_phrase_tags(words)
    r = m.random()
    if r < 0.15:
        pp_words, pp_tags = _pp(m, topic)
        words, tags = words + pp_words, tags + pp_tags
    elif r < 0.25:  # object relative: "that the nurse admired"
        clause = m.relative_clause(topic)
        words, tags = words + clause, tags + ["SCONJ", *_noun_phrase_tags(clause[1:-1]), "VERB"]
    return words, tags, plural


def _verb_group_tags(words: list[str]) -> list[str]:
    """`finite()` output: "did not cook", "never cooked", "cooks"."""
    if words[0] in _AUX:
        return ["AUX", "PART", "VERB"]
    if len(words) == 2:
        return ["ADV", "VERB"]
    return ["VERB"]


def tagged_sentence(m: SentenceMaker, topic: int) -> tuple[list[str], list[str]]:
    words, tags, plural = _subject(m, topic)
    if m.chance(0.5):  # transitive: subject, verb group, object, optional PP
        verb = m.finite(m.pick(m.vocab(topic).verbs), m.tense(), plural, m.chance(0.2))
        obj = m.obj(topic, adj_p=0.4)
        words, tags = words + verb + obj, tags + _verb_group_tags(verb) + _noun_phrase_tags(obj)
        if m.chance(0.4):
            pp_words, pp_tags = _pp(m, topic)
            words, tags = words + pp_words, tags + pp_tags
    else:  # copula: subject, be, optional negation, adjective
        negated = m.chance(0.3)
        words = words + [m.be(m.tense(), plural), *(["not"] if negated else []), m.pick(m.vocab(topic).adjectives)]
        tags = tags + ["AUX", *(["PART"] if negated else []), "ADJ"]
    return words, tags


def make_tagging(m: SentenceMaker, topic: int, accept):
    words, tags = tagged_sentence(m, topic)
    if not accept(render(words)):  # the reserved hash slice: never a corpus sentence
        return None
    text_words = [words[0][0].upper() + words[0][1:], *words[1:], "."]
    label = tuple(TAGS.index(tag) for tag in [*tags, "PUNCT"])
    return LabeledExample(" ".join(text_words), label), None
