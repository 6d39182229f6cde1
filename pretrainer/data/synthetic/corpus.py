"""Unlabeled pretraining documents.

Each document has one latent topic and one latent sentiment.  Content words
come from the topic vocabulary 90% of the time (general words otherwise), with
Zipf frequencies, so topics form co-occurrence clusters.

The sentiment shapes about a fifth of the tokens, not just a few opinion words:
opinions ("the soup was delightful", "the critics did not enjoy the match") are
mostly followed by a consequence of the same polarity ("so the guests gladly
smiled", "so they recommended it"), people react ("the diners grumbled"), and
affirmative clauses take polar manner adverbs and adjectives ("the chef
cheerfully chopped the lovely onion").  So polarity words co-occur densely and
consistently, as topic words do, and a masked LM learns their polarity the way
it learns topic.  Both matter (measured at the demo budget): below ~17% polar
tokens, or with a third of the opinions negated, the polarity of words was not
learned at all; with it, the sentiment task beats scratch.  10% of opinions say
it through negation of the opposite ("the soup was not awful so nobody
complained" is positive): the consequence then follows the clause after
negation, the composition the sentiment task asks of a single sentence.  The
sentiment task's words (opinion adjectives and verbs) are among these.

Subject-verb agreement is exercised at distance: most verbs are present tense
(number shows on every verb, not only was/were), subjects are singular or
plural equally often, and 40% of noun-phrase subjects carry a PP or an object
relative clause whose noun usually has the other number ("the keys near the
cabinets are ...", "the soup that the chefs cooked is ..."), the shapes of the
agreement task.  Each document also follows a cast of recurring people and
things and restates what it says about them (`discourse.py`), the inferences
of the entailment task.  A tenth of the documents are short (16-32 words):
little context beyond the sentence, so word order has to be used.

Grammar the minimal pairs (`minimal_pairs.py`) test is only ever shown on its
grammatical side: "any" and "ever" occur only under "not", "never" or
"nobody"; transitive verbs always have an object and intransitive ones
(`lexicon.INTRANSITIVE_VERBS`, the reactions) never do; determiners agree with
their noun; a document never leaves its topic.
"""

from __future__ import annotations

from random import Random

from .discourse import Cast, Statement
from .grammar import PAST, PREPOSITIONS, PRESENT, PRONOUNS, SentenceMaker, article, is_reserved, name_pool, render
from .lexicon import NPI_ADVERB, NPI_DETERMINER

TOPIC_SHARE = 0.9             # content words from the topic (the rest general); the tasks use 0.85
OPINION_SHARE, REACTION_SHARE = 0.45, 0.2  # of sentences; the rest are facts
CONSEQUENCE_SHARE = 0.8       # opinions followed by "so <reaction>"
NEGATED_OPINION_SHARE = 0.1   # opinions phrased as "not <opposite polarity>"
NEGATED_REACTION_SHARE = 0.05 # ... and reactions
POLAR_ADVERB_SHARE = 0.9      # affirmative actions with a polar manner adverb
POLAR_ADJECTIVE_SHARE = 0.7   # noun phrases of affirmative clauses with a polar adjective
POLAR_VERB_RESPONSE = 0.5     # responses with an opinion verb ("so they adored it")
# Statements about the document's cast of recurring entities, each followed by
# an entailed restatement with this chance (`discourse.py`).
CAST_SHARE, RESTATE_SHARE = 0.15, 0.8
PRESENT_SHARE = 0.6           # the present shows number on every verb, the past on be only
ATTRACTOR_SHARE = 0.4         # noun-phrase subjects with a PP or relative clause before the verb
OPPOSITE_ATTRACTOR = 0.7      # ... whose noun has the other number
ANY_SHARE, EVER_SHARE = 0.5, 0.25  # licensed objects with "any", "did not" with "ever"
# Document lengths in words (stop at the first sentence reaching the target):
# long documents teach topic (many topic words share a context), short ones
# syntax (little context beyond the sentence, so the model must use word order).
SHORT_SHARE = 0.1
SHORT_WORDS, LONG_WORDS = (16, 32), (56, 92)
_FIND = ("find", "finds", "found", "finding")
_HAVE = ("have", "has", "had", "having")
_PERSON_PRONOUNS = tuple(p for p in PRONOUNS if p[0] != "it")

Clause = list[str]


class CorpusWriter:
    """Documents from one seeded stream.  The phrase builders are the corpus's
    own (the tasks use `SentenceMaker`'s, whose draws stay as they were); they
    read the document's `topic` and `positive` sentiment from the writer."""

    def __init__(self, seed: int):
        self.m = SentenceMaker(Random(f"{seed}-corpus"), name_pool(seed), topic_share=TOPIC_SHARE)
        self.topic, self.positive = 0, True
        self.cast: Cast | None = None
        self.said: Statement | None = None     # a cast statement in the sentence being made
        self.restate: Statement | None = None  # ... accepted: restate it next

    def document(self, topic: int, positive: bool) -> str:
        m = self.m
        self.topic, self.positive = topic, positive
        self.cast, self.restate = Cast(m, topic), None
        target = m.rng.randint(*(SHORT_WORDS if m.chance(SHORT_SHARE) else LONG_WORDS))
        sentences: list[str] = []
        count = 0
        while count < target:
            self.said = None
            clauses = self.sentence()
            words = [w for clause in clauses for w in clause]
            text = render(words)
            # The reserved slice belongs to the tasks and minimal pairs: no corpus
            # sentence lies in it, nor any clause that could stand alone as one.
            if is_reserved(text) or (len(clauses) > 1 and any(
                    is_reserved(render(c[1:] if i else c)) for i, c in enumerate(clauses))):
                continue
            sentences.append(text)
            count += len(words)
            self.restate = self.said
        return " ".join(sentences)

    def sentence(self) -> list[Clause]:
        """One sentence as clauses; clauses after the first start with their conjunction."""
        m = self.m
        if self.restate is not None:
            restated, self.restate = self.cast.restatement(self.restate), None
            if restated is not None:
                return [restated.words()]
        r = m.random()
        if r < CAST_SHARE:
            statement = self.cast.statement(adverb=(self.polar_adverb(False) or [None])[0])
            if m.chance(RESTATE_SHARE):
                self.said = statement
            return [statement.words()]
        r = (r - CAST_SHARE) / (1 - CAST_SHARE)
        if r < OPINION_SHARE:
            clauses = [self.opinion()]
            if m.chance(CONSEQUENCE_SHARE):
                clauses.append(["so", *self.reaction(pronoun_p=0.4)])
            return clauses
        if r < OPINION_SHARE + REACTION_SHARE:
            return [self.reaction()]
        clauses = [self.fact()]
        if m.chance(0.12):
            second = self.fact() if m.chance(0.6) else self.reaction()
            clauses.append(["but" if m.chance(0.3) else "and", *second])
        return clauses

    # --- phrases ----------------------------------------------------------------

    def tense(self) -> int:
        return PRESENT if self.m.chance(PRESENT_SHARE) else PAST

    def np(self, agent: bool, plural: bool, polar: bool, adj_p: float = 0.3) -> Clause:
        """A noun phrase of the topic; with `polar`, sometimes with an adjective of
        the document's polarity ("the lovely onion") instead of a topic one."""
        m = self.m
        if polar and m.chance(POLAR_ADJECTIVE_SHARE):
            vocab = m.vocab(self.topic)
            noun = m.pick(vocab.agents if agent else vocab.things)
            return m.noun_phrase(noun, plural, m.pick(m.t.polar_adjectives[int(self.positive)]))
        return m.np(self.topic, agent, plural, adj_p)

    def subject(self, agent_p: float, polar: bool = True, pronouns=PRONOUNS) -> tuple[Clause, bool]:
        """A subject and its number; noun phrases often carry an attractor."""
        m = self.m
        r = m.random()
        if r < 0.05:
            word, plural = pronouns[int(m.random() * len(pronouns))]
            return [word], plural
        if r < 0.1:
            return [m.name()], False
        plural = m.chance(0.5)
        words = self.np(m.chance(agent_p), plural, polar)
        if m.chance(ATTRACTOR_SHARE):
            words += self.intervener(plural)
        return words, plural

    def intervener(self, plural: bool) -> Clause:
        """A PP or object relative clause between subject and verb."""
        m, topic = self.m, self.topic
        attractor = (not plural) if m.chance(OPPOSITE_ATTRACTOR) else plural
        if m.chance(0.65):
            words = [m.pick_list(PREPOSITIONS), *m.np(topic, m.chance(0.3), attractor, adj_p=0.2)]
            return words + m.pp(topic) if m.chance(0.15) else words
        noun = m.np(topic, True, attractor, adj_p=0.0, det="the")
        return ["that", *noun, m.pick(m.vocab(topic).verbs)[2]]

    def person(self, pronoun_p: float, polar: bool) -> tuple[Clause, bool]:
        """Who reacts: a pronoun, or a person of the topic (or a general one)."""
        m = self.m
        if m.chance(pronoun_p):
            word, plural = _PERSON_PRONOUNS[int(m.random() * len(_PERSON_PRONOUNS))]
            return [word], plural
        return self.subject(agent_p=1.0, polar=polar, pronouns=_PERSON_PRONOUNS)

    def verb_group(self, verb, tense: int, plural: bool, negated: bool) -> Clause:
        """`finite`, with "ever" in some negated do-support groups ("did not ever cook")."""
        words = self.m.finite(verb, tense, plural, negated)
        if len(words) == 3 and self.m.chance(EVER_SHARE):
            words.insert(2, NPI_ADVERB)
        return words

    def obj(self, negated: bool) -> Clause:
        """An object noun phrase: under negation sometimes with "any", otherwise
        sometimes with a polar adjective."""
        m = self.m
        if not negated:
            return self.np(m.chance(0.2), m.chance(0.4), True)
        words = m.obj(self.topic)
        if m.chance(ANY_SHARE):
            words[0] = NPI_DETERMINER
        return words

    def maybe_pp(self, p: float) -> Clause:
        return self.m.pp(self.topic) if self.m.chance(p) else []

    def polar_adverb(self, negated: bool) -> Clause:
        m = self.m
        if negated or not m.chance(POLAR_ADVERB_SHARE):
            return []
        return [m.pick(m.t.polar_adverbs[int(self.positive)])]

    # --- polar clauses --------------------------------------------------------------

    def opinion(self) -> Clause:
        m, topic = self.m, self.topic
        negated = m.chance(NEGATED_OPINION_SHARE)
        polarity = int(self.positive != negated)
        tense = self.tense()
        r = m.random()
        subject, plural = self.subject(agent_p=0.4 if r < 0.5 else 0.9, polar=False)
        if r < 0.5:  # copula: "the soup was (not) delightful", "... was a triumph"
            words = [*subject, m.be(tense, plural)]
            if negated:
                words.append(m.negation())
            elif m.chance(0.2) and r < 0.4:
                words.append(m.pick(m.t.intensifiers))
            if r < 0.4:
                return [*words, m.pick(m.t.polar_adjectives[polarity])]
            noun = m.pick(m.t.polar_nouns[polarity])
            return [*words, noun[1]] if plural else [*words, article(noun[0]), noun[0]]
        if r < 0.75:  # polarity verb: "the critics did not enjoy the match"
            verb = m.pick(m.t.polar_verbs[polarity])
            return [*subject, *m.finite(verb, tense, plural, negated), *m.obj(topic)]
        if r < 0.9:  # "the guests found the stew dreadful"
            return [*subject, *m.finite(_FIND, tense, plural, negated),
                    *m.obj(topic, adj_p=0.0), m.pick(m.t.polar_adjectives[polarity])]
        # attributive: no negation can apply, so it uses the document polarity
        verb = m.pick(m.vocab(topic).verbs)
        adjective = m.pick(m.t.polar_adjectives[int(self.positive)])
        obj = m.noun_phrase(m.pick(m.vocab(topic).things), m.chance(0.4), adjective)
        return [*subject, *m.finite(verb, tense, plural, False), *obj]

    def reaction(self, pronoun_p: float = 0.1) -> Clause:
        """How people respond: "the guests gladly smiled", "they recommended it",
        "the diners did not complain" (negated opposite)."""
        m = self.m
        negated = m.chance(NEGATED_REACTION_SHARE)
        polarity = int(self.positive != negated)
        tense = self.tense()
        words, plural = self.person(pronoun_p, polar=not negated)
        words += self.polar_adverb(negated)
        if m.chance(0.6):  # intransitive
            verb = m.pick(m.t.reactions[polarity])
            return [*words, *m.finite(verb, tense, plural, negated), *self.maybe_pp(0.25)]
        verb = m.pick(m.t.polar_verbs[polarity] if m.chance(POLAR_VERB_RESPONSE) else m.t.responses[polarity])
        if m.chance(0.3):
            obj = ["them" if m.chance(0.4) else "it"]
        else:
            obj = m.np(self.topic, m.chance(0.3), m.chance(0.4), adj_p=0.2)
        return [*words, *m.finite(verb, tense, plural, negated), *obj]

    # --- facts ----------------------------------------------------------------------

    def fact(self) -> Clause:
        m, topic = self.m, self.topic
        r = m.random()
        if r < 0.07:
            return self.quantified()
        # things are the natural subjects of "is <adjective>", people of actions
        negated = m.chance(0.2)
        subject, plural = self.subject(agent_p=0.25 if 0.45 <= r < 0.6 else 0.8, polar=not negated)
        tense = self.tense()
        words = list(subject)
        if r < 0.45 or r >= 0.8:  # transitive or intransitive, with an optional adverb
            adverb = self.polar_adverb(negated)
            if not adverb and not negated and m.chance(0.1):
                adverb = [m.pick(m.t.adverbs)]
            words += adverb
            if r >= 0.8:  # "the hikers waited near the river"
                words += self.verb_group(m.pick(m.t.intransitives), tense, plural, negated)
                return words + self.maybe_pp(0.6)
            words += self.verb_group(m.pick(m.vocab(topic).verbs), tense, plural, negated)
            words += self.obj(negated)
        elif r < 0.6:  # copula with a neutral adjective
            words += [m.be(tense, plural), *(["not"] if negated else []),
                      m.pick(m.vocab(topic).adjectives)]
        elif r < 0.7:  # progressive: "the nurses are examining the patient"
            words += [m.be(tense, plural), *(["not"] if negated else []),
                      m.pick(m.vocab(topic).verbs)[3], *self.obj(negated)]
        else:  # possession: has / have / had (r < 0.8)
            words += [*self.verb_group(_HAVE, tense, plural, negated), *self.obj(negated)]
        r = m.random()
        if r < 0.3:
            words += m.pp(topic)
        elif r < 0.35:
            words += ["with", m.pick(m.t.ness_nouns)]
        return words

    def quantified(self) -> Clause:
        """ "nobody ever fixed any printer" / "everyone fixed the printer": polarity
        items only where "nobody" licenses them."""
        m = self.m
        licensed = m.chance(0.5)
        words = ["nobody" if licensed else ("everyone" if m.chance(0.5) else "someone")]
        if licensed and m.chance(0.4):
            words.append(NPI_ADVERB)
        tense = self.tense()
        if m.chance(0.3):
            return [*words, *m.finite(m.pick(m.t.intransitives), tense, False, False),
                    *self.maybe_pp(0.6)]
        verb = m.pick(m.vocab(self.topic).verbs)
        obj = m.obj(self.topic)
        if licensed and m.chance(ANY_SHARE):
            obj[0] = NPI_DETERMINER
        return [*words, *m.finite(verb, tense, False, False), *obj]


def generate_corpus(seed: int, num_documents: int) -> list[str]:
    """`num_documents` documents of about 60-100 words, deterministic in `seed`."""
    writer = CorpusWriter(seed)
    rng = writer.m.rng
    num_topics = len(writer.m.t.topics)
    docs = []
    for _ in range(num_documents):
        topic = int(rng.random() * num_topics)
        docs.append(writer.document(topic, rng.random() < 0.5))
    return docs
