"""Subject-verb agreement across an intervening phrase (minimal pairs).

Each sentence has a head noun and, between it and the main verb, a PP or an
object relative clause containing an "attractor" noun of the other number:
"the keys near the cabinet are ..." / "the soup that the chefs cooked is ...".
Unacceptable sentences flip only the main verb's number (is<->are,
was<->were, has<->have, does<->do, cooks<->cook), so the error always spans
the intervening phrase and never sits next to the head.  Head number and
label are independent and balanced, so neither the verb form nor the head
form alone predicts the label: chance (majority class) is 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..examples import LabeledExample
from . import lexicon as lx
from .grammar import PREPOSITIONS, SentenceMaker, render, tables
from .splits import build_splits

LABEL_NAMES = ["unacceptable", "acceptable"]
DESCRIPTION = ("agreement: is the main verb's number right for its subject across "
               "an intervening PP or relative clause? (chance 0.5)")
_AUXILIARIES = (("is", "are"), ("was", "were"), ("has", "have"), ("does", "do"))


def _number_pairs() -> dict[str, str]:
    """singular <-> plural verb forms, both directions."""
    t = tables()
    pairs = list(_AUXILIARIES)
    for vocab in (*t.topics, t.general):
        pairs += [(forms[1], forms[0]) for forms in vocab.verbs.items]
    flip = {}
    for singular, plural in pairs:
        flip[singular], flip[plural] = plural, singular
    return flip


FLIP_NUMBER = _number_pairs()
SINGULAR_VERB_FORMS = frozenset(s for s, _ in _AUXILIARIES) | frozenset(
    forms[1] for vocab in (*tables().topics, tables().general) for forms in vocab.verbs.items)


@dataclass(frozen=True)
class AgreementItem:
    """A grammatical sentence, its structure, and whether it is shown flipped."""

    words: tuple[str, ...]      # the grammatical version, lowercase, no period
    head_index: int
    attractor_index: int
    verb_index: int             # the word that carries number agreement
    head_plural: bool
    acceptable: bool

    @property
    def grammatical_text(self) -> str:
        return render(list(self.words))

    @property
    def text(self) -> str:
        words = list(self.words)
        if not self.acceptable:
            words[self.verb_index] = FLIP_NUMBER[words[self.verb_index]]
        return render(words)


def _noun(m: SentenceMaker, topic: int, agent: bool, avoid=None):
    vocab = m.vocab(topic)
    while True:
        noun = m.pick(vocab.agents if agent else vocab.things)
        # sheep/deer show no number; "the chefs near the chef" is degenerate
        if noun[0] not in lx.INVARIANT_NOUNS and noun != avoid:
            return noun


def _intervener(m: SentenceMaker, topic: int, plural: bool, head) -> tuple[list[str], int]:
    """PP or relative clause holding an attractor of number `plural`;
    returns the words and the attractor's offset within them."""
    if m.chance(0.6):
        words = [m.pick_list(PREPOSITIONS), "the"]
        if m.chance(0.2):
            words.append(m.pick(m.vocab(topic).adjectives))
        words.append(_noun(m, topic, m.chance(0.4), head)[plural])
        return words, len(words) - 1
    verb = m.pick(m.vocab(topic).verbs)
    return ["that", "the", _noun(m, topic, True, head)[plural], verb[2]], 2


def predicate(m: SentenceMaker, topic: int, plural: bool) -> list[str]:
    """Present-tense (or was/were) predicate whose first word agrees."""
    r = m.random()
    if r < 0.4:
        be = ("were" if plural else "was") if r < 0.15 else ("are" if plural else "is")
        middle = ["not"] if m.chance(0.2) else []
        return [be, *middle, m.pick(m.vocab(topic).adjectives)]
    if r < 0.55:
        return ["are" if plural else "is", m.pick(m.vocab(topic).verbs)[3], *m.obj(topic)]
    if r < 0.7:
        return ["have" if plural else "has", *m.obj(topic)]
    verb = m.pick(m.vocab(topic).verbs)
    if r < 0.88:
        return [verb[0] if plural else verb[1], *m.obj(topic)]
    return ["do" if plural else "does", "not", verb[0], *m.obj(topic)]


def make_item(m: SentenceMaker, acceptable: bool) -> AgreementItem:
    topic = int(m.random() * len(m.t.topics))
    plural = m.chance(0.5)
    head = _noun(m, topic, m.chance(0.5))
    adjective = m.pick(m.vocab(topic).adjectives) if m.chance(0.25) else None
    words = m.noun_phrase(head, plural, adjective)
    head_index = len(words) - 1
    intervener, offset = _intervener(m, topic, not plural, head)
    attractor_index = len(words) + offset
    words += intervener
    verb_index = len(words)
    words += predicate(m, topic, plural)
    return AgreementItem(tuple(words), head_index, attractor_index, verb_index,
                         plural, acceptable)


def _make(m: SentenceMaker, label: int, accept):
    item = make_item(m, acceptable=bool(label))
    text = item.text
    if not accept(text):
        return None
    return LabeledExample(text, label), item


def agreement_splits(seed: int, train_size: int, eval_size: int):
    """{split: [(example, AgreementItem)]}: the task with its structures."""
    return build_splits("agreement", seed, train_size, eval_size, (0, 1), _make)
