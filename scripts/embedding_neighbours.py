"""Does a pretrained body's input embedding know the embedded benchmark's word classes?

    python scripts/embedding_neighbours.py runs/2026-11-26/12-00-00 [more run dirs or checkpoints]

For the topic nouns of the synthetic lexicon that the run's tokenizer keeps whole, the
share whose nearest neighbour (cosine, after removing the mean embedding) has the same
topic; the same for polarity words (positive / negative). Chance is about 1/8 for topics
and 1/2 for polarity; a random init scores chance. This is what the README's benchmark
section means by "the body learned the topic clusters".

Grammatical number is not a cluster (a noun's nearest neighbour is its other form), so it
gets a linear probe instead: the cross-validated accuracy of a logistic regression telling
singular from plural nouns, both forms of a noun always in the same fold. Chance is 1/2.
A body without it cannot learn subject-verb agreement: at the demo budget the untied
symmetric MLM scored 0.67 and agreement 0.52, the decoder 1.00 and 0.90.
"""

from __future__ import annotations

import sys

import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from tokenizers import Tokenizer

from pretrainer.data.synthetic.grammar import tables
from pretrainer.errors import UserError
from pretrainer.tokenization import read_tokenizer
from pretrainer.training.checkpoint import body_state_dict, resolve_checkpoint


def neighbour_agreement(embedding: torch.Tensor, word_ids: list[int], labels: list[int]) -> float:
    """Share of words whose nearest other word (cosine over centred rows of `embedding` (V, C)) has their label."""
    vectors = embedding[word_ids].float() - embedding.float().mean(0)
    vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    similarity = vectors @ vectors.T
    similarity.fill_diagonal_(-2.0)  # never one's own neighbour
    label = torch.tensor(labels)
    return float((label[similarity.argmax(1)] == label).float().mean())


def whole_word_id(tokenizer: Tokenizer, word: str) -> int | None:
    """The id of the one token that spells `word`, or None: split into pieces, or [UNK] (BPE and
    Unigram mark a word start with Ġ or ▁)."""
    encoded = tokenizer.encode(word, add_special_tokens=False)
    return encoded.ids[0] if len(encoded.ids) == 1 and encoded.tokens[0].lstrip("Ġ▁") == word else None


def single_token_words(tokenizer: Tokenizer, groups: list[list[str]]) -> tuple[list[int], list[int]]:
    """(token ids, group index) of the words that the tokenizer keeps whole (`whole_word_id`)."""
    ids, labels = [], []
    for label, words in enumerate(groups):
        for word in words:
            if (token := whole_word_id(tokenizer, word)) is not None:
                ids.append(token)
                labels.append(label)
    return ids, labels


def number_probe(embedding: torch.Tensor, singular_ids: list[int], plural_ids: list[int], folds: int = 5) -> float:
    """Cross-validated accuracy of a linear probe telling the rows `singular_ids` of `embedding`
    (V, C) from `plural_ids` (the same nouns, in order), each noun's two forms in one fold."""
    rows = embedding[singular_ids + plural_ids].float().numpy()
    labels = [0] * len(singular_ids) + [1] * len(plural_ids)
    nouns = list(range(len(singular_ids))) * 2
    probe = LogisticRegression(max_iter=2000)
    return float(cross_val_score(probe, rows, labels, groups=nouns, cv=GroupKFold(folds)).mean())


def noun_forms(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """(singular ids, plural ids) of the lexicon's nouns with two distinct forms, each kept whole."""
    t, pairs = tables(), set()
    for vocab in (*t.topics, t.general):
        pairs |= {(forms[0], forms[1]) for pool in (vocab.agents, vocab.things) for forms in pool.items
                  if forms[0] != forms[1]}
    singular, plural = [], []
    for forms in sorted(pairs):
        ids = [whole_word_id(tokenizer, form) for form in forms]
        if None not in ids:
            singular.append(ids[0])
            plural.append(ids[1])
    return singular, plural


def word_groups() -> dict[str, list[list[str]]]:
    t = tables()
    topics = [[forms[0] for pool in (v.agents, v.things) for forms in pool.items] for v in t.topics]
    polarity = [list(t.polar_adjectives[p].items) + [forms[0] for forms in t.polar_verbs[p].items]
                for p in (0, 1)]
    return {"topic": topics, "polarity": polarity}


def main(inits: list[str]) -> None:
    if not inits:
        raise SystemExit(__doc__)
    try:
        for init in inits:
            print_agreement(init)
    except UserError as error:  # a missing, corrupt or unsafe checkpoint: one line, no traceback
        raise SystemExit(f"embedding_neighbours: {error}") from None


def print_agreement(init: str) -> None:
    """One line: the share of topic / polarity words whose nearest embedding shares their class."""
    _, payload, run_dir = resolve_checkpoint(init)  # verified, weights-only
    embedding = body_state_dict(payload)["tok_emb.weight"]
    tokenizer = read_tokenizer(run_dir / "tokenizer" / "tokenizer.json")
    scores = []
    for name, groups in word_groups().items():
        ids, labels = single_token_words(tokenizer, groups)
        scores.append(f"{name} {neighbour_agreement(embedding, ids, labels):.3f} ({len(ids)} words)")
    singular, plural = noun_forms(tokenizer)
    print(f"{run_dir}: nearest neighbour shares the class: " + ", ".join(scores) +
          f"; noun number, linear probe: {number_probe(embedding, singular, plural):.3f} ({len(singular)} nouns)")


if __name__ == "__main__":
    main(sys.argv[1:])
