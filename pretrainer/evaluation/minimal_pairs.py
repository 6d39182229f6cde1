"""Zero-shot minimal pairs (BLiMP-style): does the pretrained model score the grammatical
sentence of each pair above the ungrammatical one? Accuracy per phenomenon, no fine-tuning.

The pairs come from the embedded grammar (`data=synthetic`: agreement with and without
attractors, determiner-noun agreement, polarity items, argument structure, word order,
topic consistency; held out from the pretraining text) and from local JSONL files in
BLiMP's format (`{"sentence_good": ..., "sentence_bad": ...}` per line, one phenomenon per
file, named by its `UID` field or the file name), so a copy of BLiMP scores real English
the same way. Ties count half.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn

from pretrainer.config import ZeroShotConfig
from pretrainer.data.text import decoded_lines
from pretrainer.errors import ConfigError
from pretrainer.evaluation.scoring import SentenceScorer
from pretrainer.tokenization import SpecialIds

Pairs = list[tuple[str, str]]  # (good, bad)
# Keys beside the phenomena in a result or a metrics.jsonl record: no phenomenon may take them.
RESERVED_NAMES = ("mean", "step", "tokens", "phase", "task", "init")


class PairFileError(ConfigError):
    """A minimal-pair file that cannot be read: names the file and line."""


def read_blimp_jsonl(path: Path) -> tuple[str, Pairs]:
    """(phenomenon, pairs) of one BLiMP-format file."""
    pairs, phenomenon = [], None
    # decoded_lines, not str.splitlines: JSON strings may hold U+2028, U+2029 and U+0085 unescaped
    # (json.dumps(ensure_ascii=False) writes them so), and a byte-order mark is not text.
    try:
        lines = list(decoded_lines(path, "strict", None, PairFileError))  # replacing bytes would change a sentence
    except OSError as error:
        raise PairFileError(f"{path}: cannot read minimal pairs ({error})") from None
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            good, bad = record["sentence_good"], record["sentence_bad"]
        except (json.JSONDecodeError, TypeError, KeyError) as error:
            raise PairFileError(f"{path}:{number}: not a BLiMP record with sentence_good and sentence_bad "
                                f"({type(error).__name__}: {error})") from None
        if not (isinstance(good, str) and isinstance(bad, str) and good.strip() and bad.strip()):
            raise PairFileError(f"{path}:{number}: sentence_good and sentence_bad must be non-empty strings")
        phenomenon = phenomenon or record.get("UID")
        pairs.append((good, bad))
    if not pairs:
        raise PairFileError(f"{path}: no minimal pairs in the file")
    return str(phenomenon or path.stem), pairs


def blimp_files(paths: list[str]) -> list[Path]:
    """The JSONL files named, a directory standing for the `*.jsonl` files in it."""
    found = []
    for entry in paths:
        path = Path(entry).expanduser()
        if path.is_dir():
            found += sorted(path.glob("*.jsonl"))
        elif path.is_file():
            found.append(path)
        else:
            raise PairFileError(f"zero_shot.blimp_files: {path} is neither a file nor a directory")
    return found


def pair_suite(cfg: ZeroShotConfig, data_source: str, seed: int) -> dict[str, Pairs]:
    """phenomenon -> pairs: the embedded suite (when asked for, or `auto` on the embedded corpus)
    and the BLiMP-format files."""
    suite: dict[str, Pairs] = {}
    if cfg.suite == "synthetic" or (cfg.suite == "auto" and data_source == "synthetic"):
        from pretrainer.data.synthetic.minimal_pairs import minimal_pair_suite

        suite |= minimal_pair_suite(seed, cfg.per_phenomenon)
    for path in blimp_files(cfg.blimp_files):
        name, pairs = read_blimp_jsonl(path)
        if name in RESERVED_NAMES:
            raise PairFileError(f"{path}: the phenomenon name {name!r} is reserved (it names a column of the "
                                f"results: {', '.join(RESERVED_NAMES)}); rename the file or its UID")
        suite[name if name not in suite else f"{name} ({path.name})"] = pairs
    return suite


def pair_accuracies(scorer: SentenceScorer, tokenizer: Tokenizer, suite: dict[str, Pairs],
                    device: torch.device) -> dict[str, Any]:
    """{"phenomena": {name: accuracy}, "pairs": {name: pairs scored}, "skipped": {name: pairs longer
    than the model reads}, "mean": unweighted mean accuracy over the phenomena scored}."""
    accuracies, counts, skipped = {}, {}, {}
    for name, pairs in suite.items():
        texts = [text for pair in pairs for text in pair]  # good, bad, good, bad, ...
        ids = [encoding.ids for encoding in tokenizer.encode_batch(texts, add_special_tokens=False)]
        fitting = [(good, bad) for good, bad in zip(ids[0::2], ids[1::2], strict=True)
                   if scorer.fits(good) and scorer.fits(bad)]
        counts[name], skipped[name] = len(fitting), len(pairs) - len(fitting)
        if not fitting:
            continue
        scores = scorer.scores([sentence for pair in fitting for sentence in pair], device).view(-1, 2)  # (pairs, 2)
        wins = (scores[:, 0] > scores[:, 1]).double() + 0.5 * (scores[:, 0] == scores[:, 1]).double()
        accuracies[name] = float(wins.mean())
    mean = sum(accuracies.values()) / len(accuracies) if accuracies else None
    return {"phenomena": accuracies, "pairs": counts, "skipped": {k: v for k, v in skipped.items() if v}, "mean": mean}


def scorer_for(model: nn.Module, special: SpecialIds) -> SentenceScorer:
    """How a PretrainingModel (body + objective) scores sentences, chosen by its objective."""
    from pretrainer.objectives.bart import BartDenoising
    from pretrainer.objectives.clm import CausalLM
    from pretrainer.objectives.electra import Electra
    from pretrainer.objectives.t5_span import T5SpanCorruption

    objective, body = model.objective, model.body
    ids = {"pad": special.pad, "start": special.cls, "end": special.sep}
    if isinstance(objective, Electra):
        return SentenceScorer("discriminator", body, objective.discriminator_head, **ids)
    if isinstance(objective, CausalLM):
        return SentenceScorer("causal", body, objective.head, **ids)
    if isinstance(objective, T5SpanCorruption):
        return SentenceScorer("t5", body, objective.head, sentinel=special.sentinels[0], **ids)
    if isinstance(objective, BartDenoising):
        return SentenceScorer("bart", body, objective.head, mask=special.mask, **ids)
    return SentenceScorer("pll", body, objective.head, mask=special.mask, **ids)  # the masked-LM family
