"""Sampling tables and phrase-level grammar shared by the corpus and the tasks.

Sentences are built as lists of lowercase words and rendered once (capital
letter, final "."), which keeps generation cheap: the default ~1M-word corpus
must take under three seconds.  All randomness goes through one
`random.Random` instance per stream; sampling uses precomputed cumulative
Zipf weights (~1/rank) and `bisect`, or uniform choice for the tasks.
"""

from __future__ import annotations

import zlib
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from random import Random

from . import lexicon as lx
from .topic_words import TOPIC_WORDS

PAST, PRESENT = 0, 1
PREPOSITIONS = "in near with behind beside from for under at on of about".split()
LOCATIVE_PREPOSITIONS = "in near behind beside under at".split()
PRONOUNS = (("he", False), ("she", False), ("it", False), ("they", True))
# (determiner, cumulative probability) by number; "a" becomes "an" as needed.
_SINGULAR_DETS = (("the", 0.55), ("a", 0.8), ("this", 0.86), ("that", 0.9),
                  ("every", 0.95), ("each", 1.0))
_PLURAL_DETS = (("the", 0.55), ("some", 0.67), ("these", 0.75), ("those", 0.8),
                ("many", 0.87), ("several", 0.93), ("two", 1.0))
_CONSONANT_SOUND = ("use", "uni", "eu", "one")  # "a user", "a unit"
_VOWEL_SOUND = ("hour", "honest")

# Task sentences live in a reserved 1/8 slice of sentence-string space
# (CRC32 of the rendered sentence); the corpus never emits a sentence in that
# slice.  Disjointness is thus guaranteed for any corpus seed or size, while
# both sides keep the same distribution apart from this hash partition.
RESERVED_MODULUS = 8
ZIPF_OFFSET = 2.0


def is_reserved(sentence: str) -> bool:
    return zlib.crc32(sentence.encode()) % RESERVED_MODULUS == 0


def render(words: list[str]) -> str:
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def article(next_word: str) -> str:
    vowel = next_word[0] in lx.VOWELS and not next_word.startswith(_CONSONANT_SOUND)
    return "an" if vowel or next_word.startswith(_VOWEL_SOUND) else "a"


@dataclass(frozen=True)
class Pool:
    """A word class with Zipf-Mandelbrot cumulative weights: rank r has
    weight 1/(r + 2), i.e. ~1/r in the tail, but the top word of a short
    list takes ~12% of its uses rather than ~25% (less repetitive text)."""

    items: tuple
    cum: tuple[float, ...]

    @classmethod
    def of(cls, items) -> Pool:
        items = tuple(items)
        weights = [1.0 / (rank + ZIPF_OFFSET) for rank in range(1, len(items) + 1)]
        total, acc, cum = sum(weights), 0.0, []
        for w in weights:
            acc += w / total
            cum.append(acc)
        cum[-1] = 1.0  # random() < 1.0, so bisect never runs off the end
        return cls(items, tuple(cum))


@dataclass(frozen=True)
class Vocabulary:
    """Nouns are (singular, plural) pairs, verbs (base, -s, past, -ing)."""

    agents: Pool
    things: Pool
    verbs: Pool
    adjectives: Pool


def _nouns(words) -> Pool:
    return Pool.of((w, lx.plural(w)) for w in words)


def _verbs(words) -> Pool:
    return Pool.of(lx.verb_forms(v) for v in words)


def _vocabulary(agents, things, verbs, adjectives) -> Vocabulary:
    return Vocabulary(_nouns(agents), _nouns(things),
                      Pool.of(lx.verb_forms(v) for v in verbs), Pool.of(adjectives))


@dataclass(frozen=True)
class Tables:
    topics: tuple[Vocabulary, ...]
    general: Vocabulary
    polar_adjectives: tuple[Pool, Pool]   # (negative, positive)
    polar_verbs: tuple[Pool, Pool]
    adverbs: Pool
    ness_nouns: Pool
    intensifiers: Pool
    word_topic: dict[str, int]            # every inflected topic word -> topic
    # polarity beyond the opinion words, (negative, positive) like the above
    polar_adverbs: tuple[Pool, Pool]
    reactions: tuple[Pool, Pool]          # intransitive verbs
    responses: tuple[Pool, Pool]          # transitive verbs
    polar_nouns: tuple[Pool, Pool]        # (singular, plural) pairs
    intransitives: Pool                   # neutral verbs that never take an object


@lru_cache(maxsize=1)
def tables() -> Tables:
    topics = tuple(_vocabulary(t.agents, t.things, t.verbs, t.adjectives) for t in TOPIC_WORDS)
    word_topic: dict[str, int] = {}
    for index, vocab in enumerate(topics):
        for pool in (vocab.agents, vocab.things, vocab.verbs):
            for forms in pool.items:
                word_topic.update(dict.fromkeys(forms, index))
        word_topic.update(dict.fromkeys(vocab.adjectives.items, index))
    return Tables(
        topics=topics,
        general=_vocabulary(lx.GENERAL_AGENTS, lx.GENERAL_THINGS, lx.GENERAL_VERBS,
                            lx.GENERAL_ADJECTIVES),
        polar_adjectives=(Pool.of(lx.NEGATIVE_ADJECTIVES), Pool.of(lx.POSITIVE_ADJECTIVES)),
        polar_verbs=(_verbs(lx.NEGATIVE_VERBS), _verbs(lx.POSITIVE_VERBS)),
        adverbs=Pool.of(lx.ADVERBS),
        ness_nouns=Pool.of(lx.NESS_NOUNS),
        intensifiers=Pool.of(lx.INTENSIFIERS),
        word_topic=word_topic,
        polar_adverbs=(Pool.of(lx.NEGATIVE_ADVERBS), Pool.of(lx.POSITIVE_ADVERBS)),
        reactions=(_verbs(lx.NEGATIVE_REACTIONS), _verbs(lx.POSITIVE_REACTIONS)),
        responses=(_verbs(lx.NEGATIVE_RESPONSES), _verbs(lx.POSITIVE_RESPONSES)),
        polar_nouns=(_nouns(lx.NEGATIVE_NOUNS), _nouns(lx.POSITIVE_NOUNS)),
        intransitives=_verbs(lx.INTRANSITIVE_VERBS),
    )


@lru_cache(maxsize=8)
def name_pool(seed: int) -> tuple[str, ...]:
    """Rare proper names, shared by the corpus and the tasks of one seed."""
    lowered = frozenset(tables().word_topic) | frozenset(lx.GENERAL_THINGS)
    return tuple(lx.make_names(Random(f"{seed}-names"), 4000, lowered))


class SentenceMaker:
    """Phrase builders over one random stream.

    `uniform=True` (the tasks) draws every word uniformly from its list, so
    rare corpus words are as likely as frequent ones; otherwise Zipf.
    `topic_share` is the chance that a content word comes from the topic
    vocabulary rather than the general one.
    """

    def __init__(self, rng: Random, names, uniform: bool = False, topic_share: float = 0.85):
        self.rng = rng
        self.random = rng.random
        self.names = names
        self.t = tables()
        self.topic_share = topic_share
        self.pick = self._pick_uniform if uniform else self._pick_zipf

    def _pick_zipf(self, pool: Pool):
        return pool.items[bisect_right(pool.cum, self.random())]

    def _pick_uniform(self, pool: Pool):
        items = pool.items
        return items[int(self.random() * len(items))]

    def chance(self, p: float) -> bool:
        return self.random() < p

    def vocab(self, topic: int) -> Vocabulary:
        return self.t.topics[topic] if self.random() < self.topic_share else self.t.general

    def name(self) -> str:
        return self.names[int(self.random() * len(self.names))]

    # --- noun phrases ---------------------------------------------------------

    def determiner(self, plural: bool, next_word: str) -> str:
        r = self.random()
        det = next(d for d, bound in (_PLURAL_DETS if plural else _SINGULAR_DETS) if r < bound)
        return article(next_word) if det == "a" else det

    def noun_phrase(self, noun, plural: bool, adjective: str | None = None,
                    det: str | None = None) -> list[str]:
        head = noun[1] if plural else noun[0]
        words = [adjective, head] if adjective else [head]
        return [det or self.determiner(plural, words[0]), *words]

    def np(self, topic: int, agent: bool, plural: bool, adj_p: float = 0.3,
           det: str | None = None) -> list[str]:
        vocab = self.vocab(topic)
        noun = self.pick(vocab.agents if agent else vocab.things)
        adjective = self.pick(self.vocab(topic).adjectives) if self.chance(adj_p) else None
        return self.noun_phrase(noun, plural, adjective, det)

    def pp(self, topic: int) -> list[str]:
        if self.chance(0.12):
            return [self.pick_list(LOCATIVE_PREPOSITIONS), self.name()]
        prep = self.pick_list(PREPOSITIONS)
        return [prep, *self.np(topic, self.chance(0.25), self.chance(0.4), adj_p=0.2)]

    def relative_clause(self, topic: int) -> list[str]:
        """Object relative in the past tense: "that the nurse admired"."""
        subject = self.np(topic, True, self.chance(0.4), adj_p=0.0, det="the")
        return ["that", *subject, self.pick(self.vocab(topic).verbs)[2]]

    def subject(self, topic: int, agent_p: float = 0.75) -> tuple[list[str], bool]:
        """A subject and its grammatical number (True = plural); `agent_p` is
        the share of people (vs things) among noun-phrase subjects."""
        r = self.random()
        if r < 0.07:
            word, plural = PRONOUNS[int(self.random() * len(PRONOUNS))]
            return [word], plural
        if r < 0.15:
            return [self.name()], False
        plural = self.chance(0.4)
        words = self.np(topic, self.chance(agent_p), plural)
        r = self.random()
        if r < 0.12:
            words += self.pp(topic)
        elif r < 0.18:
            words += self.relative_clause(topic)
        return words, plural

    def obj(self, topic: int, adj_p: float = 0.3) -> list[str]:
        return self.np(topic, self.chance(0.2), self.chance(0.4), adj_p)

    def pick_list(self, items: list[str]) -> str:
        return items[int(self.random() * len(items))]

    # --- verbs ------------------------------------------------------------------

    def tense(self) -> int:
        return PAST if self.chance(0.5) else PRESENT

    @staticmethod
    def be(tense: int, plural: bool) -> str:
        if tense == PAST:
            return "were" if plural else "was"
        return "are" if plural else "is"

    def negation(self) -> str:
        return "never" if self.chance(0.2) else "not"

    def finite(self, verb, tense: int, plural: bool, negated: bool) -> list[str]:
        """Finite verb group agreeing with the subject ("does not cook")."""
        base, third, past, _ = verb
        if negated and self.chance(0.2):
            return ["never", past if tense == PAST else (base if plural else third)]
        if negated:
            aux = "did" if tense == PAST else ("do" if plural else "does")
            return [aux, "not", base]
        if tense == PAST:
            return [past]
        return [base if plural else third]
