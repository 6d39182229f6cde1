"""Embedded synthetic benchmark: English-like pretraining text, five tasks, minimal pairs.

A seeded, stdlib-only generator written for this project.  `generate_corpus`
gives unlabeled documents (one latent topic and sentiment each);
`generate_task` gives one of four balanced classification tasks or tagging,
whose sentences never occur in any corpus (they live in a reserved hash slice)
and never repeat across train/dev/test; `minimal_pair_suite` gives zero-shot
(grammatical, ungrammatical) pairs per phenomenon, held out the same way.
Same seed, same bytes.

Chance levels (majority class, tasks are balanced): topic 1/8 = 0.125,
sentiment 0.5, agreement 0.5, entailment 1/3.
"""

from .corpus import generate_corpus
from .minimal_pairs import PHENOMENA, minimal_pair_suite
from .tasks import TASK_NAMES, chance_level, generate_task
from .topic_words import TOPICS

__all__ = ["TOPICS", "TASK_NAMES", "PHENOMENA", "generate_corpus", "generate_task", "chance_level",
           "minimal_pair_suite"]
