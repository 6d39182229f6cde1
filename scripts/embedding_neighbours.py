"""Does a pretrained body's input embedding know the embedded benchmark's word classes?

    python scripts/embedding_neighbours.py runs/2026-11-26/12-00-00 [more run dirs or checkpoints]

For the topic nouns of the synthetic lexicon that the run's tokenizer keeps whole, the
share whose nearest neighbour (cosine, after removing the mean embedding) has the same
topic; the same for polarity words (positive / negative). Chance is about 1/8 for topics
and 1/2 for polarity; a random init scores chance. This is what the README's benchmark
section means by "the body learned the topic clusters".
"""

from __future__ import annotations

import sys

import torch
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


def single_token_words(tokenizer: Tokenizer, groups: list[list[str]]) -> tuple[list[int], list[int]]:
    """(token ids, group index) of the words that the tokenizer keeps as one token."""
    ids, labels = [], []
    for label, words in enumerate(groups):
        for word in words:
            pieces = tokenizer.encode(word, add_special_tokens=False).ids
            if len(pieces) == 1:
                ids.append(pieces[0])
                labels.append(label)
    return ids, labels


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
    print(f"{run_dir}: nearest neighbour shares the class: " + ", ".join(scores))


if __name__ == "__main__":
    main(sys.argv[1:])
