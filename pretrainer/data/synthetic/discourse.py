"""Recurring entities: a document follows a small cast and restates what it says.

Real text mentions the same things again, with fewer modifiers or another word
for the same property ("the big soup ... the large soup ... the soup"), and
says a property two ways ("the soup was hot. the soup was not cold.").  Those
are the inferences the entailment task asks about (dropping modifiers,
synonyms, antonyms under negation); a masked LM picks them up by predicting a
restatement from its statement.  Restatements are always entailed by their
statement: the corpus never contradicts itself, and a thing keeps its
properties through a document (it is never both hot and cold).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import lexicon as lx
from .grammar import LOCATIVE_PREPOSITIONS, SentenceMaker

_POLES = [(pole, dim[1 - side]) for dim in lx.NEUTRAL_DIMENSIONS for side, pole in enumerate(dim)]
_VERB_SYNONYMS = {a: b for x, y in lx.VERB_SYNONYMS for a, b in ((x, y), (y, x))}

Words = list[str]


@dataclass
class Entity:
    """One participant: its noun forms, fixed number, and a fixed property, a
    pole of a neutral dimension (("hot",), ("cold",)): its words are synonyms,
    the other pole's are antonyms."""

    noun: tuple[str, str]
    plural: bool
    pole: tuple[str, ...]
    opposite: tuple[str, ...]

    def head(self) -> str:
        return self.noun[self.plural]


@dataclass
class Statement:
    """A past-tense clause about the cast; `text` renders it."""

    subject: Entity
    subject_adj: str | None
    verb: tuple[str, str, str, str] | None  # None: copula "was <predicate>"
    obj: Entity | None
    obj_adj: str | None
    predicate: str | None
    negated: bool
    pp: tuple[str, str] | None  # (preposition, noun)
    adverb: str | None = None   # before an affirmative verb ("gladly cooked")

    def words(self) -> Words:
        words = ["the", *_opt(self.subject_adj), self.subject.head()]
        if self.verb is None:
            be = "were" if self.subject.plural else "was"
            return [*words, be, *_opt("not" if self.negated else None), self.predicate]
        words += ["did", "not", self.verb[0]] if self.negated else [*_opt(self.adverb), self.verb[2]]
        words += ["the", *_opt(self.obj_adj), self.obj.head()]
        return [*words, self.pp[0], "the", self.pp[1]] if self.pp else words


def _opt(word: str | None) -> Words:
    return [word] if word else []


class Cast:
    """The people and things of one document, and the statements made so far."""

    def __init__(self, m: SentenceMaker, topic: int):
        self.m, self.topic = m, topic
        vocab = m.t.topics[topic]
        self.agent = self._entity(m.pick(vocab.agents))
        self.thing = self._entity(m.pick(vocab.things))

    def _entity(self, noun) -> Entity:
        m = self.m
        pole, opposite = _POLES[int(m.random() * len(_POLES))]
        return Entity(noun, m.chance(0.4), pole, opposite)

    def _adjective(self, entity: Entity, p: float) -> str | None:
        return self.m.pick_list(list(entity.pole)) if self.m.chance(p) else None

    def statement(self, adverb: str | None = None) -> Statement:
        """Something new about the cast: an action (with `adverb` if affirmative) or a property."""
        m = self.m
        if m.chance(0.35):  # "the soup was hot" / "the chef was not slow"
            entity = self.thing if m.chance(0.6) else self.agent
            negated = m.chance(0.3)
            predicate = m.pick_list(list(entity.opposite if negated else entity.pole))
            return Statement(entity, None, None, None, None, predicate, negated, None)
        verb = m.pick(m.vocab(self.topic).verbs)
        pp = None
        if m.chance(0.4):
            place = m.vocab(self.topic).things
            pp = (m.pick_list(LOCATIVE_PREPOSITIONS), m.pick(place)[0])
        negated = m.chance(0.2)
        return Statement(self.agent, self._adjective(self.agent, 0.6), verb, self.thing,
                         self._adjective(self.thing, 0.6), None, negated, pp, None if negated else adverb)

    def restatement(self, st: Statement) -> Statement | None:
        """An entailed rewording: modifiers dropped (only the subject's under
        negation, where dropping an object modifier would not follow),
        synonyms swapped in, a property said through its negated antonym."""
        m = self.m
        if st.verb is None:  # a synonym, or "was hot" -> "was not cold"
            synonyms = [w for w in (st.subject.opposite if st.negated else st.subject.pole)
                        if w != st.predicate]
            if st.negated or (synonyms and m.chance(0.4)):
                return _replace(st, predicate=m.pick_list(synonyms)) if synonyms else None
            return _replace(st, predicate=m.pick_list(list(st.subject.opposite)), negated=True)
        verb = st.verb
        if verb[0] in _VERB_SYNONYMS and m.chance(0.5):
            verb = lx.verb_forms(_VERB_SYNONYMS[verb[0]])
        changes = {"verb": verb, "subject_adj": self._synonym_or_none(st.subject, st.subject_adj)}
        if not st.negated:
            changes["obj_adj"] = self._synonym_or_none(st.obj, st.obj_adj)
            changes["pp"] = st.pp if m.chance(0.5) else None
            changes["adverb"] = st.adverb if m.chance(0.5) else None
        return _replace(st, **changes)

    def _synonym_or_none(self, entity: Entity, adjective: str | None) -> str | None:
        if adjective is None or self.m.chance(0.5):
            return None
        return self.m.pick_list(list(entity.pole))


def _replace(st: Statement, **changes) -> Statement:
    return Statement(**{**st.__dict__, **changes})
