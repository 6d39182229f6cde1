"""Zero-shot minimal pairs from the embedded grammar (BLiMP-style).

Each pair is (grammatical, ungrammatical): the same number of words, differing
only in the tested word(s), rendered like the corpus (`render`).  The corpus
shows every phenomenon's grammatical side often and never its bad side
(`corpus.py`), so a model of the corpus should score the good side higher.

phenomenon           good                                  bad
agreement_simple     the chefs are tasting the soup        the chefs is tasting the soup
agreement_attractor  the keys near the cabinet are ...     the keys near the cabinet is ...
determiner_noun      these soups are ...                   this soups are ...
npi_negation         the chef never cooked any soup        the chef gladly cooked any soup
                     nobody ever cooked the soup           everyone ever cooked the soup
argument_structure   the chef cooked the soup              the chef waited the soup
                     the chef waited near the oven         the chef cooked near the oven
word_order           the chef cooked the soup              the chef cooked soup the
topic_consistency    a cooking sentence, then another      the same, then a same-shaped
                     cooking sentence                      sentence of another topic

Held out from pretraining like the tasks: every good sentence (for
topic_consistency, its first sentence) lies in the reserved hash slice
(`is_reserved`), which no corpus sentence, nor any clause of one that could
stand alone, ever enters; so no good text is a corpus sentence, and bad texts
lie outside the corpus grammar.  Each phenomenon has its own random stream
(`f"{seed}-pairs-{name}"`): the same seed gives the same pairs, and a larger
`per_phenomenon` extends the lists.  Words follow the corpus's Zipf frequencies.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from .agreement import FLIP_NUMBER, make_item, predicate
from .grammar import LOCATIVE_PREPOSITIONS, PAST, PRESENT, SentenceMaker, is_reserved, name_pool, render
from .lexicon import INVARIANT_NOUNS, NPI_ADVERB, NPI_DETERMINER, PLAIN_QUANTIFIER_SUBJECTS

PHENOMENA: tuple[str, ...] = (
    "agreement_simple", "agreement_attractor", "determiner_noun", "npi_negation",
    "argument_structure", "word_order", "topic_consistency",
)
# The corpus's determiners that show number, singular <-> plural.
DETERMINER_NUMBER = {"this": "these", "that": "those", "every": "many", "each": "several"}
DETERMINER_NUMBER |= {plural: singular for singular, plural in DETERMINER_NUMBER.items()}
PLURAL_DETERMINERS = ("these", "those", "many", "several")
SINGULAR_DETERMINERS = ("this", "that", "every", "each")
MAX_ATTEMPTS = 1000  # per pair; only reached if the sentence space is exhausted

Words = list[str]
Pair = tuple[Words, Words]


# --- shared pieces ------------------------------------------------------------------

def _topic(m: SentenceMaker) -> int:
    return int(m.random() * len(m.t.topics))


def _tense(m: SentenceMaker) -> int:
    return PRESENT if m.chance(0.6) else PAST


def _form(verb, tense: int, plural: bool) -> str:
    """The finite form of an affirmative verb: cooked / cooks / cook."""
    return verb[2] if tense == PAST else (verb[0] if plural else verb[1])


def _np(m: SentenceMaker, topic: int, agent: bool, plural: bool, det: str | None = None) -> Words:
    """A noun phrase whose head shows its number (not sheep/deer)."""
    while True:
        vocab = m.vocab(topic)
        noun = m.pick(vocab.agents if agent else vocab.things)
        if noun[0] not in INVARIANT_NOUNS:
            break
    adjective = m.pick(m.vocab(topic).adjectives) if m.chance(0.25) else None
    return m.noun_phrase(noun, plural, adjective, det)


def _replace(words: Words, index: int, word: str) -> Pair:
    bad = list(words)
    bad[index] = word
    return words, bad


def _clause(m: SentenceMaker, topic: int) -> tuple[Words, int]:
    """ "the chef tasted the soup": subject, affirmative verb, object; and the verb's index."""
    plural = m.chance(0.5)
    subject = _np(m, topic, True, plural)
    verb = m.pick(m.vocab(topic).verbs)
    return [*subject, _form(verb, _tense(m), plural), *_np(m, topic, m.chance(0.2), m.chance(0.4))], len(subject)


# --- phenomena: each draws one (good words, bad words) ---------------------------------

def agreement_simple(m: SentenceMaker) -> Pair:
    """The verb next to its subject flipped in number."""
    topic, plural = _topic(m), m.chance(0.5)
    subject = _np(m, topic, m.chance(0.5), plural)
    words = [*subject, *predicate(m, topic, plural)]
    return _replace(words, len(subject), FLIP_NUMBER[words[len(subject)]])


def agreement_attractor(m: SentenceMaker) -> Pair:
    """A PP or object relative with a noun of the other number between subject and
    verb (the agreement task's shapes), the verb flipped."""
    item = make_item(m, acceptable=True)
    words = list(item.words)
    return _replace(words, item.verb_index, FLIP_NUMBER[words[item.verb_index]])


def determiner_noun(m: SentenceMaker) -> Pair:
    """A demonstrative or quantifier of the wrong number, as subject or object."""
    topic, plural = _topic(m), m.chance(0.5)
    det = m.pick_list(PLURAL_DETERMINERS if plural else SINGULAR_DETERMINERS)
    noun = _np(m, topic, m.chance(0.5), plural, det=det)
    if m.chance(0.5):  # subject: "these soups are spicy"
        return _replace([*noun, *predicate(m, topic, plural)], 0, DETERMINER_NUMBER[det])
    subject_plural = m.chance(0.5)
    subject = _np(m, topic, True, subject_plural)
    verb = m.pick(m.vocab(topic).verbs)
    words = [*subject, _form(verb, _tense(m), subject_plural), *noun]
    return _replace(words, len(subject) + 1, DETERMINER_NUMBER[det])


def npi_negation(m: SentenceMaker) -> Pair:
    """ "any" / "ever" with and without a licensor, the licensor swapped for a
    word of the same place: never <-> a polar manner adverb, nobody <-> everyone/someone."""
    topic, r = _topic(m), m.random()
    if r < 0.5:  # "the chef never cooked any soup" / "the chef gladly cooked any soup"
        words, verb_index = _clause(m, topic)
        words[verb_index + 1] = NPI_DETERMINER  # the object's determiner
        words.insert(verb_index, "never")
        # a polar manner adverb: as common as "never" before a verb in the corpus
        return _replace(words, verb_index, m.pick(m.t.polar_adverbs[int(m.chance(0.5))]))
    verb = m.pick(m.vocab(topic).verbs)
    obj = _np(m, topic, m.chance(0.2), m.chance(0.4))
    if r < 0.75:  # "nobody ever cooked the soup" / "everyone ever cooked the soup"
        words = ["nobody", NPI_ADVERB, _form(verb, _tense(m), False), *obj]
    else:  # "nobody cooked any soup" / "everyone cooked any soup"
        words = ["nobody", _form(verb, _tense(m), False), NPI_DETERMINER, *obj[1:]]
    return _replace(words, 0, m.pick_list(PLAIN_QUANTIFIER_SUBJECTS))


def argument_structure(m: SentenceMaker) -> Pair:
    """A transitive verb without its object or an intransitive one with an object,
    by swapping the verb for one of the other kind (same tense and number)."""
    topic, plural, tense = _topic(m), m.chance(0.5), _tense(m)
    subject = _np(m, topic, True, plural)
    transitive = _form(m.pick(m.vocab(topic).verbs), tense, plural)
    intransitive = _form(m.pick(m.t.intransitives), tense, plural)
    if m.chance(0.5):  # "the chef cooked the soup" / "the chef waited the soup"
        words = [*subject, transitive, *_np(m, topic, m.chance(0.2), m.chance(0.4))]
        return _replace(words, len(subject), intransitive)
    # "the chef waited near the oven" / "the chef cooked near the oven"
    place = _np(m, topic, False, m.chance(0.4))
    words = [*subject, intransitive, m.pick_list(LOCATIVE_PREPOSITIONS), *place]
    return _replace(words, len(subject), transitive)


def word_order(m: SentenceMaker) -> Pair:
    """Two adjacent words swapped: a determiner and its noun or adjective, a
    preposition and its determiner, or "did"/"does" and "not"."""
    topic, plural, tense = _topic(m), m.chance(0.5), _tense(m)
    words = _np(m, topic, True, plural)
    swaps = [0]  # "chef the cooked ..."
    verb = m.pick(m.vocab(topic).verbs)
    if m.chance(0.25):  # "the chef not did cook the soup"
        swaps.append(len(words))
        words += ["did" if tense == PAST else ("do" if plural else "does"), "not", verb[0]]
    else:
        words.append(_form(verb, tense, plural))
    swaps.append(len(words))  # "... cooked soup the"
    words += _np(m, topic, m.chance(0.2), m.chance(0.4))
    if m.chance(0.4):  # "... the near oven" / "... near oven the"
        swaps += [len(words), len(words) + 1]
        words += [m.pick_list(LOCATIVE_PREPOSITIONS), *_np(m, topic, False, m.chance(0.4))]
    i = swaps[int(m.random() * len(swaps))]
    bad = list(words)
    bad[i], bad[i + 1] = words[i + 1], words[i]
    return words, bad


def topic_consistency(m: SentenceMaker) -> tuple[str, str, str]:
    """Two sentences of one topic; the bad side redraws the second with the same
    random numbers (so the same shape and length) from another topic.  `m` draws
    every content word from the topic (topic_share 1)."""
    topic = _topic(m)
    other = (topic + 1 + int(m.random() * (len(m.t.topics) - 1))) % len(m.t.topics)
    first = render(_topic_clause(m, topic))
    state = m.rng.getstate()
    same = render(_topic_clause(m, topic))
    m.rng.setstate(state)
    different = render(_topic_clause(m, other))
    return f"{first} {same}", f"{first} {different}", first


def _topic_clause(m: SentenceMaker, topic: int) -> Words:
    """Subject, verb, object, maybe a PP: a fixed number of draws whatever the topic."""
    plural = m.chance(0.5)
    words = [*m.np(topic, True, plural, adj_p=0.25), _form(m.pick(m.vocab(topic).verbs), _tense(m), plural),
             *m.np(topic, m.chance(0.2), m.chance(0.4), adj_p=0.25)]
    if m.chance(0.3):
        words += [m.pick_list(LOCATIVE_PREPOSITIONS), *m.np(topic, False, m.chance(0.4), adj_p=0.0)]
    return words


# --- the suite ------------------------------------------------------------------------

Build = Callable[[SentenceMaker], tuple[str, str, str]]  # -> (good, bad, the sentence to hold out)


def _one_sentence(make: Callable[[SentenceMaker], Pair]) -> Build:
    def build(m: SentenceMaker) -> tuple[str, str, str]:
        good, bad = make(m)
        return render(good), render(bad), render(good)
    return build


_BUILDERS: dict[str, Build] = {
    "agreement_simple": _one_sentence(agreement_simple),
    "agreement_attractor": _one_sentence(agreement_attractor),
    "determiner_noun": _one_sentence(determiner_noun),
    "npi_negation": _one_sentence(npi_negation),
    "argument_structure": _one_sentence(argument_structure),
    "word_order": _one_sentence(word_order),
    "topic_consistency": topic_consistency,
}


def minimal_pair_suite(seed: int, per_phenomenon: int = 200) -> dict[str, list[tuple[str, str]]]:
    """phenomenon -> [(good text, bad text), ...], `per_phenomenon` distinct pairs each,
    deterministic in `seed` (the corpus seed whose text they are held out from)."""
    if per_phenomenon < 0:
        raise ValueError("per_phenomenon must be non-negative")
    names = name_pool(seed)
    suite = {}
    for name in PHENOMENA:
        share = 1.0 if name == "topic_consistency" else 0.85
        m = SentenceMaker(Random(f"{seed}-pairs-{name}"), names, topic_share=share)
        suite[name] = _pairs(name, _BUILDERS[name], m, per_phenomenon)
    return suite


def _pairs(name: str, build: Build, m: SentenceMaker, count: int) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(pairs) < count:
        for _ in range(MAX_ATTEMPTS):
            good, bad, held_out = build(m)
            if is_reserved(held_out) and good not in seen:  # never a corpus sentence
                break
        else:
            raise RuntimeError(f"minimal pairs {name!r}: could not draw a new pair")
        seen.add(good)
        pairs.append((good, bad))
    return pairs
