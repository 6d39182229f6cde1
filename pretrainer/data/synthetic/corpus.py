"""Unlabeled pretraining documents.

Each document has one latent topic and one latent sentiment.  Content words
come from the topic vocabulary 85% of the time (general words otherwise), with
Zipf frequencies, so topics form co-occurrence clusters.  About half the
sentences state an opinion carrying the document's polarity, either directly
("the soup was delightful") or as a negated opposite ("the soup was not
awful"), so polarity words co-occur with each other and with negation.  That
is the signal a few hundred labels cannot provide and pretraining can.
Present-tense sentences agree with their subject, including across PPs and
relative clauses.
"""

from __future__ import annotations

from random import Random

from .grammar import SentenceMaker, is_reserved, name_pool, render

OPINION_SHARE = 0.5
NEGATED_OPINION_SHARE = 0.3   # opinions phrased as "not <opposite polarity>"
MIN_WORDS, MAX_WORDS = 56, 92  # stop at the first sentence reaching the target


class CorpusWriter:
    def __init__(self, seed: int):
        self.m = SentenceMaker(Random(f"{seed}-corpus"), name_pool(seed))

    def document(self, topic: int, positive: bool) -> str:
        m = self.m
        target = m.rng.randint(MIN_WORDS, MAX_WORDS)
        sentences: list[str] = []
        count = 0
        while count < target:
            words = self.sentence(topic, positive)
            text = render(words)
            if is_reserved(text):  # that slice belongs to the tasks
                continue
            sentences.append(text)
            count += len(words)
        return " ".join(sentences)

    def sentence(self, topic: int, positive: bool) -> list[str]:
        words = self.clause(topic, positive)
        if self.m.chance(0.12):
            words += ["but" if self.m.chance(0.4) else "and", *self.clause(topic, positive)]
        return words

    def clause(self, topic: int, positive: bool) -> list[str]:
        if self.m.chance(OPINION_SHARE):
            return self.opinion(topic, positive)
        return self.fact(topic)

    def opinion(self, topic: int, positive: bool) -> list[str]:
        m = self.m
        negated = m.chance(NEGATED_OPINION_SHARE)
        polarity = int(positive != negated)
        tense = m.tense()
        r = m.random()
        subject, plural = m.subject(topic, agent_p=0.4 if r < 0.5 else 0.9)
        if r < 0.5:  # copula: "the soup was (not) delightful"
            words = [*subject, m.be(tense, plural)]
            if negated:
                words.append(m.negation())
            elif m.chance(0.2):
                words.append(m.pick(m.t.intensifiers))
            return [*words, m.pick(m.t.polar_adjectives[polarity])]
        if r < 0.75:  # polarity verb: "the critics did not enjoy the match"
            verb = m.pick(m.t.polar_verbs[polarity])
            return [*subject, *m.finite(verb, tense, plural, negated), *m.obj(topic)]
        if r < 0.9:  # "the guests found the stew dreadful"
            find = ("find", "finds", "found", "finding")
            return [*subject, *m.finite(find, tense, plural, negated),
                    *m.obj(topic, adj_p=0.0), m.pick(m.t.polar_adjectives[polarity])]
        # attributive: no negation can apply, so it uses the document polarity
        verb = m.pick(m.vocab(topic).verbs)
        adjective = m.pick(m.t.polar_adjectives[int(positive)])
        obj = m.noun_phrase(m.pick(m.vocab(topic).things), m.chance(0.4), adjective)
        return [*subject, *m.finite(verb, tense, plural, False), *obj]

    def fact(self, topic: int) -> list[str]:
        m = self.m
        r = m.random()
        # things are the natural subjects of "is <adjective>", people of actions
        subject, plural = m.subject(topic, agent_p=0.25 if 0.55 <= r < 0.75 else 0.8)
        tense = m.tense()
        negated = m.chance(0.15)
        if r < 0.55:  # transitive, optional adverb and trailing PP
            words = list(subject)
            if not negated and m.chance(0.15):
                words.append(m.pick(m.t.adverbs))
            words += m.finite(m.pick(m.vocab(topic).verbs), tense, plural, negated)
            words += m.obj(topic)
        elif r < 0.75:  # copula with a neutral adjective
            words = [*subject, m.be(tense, plural)]
            if negated:
                words.append("not")
            words.append(m.pick(m.vocab(topic).adjectives))
        elif r < 0.88:  # progressive: "the nurses are examining the patient"
            words = [*subject, m.be(tense, plural)]
            if negated:
                words.append("not")
            words += [m.pick(m.vocab(topic).verbs)[3], *m.obj(topic)]
        else:  # possession: has / have / had
            have = ("have", "has", "had", "having")
            words = [*subject, *m.finite(have, tense, plural, negated), *m.obj(topic)]
        r = m.random()
        if r < 0.3:
            words += m.pp(topic)
        elif r < 0.35:
            words += ["with", m.pick(m.t.ness_nouns)]
        return words


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

