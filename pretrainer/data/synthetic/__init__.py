"""Embedded synthetic benchmark: English-like pretraining text plus four tasks.

A seeded, stdlib-only generator written for this project.  `generate_corpus`
gives unlabeled documents (one latent topic and sentiment each);
`generate_task` gives one of four balanced classification tasks whose
sentences never occur in any corpus (they live in a reserved hash slice) and
never repeat across train/dev/test.  Same seed, same bytes.

Chance levels (majority class, tasks are balanced): topic 1/8 = 0.125,
sentiment 0.5, agreement 0.5, entailment 1/3.
"""

from .corpus import generate_corpus
from .tasks import TASK_NAMES, chance_level, generate_task
from .topic_words import TOPICS

__all__ = ["TOPICS", "TASK_NAMES", "generate_corpus", "generate_task", "chance_level"]
