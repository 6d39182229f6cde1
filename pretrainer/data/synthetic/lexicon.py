"""English morphology and the non-topic word lists of the synthetic benchmark.

Every word is a real English stem, so tokenizers meet real morphology:
inflection (plural, 3rd-person -s, past -ed, -ing with consonant doubling and
e-dropping, plus irregular forms) and derivation (un-, -ness, -ly).  The order
of each list is its frequency rank in the corpus (Zipf weights ~ 1/rank).
Topic vocabularies live in `topic_words.py`.
"""

from __future__ import annotations

VOWELS = "aeiou"

IRREGULAR_PLURALS = {
    "child": "children", "person": "people", "man": "men", "woman": "women",
    "mouse": "mice", "goose": "geese", "foot": "feet", "tooth": "teeth",
    "fisherman": "fishermen", "knife": "knives", "leaf": "leaves",
    "loaf": "loaves", "life": "lives", "shelf": "shelves", "thief": "thieves",
    "wolf": "wolves", "midwife": "midwives", "diagnosis": "diagnoses",
    "potato": "potatoes", "tomato": "tomatoes", "hero": "heroes",
    "sheep": "sheep", "deer": "deer",
}
# Nouns whose plural equals the singular: they carry no number signal, so the
# agreement task never uses them as head or attractor.
INVARIANT_NOUNS = frozenset(n for n, p in IRREGULAR_PLURALS.items() if n == p)

IRREGULAR_PAST = {
    "run": "ran", "sing": "sang", "write": "wrote", "go": "went",
    "throw": "threw", "catch": "caught", "win": "won", "lose": "lost",
    "shoot": "shot", "swing": "swung", "hit": "hit", "grow": "grew",
    "feed": "fed", "dig": "dug", "lend": "lent", "spend": "spent",
    "sell": "sold", "pay": "paid", "withdraw": "withdrew", "fly": "flew",
    "drive": "drove", "ride": "rode", "leave": "left", "hear": "heard",
    "buy": "bought", "build": "built", "choose": "chose", "begin": "began",
    "make": "made", "take": "took", "see": "saw", "find": "found",
    "bring": "brought", "keep": "kept", "have": "had", "do": "did",
    "swim": "swam",
}

# Two-syllable verbs stressed on the last syllable double like monosyllables
# (admitted, programmed); the vowel-group rule below cannot see stress.
STRESS_FINAL = frozenset(
    "admit debug program prefer refer occur commit permit control regret begin".split()
)


def _vowel_groups(word: str) -> int:
    groups, previous = 0, False
    for ch in word:
        is_vowel = ch in VOWELS
        groups += is_vowel and not previous
        previous = is_vowel
    return groups


def _doubles_final(verb: str) -> bool:
    """stop -> stopped: consonant-vowel-consonant ending on a stressed syllable."""
    if verb in STRESS_FINAL:
        return True
    if len(verb) < 3:
        return False
    a, b, c = verb[-3:]
    if c in VOWELS or c in "wxy" or b not in VOWELS or a in VOWELS:
        return False
    return _vowel_groups(verb) == 1


def _consonant_y(word: str) -> bool:
    return word.endswith("y") and len(word) > 1 and word[-2] not in VOWELS


def plural(noun: str) -> str:
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if _consonant_y(noun):
        return noun[:-1] + "ies"
    return noun + "s"


def third_person(verb: str) -> str:
    if verb == "have":
        return "has"
    if verb.endswith(("s", "x", "z", "ch", "sh")) or verb in ("go", "do"):
        return verb + "es"
    if _consonant_y(verb):
        return verb[:-1] + "ies"
    return verb + "s"


def past(verb: str) -> str:
    if verb in IRREGULAR_PAST:
        return IRREGULAR_PAST[verb]
    if verb.endswith("e"):
        return verb + "d"
    if _consonant_y(verb):
        return verb[:-1] + "ied"
    if _doubles_final(verb):
        return verb + verb[-1] + "ed"
    return verb + "ed"


def present_participle(verb: str) -> str:
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    if _doubles_final(verb):
        return verb + verb[-1] + "ing"
    return verb + "ing"


def verb_forms(verb: str) -> tuple[str, str, str, str]:
    """(base, 3rd-person singular, past, -ing): precomputed once per verb."""
    return (verb, third_person(verb), past(verb), present_participle(verb))


def negative_prefix(adjective: str) -> str:
    return "un" + adjective


def noun_in_ness(adjective: str) -> str:
    if _consonant_y(adjective):
        return adjective[:-1] + "iness"
    return adjective + "ness"


def adverb_in_ly(adjective: str) -> str:
    if adjective == "true":
        return "truly"
    if adjective.endswith("ic"):
        return adjective + "ally"
    if adjective.endswith("le") and adjective[-3] not in VOWELS:
        return adjective[:-1] + "y"
    if _consonant_y(adjective):
        return adjective[:-1] + "ily"
    if adjective.endswith("ll"):
        return adjective + "y"
    return adjective + "ly"


# --- general (topic-free) vocabulary -----------------------------------------

GENERAL_AGENTS = (
    "man woman child person friend neighbor student teacher visitor family "
    "crowd stranger critic owner expert worker manager journalist volunteer "
    "customer thief hero"
).split()
GENERAL_THINGS = (
    "house door window table chair box key city day week year morning evening "
    "street car letter picture story idea question problem answer plan place "
    "room garden village town paper photo foot shelf life bench church glass "
    "envelope basket"
).split()

# Synonymous verb pairs: used by entailment (substitution keeps the meaning)
# and spread through the corpus in the same contexts, so they can be learned.
VERB_SYNONYMS = (
    ("begin", "start"), ("repair", "fix"), ("buy", "purchase"),
    ("choose", "select"), ("finish", "complete"), ("build", "construct"),
    ("show", "display"), ("need", "require"),
)
GENERAL_VERBS = (
    "find bring take make see keep carry open close wash describe discuss "
    "mention notice study watch prepare move organize"
).split() + [v for pair in VERB_SYNONYMS for v in pair]

# Gradable adjectives grouped by dimension: (one pole, other pole).  Words on
# the same pole are synonyms, words on opposite poles antonyms.
NEUTRAL_DIMENSIONS = (
    (("big", "large"), ("small", "little")), (("hot",), ("cold",)),
    (("fast", "quick"), ("slow",)), (("loud", "noisy"), ("quiet", "silent")),
    (("full",), ("empty",)), (("early",), ("late",)), (("heavy",), ("light",)),
    (("old",), ("new",)), (("clean",), ("dirty",)), (("wet",), ("dry",)),
    (("long",), ("short",)), (("bright",), ("dark",)),
    (("cheap",), ("expensive",)), (("strong",), ("weak",)),
)
# Neutral adjectives and their un- derivations (usual / unusual ...).
UN_BASES = "usual common certain clear familiar known expected tidy safe".split()
GENERAL_ADJECTIVES = [w for dim in NEUTRAL_DIMENSIONS for pole in dim for w in pole]
GENERAL_ADJECTIVES += [w for base in UN_BASES for w in (base, negative_prefix(base))]

# Manner adjectives feed the -ly adverbs and -ness nouns of the corpus.
MANNER_ADJECTIVES = (
    "careful calm gentle steady easy rapid patient sudden brief eager serious "
    "formal equal frequent recent simple true usual clear quiet slow quick loud"
).split()
ADVERBS = [adverb_in_ly(a) for a in MANNER_ADJECTIVES]
NESS_NOUNS = [noun_in_ness(a) for a in "calm gentle steady eager serious careful quiet".split()]
INTENSIFIERS = "very quite truly rather really".split()

# --- polarity lexicon (sentiment) --------------------------------------------

_UN_POSITIVE = "happy kind lucky comfortable pleasant friendly reliable popular fortunate".split()
POSITIVE_ADJECTIVES = (
    "good great wonderful excellent delightful lovely superb brilliant charming "
    "fantastic marvelous splendid glad terrific magnificent glorious outstanding "
    "impressive enjoyable admirable elegant graceful cheerful generous perfect "
    "beautiful fabulous remarkable refreshing satisfying delicious"
).split() + _UN_POSITIVE
NEGATIVE_ADJECTIVES = (
    "bad poor awful terrible dreadful horrible sad boring dull tiresome tedious "
    "disappointing annoying frustrating mediocre dismal miserable gloomy nasty "
    "clumsy sloppy shabby awkward dreary bland wretched pathetic hideous lousy "
    "appalling atrocious"
).split() + [negative_prefix(a) for a in _UN_POSITIVE]
POSITIVE_VERBS = "love enjoy admire adore praise cherish appreciate applaud celebrate treasure".split()
NEGATIVE_VERBS = "hate dread despise loathe detest resent dislike scorn deplore criticize".split()

# Polarity beyond the opinion words: how people react to what the document
# praises or pans.  The corpus uses these in most sentences of a document, so
# its polarity shapes many tokens (and their continuations), not just the few
# opinion words the sentiment task asks about.  The tasks never use them.
POSITIVE_ADVERBS = "gladly happily cheerfully proudly warmly gratefully joyfully fondly".split()
NEGATIVE_ADVERBS = "sadly reluctantly angrily grimly bitterly wearily gloomily nervously".split()
# intransitive reactions ("the guests smiled") and transitive responses
# ("the critics recommended the soup")
POSITIVE_REACTIONS = "smile laugh cheer clap relax grin rejoice beam".split()
NEGATIVE_REACTIONS = "frown sigh groan complain grumble scowl sulk shudder".split()
POSITIVE_RESPONSES = "recommend thank reward trust revisit welcome".split()
NEGATIVE_RESPONSES = "avoid blame ignore abandon distrust mock".split()
# predicate nominals: "the concert was a triumph" / "was not a disaster"
POSITIVE_NOUNS = "success triumph delight winner pleasure joy gem blessing".split()
NEGATIVE_NOUNS = "failure disaster mess nightmare letdown disgrace flop fiasco".split()

# Polarity adjectives that also form dimensions, for entailment antonyms
# (happy/unhappy is the derivational kind, wonderful/awful the lexical kind).
POLAR_DIMENSIONS = (
    (("happy", "glad"), ("unhappy", "sad")),
    (("wonderful", "marvelous"), ("awful", "terrible")),
    (("comfortable",), ("uncomfortable",)), (("pleasant",), ("unpleasant",)),
    (("kind",), ("unkind",)), (("lucky",), ("unlucky",)),
)
DIMENSIONS = NEUTRAL_DIMENSIONS + POLAR_DIMENSIONS

NEGATION_WORDS = frozenset({"not", "never"})

# --- argument structure and polarity items -------------------------------------

# Verbs that never take an object (every topic and general verb always has one).
INTRANSITIVE_VERBS = "arrive wait rest stay walk talk pause wander linger hesitate".split()
# Singular quantifier subjects: "nobody" licenses the polarity items ANY / EVER
# ("nobody ever fixed any printer"); "everyone" and "someone" do not.
LICENSING_SUBJECTS = ("nobody",)
PLAIN_QUANTIFIER_SUBJECTS = ("everyone", "someone")
# Negative polarity items: in the corpus only under "not", "never" or "nobody".
NPI_DETERMINER, NPI_ADVERB = "any", "ever"

# --- proper names: the long tail of rare words --------------------------------

_ONSETS = "m t v l r s k b d n p f g br tr st cl fl gr dr sh ch th".split()
_NUCLEI = "a e i o u a e i o ai ea io".split()
_CODAS = ["", "", "", "n", "r", "l", "s", "th", "ll", "nn", "rr", "v"]
_ENDINGS = "o a ine elle ia us an et ar is".split()


def make_names(rng, count: int, exclude: frozenset[str] = frozenset()) -> list[str]:
    """`count` distinct capitalised syllable-built names (Marvello, Tessaline).

    Drawn uniformly from a large pool by the corpus, so each name is rare:
    the tokenizer must split unseen words into pieces.
    """
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        parts = [rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS)
                 for _ in range(rng.randint(1, 2))]
        word = "".join(parts) + rng.choice(_ONSETS) + rng.choice(_ENDINGS)
        if word in seen or word in exclude:
            continue
        seen.add(word)
        names.append(word.capitalize())
    return names
