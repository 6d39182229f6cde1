"""Balanced, disjoint train/dev/test splits for the synthetic tasks.

Every split has its own random stream (`f"{seed}-{task}-{split}"`), so changing
`eval_size` never changes the training examples.  Labels (or finer "cells",
e.g. label x negated for sentiment) are assigned round-robin and shuffled, so
classes are balanced exactly (up to one example when the size does not
divide).  A sentence is accepted only if it lies in the reserved hash slice
(never emitted by the corpus) and was not used before in any split of the task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from random import Random
from typing import Any

from ..examples import LabeledExample
from .grammar import SentenceMaker, is_reserved, name_pool

Accept = Callable[[str], bool]
# make(maker, cell, accept) -> (example, structure) or None to ask for a retry
Make = Callable[[SentenceMaker, Any, Accept], "tuple[LabeledExample, Any] | None"]
MAX_ATTEMPTS = 10_000  # per example; only reached if the sentence space is exhausted


def build_splits(
    task: str, seed: int, train_size: int, eval_size: int, cells: Sequence[Any],
    make: Make, topic_share: float = 0.85,
) -> dict[str, list[tuple[LabeledExample, Any]]]:
    if train_size < 0 or eval_size < 0:
        raise ValueError("split sizes must be non-negative")
    seen: set[str] = set()

    def accept(sentence: str) -> bool:
        return is_reserved(sentence) and sentence not in seen

    names = name_pool(seed)
    splits: dict[str, list[tuple[LabeledExample, Any]]] = {}
    for split, size in (("train", train_size), ("dev", eval_size), ("test", eval_size)):
        rng = Random(f"{seed}-{task}-{split}")
        maker = SentenceMaker(rng, names, uniform=True, topic_share=topic_share)
        plan = [cells[i % len(cells)] for i in range(size)]
        rng.shuffle(plan)
        made_split = []
        for cell in plan:
            made = _make_one(maker, cell, accept, make, task)
            example = made[0]
            seen.add(example.text_a)
            if example.text_b is not None:
                seen.add(example.text_b)
            made_split.append(made)
        splits[split] = made_split
    return splits


def _make_one(maker: SentenceMaker, cell: Any, accept: Accept, make: Make, task: str):
    for _ in range(MAX_ATTEMPTS):
        made = make(maker, cell, accept)
        if made is not None:
            return made
    raise RuntimeError(f"task {task!r}: could not generate a new example for {cell!r}")
