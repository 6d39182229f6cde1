"""The downstream tasks and their registry: four classification tasks and tagging.

All tasks are balanced by construction, so the majority-class accuracy
(`chance_level`) is 1/num_labels:

* topic       8 classes -> 0.125  one sentence -> its topic
* sentiment   2 classes -> 0.5    one polarity word, maybe negated
* agreement   2 classes -> 0.5    minimal pairs across an attractor
* entailment  3 classes -> 1/3    premise/hypothesis pairs

Task words are drawn uniformly from their lists (the corpus uses Zipf), so
most test words are rare or absent in a small train split but frequent in the
pretraining corpus: labels alone cannot teach them, pretraining can.
"""

from __future__ import annotations

from collections.abc import Callable

from ..examples import LabeledExample, TaskSplits
from . import agreement, entailment, tagging
from .grammar import SentenceMaker, render
from .splits import build_splits
from .topic_words import TOPICS

TASK_NAMES = ("topic", "sentiment", "agreement", "entailment", "tagging")
MIN_TOPIC_WORDS = 2  # content words from the labelled topic in every sentence
_FIND = ("find", "finds", "found", "finding")


# --- topic ------------------------------------------------------------------------

def _topic(m: SentenceMaker, topic: int, accept):
    tense, negated = m.tense(), m.chance(0.15)
    r = m.random()
    if r < 0.6:  # "the drummer quickly tuned the acoustic guitar on the stage"
        subject, plural = m.subject(topic)
        words = list(subject)
        if not negated and m.chance(0.15):
            words.append(m.pick(m.t.adverbs))
        words += m.finite(m.pick(m.vocab(topic).verbs), tense, plural, negated)
        words += m.obj(topic, adj_p=0.4)
    elif r < 0.8:  # "the soup near the oven was spicy"
        plural = m.chance(0.4)
        words = m.np(topic, False, plural, adj_p=0.3)
        if m.chance(0.5):
            words += m.pp(topic)
        words += [m.be(tense, plural), *(["not"] if negated else []),
                  m.pick(m.vocab(topic).adjectives)]
    else:  # progressive
        subject, plural = m.subject(topic)
        words = [*subject, m.be(tense, plural), *(["not"] if negated else []),
                 m.pick(m.vocab(topic).verbs)[3], *m.obj(topic)]
    if r < 0.6 and m.chance(0.4):
        words += m.pp(topic)
    word_topic = m.t.word_topic
    if sum(word_topic.get(w) == topic for w in words) < MIN_TOPIC_WORDS:
        return None
    text = render(words)
    return (LabeledExample(text, topic), None) if accept(text) else None


# --- sentiment --------------------------------------------------------------------

SENTIMENT_CELLS = [(label, negated) for label in (0, 1) for negated in (False, True)]


def _sentiment(m: SentenceMaker, cell, accept):
    """Exactly one polarity word; label = its polarity, flipped by negation.
    Cells (label x negated) are balanced, so each class is half negated and
    every polarity word appears under both labels."""
    label, negated = cell
    polarity = int(label != negated)
    topic = int(m.random() * len(m.t.topics))
    tense = m.tense()
    if m.chance(0.7):
        adjective = m.pick(m.t.polar_adjectives[polarity])
        copula = m.chance(0.65)
        subject, plural = m.subject(topic, agent_p=0.4 if copula else 0.9)
        if copula:  # "the stew was not dreadful"
            words = [*subject, m.be(tense, plural), *([m.negation()] if negated else []),
                     adjective]
        else:  # "the guests did not find the stew delightful"
            words = [*subject, *m.finite(_FIND, tense, plural, negated),
                     *m.obj(topic, adj_p=0.0), adjective]
    else:  # "the fans never enjoyed the match"
        verb = m.pick(m.t.polar_verbs[polarity])
        subject, plural = m.subject(topic, agent_p=0.9)
        words = [*subject, *m.finite(verb, tense, plural, negated), *m.obj(topic)]
    text = render(words)
    return (LabeledExample(text, label), None) if accept(text) else None


# --- registry ---------------------------------------------------------------------

def _simple(task: str, cells, make) -> Callable[[int, int, int], dict]:
    return lambda seed, train, eval_: build_splits(task, seed, train, eval_, cells, make)


_TASKS = {
    "topic": (list(TOPICS), "topic: which of the eight domains is this sentence about? "
              "(chance 0.125)", _simple("topic", range(len(TOPICS)), _topic)),
    "sentiment": (["negative", "positive"], "sentiment: is the single opinion word, after "
                  "negation, positive or negative? (chance 0.5)",
                  _simple("sentiment", SENTIMENT_CELLS, _sentiment)),
    "agreement": (agreement.LABEL_NAMES, agreement.DESCRIPTION, agreement.agreement_splits),
    "entailment": (entailment.LABEL_NAMES, entailment.DESCRIPTION,
                   entailment.entailment_splits),
    "tagging": (tagging.TAGS, tagging.DESCRIPTION, _simple("tagging", range(len(TOPICS)), tagging.make_tagging)),
}
TASK_KINDS = {"tagging": "tagging"}  # the rest are sequence classification


def _check_name(name: str) -> None:
    if name not in _TASKS:
        raise ValueError(f"unknown synthetic task {name!r}; valid names: {', '.join(TASK_NAMES)}")


def generate_task(name: str, seed: int, train_size: int, eval_size: int) -> TaskSplits:
    """One task; train has `train_size` examples, dev and test `eval_size` each."""
    _check_name(name)
    label_names, description, build = _TASKS[name]
    splits = build(seed, train_size, eval_size)
    return TaskSplits(
        name=name, label_names=list(label_names),
        train=[ex for ex, _ in splits["train"]], dev=[ex for ex, _ in splits["dev"]],
        test=[ex for ex, _ in splits["test"]], description=description,
        kind=TASK_KINDS.get(name, "classification"),
    )


def chance_level(name: str) -> float:
    """Accuracy of always predicting the majority class: 1/num_labels, since every
    classification task is balanced by construction (tagging: see `chance_score`)."""
    _check_name(name)
    return 1.0 / len(_TASKS[name][0])
