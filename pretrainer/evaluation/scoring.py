"""How much a pretrained model likes a sentence, with no fine-tuning: one log-score per sentence.

Each family scores the way its objective taught it to read text:

* decoder (clm, prefix_lm): the sum of the sentence's token log-probabilities, each given
  the tokens before it, after the beginning-of-text token;
* encoder with an LM head (mlm, wwm, span_mlm, nsp/sop): the pseudo-log-likelihood of
  Salazar et al. (2020): each token masked in turn and scored given all the others — one
  masked copy per token, all copies of many sentences in one batch;
* ELECTRA: its discriminator, which judges every token at once: the sum over the sentence's
  tokens of log P(original) (a token that does not fit looks replaced);
* encoder-decoder: the log-likelihood of the sentence as the decoder's target when the input
  hides it all — T5: the input `<extra_id_0>` and the target `<extra_id_0> sentence`; BART:
  the input `[CLS] [MASK] [SEP]` (one infilled span) and the target `[CLS] sentence`.

Sentences come as token ids without special tokens; the scorer adds the ones its format
needs. Scores are sums over the sentence's tokens, in nats; padding never changes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SCORING_BATCH_TOKENS = 16384  # rows x length per forward: bounded memory for the masked copies


@dataclass(frozen=True)
class SentenceScorer:
    """One way of scoring (see the module docstring), with the ids its format needs."""

    kind: str  # causal | pll | discriminator | t5 | bart
    body: nn.Module
    head: nn.Module  # LM head (B, T, C) -> (B, T, V), or ELECTRA's discriminator head -> (B, T, 1)
    pad: int
    start: int  # beginning of text ([CLS]; a decoder's or T5 decoder's start token)
    end: int  # end of text ([SEP])
    mask: int | None = None  # [MASK] (pll, bart)
    sentinel: int | None = None  # T5's first sentinel

    @property
    def added_tokens(self) -> int:
        """Special tokens the longest row of this format adds to a sentence."""
        return {"causal": 1, "pll": 2, "discriminator": 2, "t5": 2, "bart": 1}[self.kind]

    def fits(self, sentence: Sequence[int]) -> bool:
        """Whether the model can read the sentence in this format (its trained length, arch.max_len)."""
        return len(sentence) + self.added_tokens <= self.body.cfg.max_len

    @torch.no_grad()
    def scores(self, sentences: Sequence[Sequence[int]], device: torch.device) -> torch.Tensor:
        """(N,) float64 log-scores of N tokenised sentences."""
        with evaluation_mode(self.body, self.head):
            return SCORERS[self.kind](self, [list(s) for s in sentences], device)


@contextmanager
def evaluation_mode(*modules: nn.Module) -> Iterator[None]:
    """The modules in eval mode (no dropout) inside, each back in its own mode after."""
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, mode in zip(modules, modes, strict=True):
            module.train(mode)


def _padded(rows: list[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, T) ids and their (B, T) mask of real tokens."""
    lengths = torch.as_tensor([len(row) for row in rows])
    ids = torch.full((len(rows), int(lengths.max())), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
    real = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
    return ids.to(device), real.to(device)


def _chunks(count: int, width: int) -> list[slice]:
    """Consecutive slices of `count` rows, about SCORING_BATCH_TOKENS tokens each (rows of up to `width`)."""
    size = max(1, SCORING_BATCH_TOKENS // max(width, 1))
    return [slice(start, start + size) for start in range(0, count, size)]


def _target_log_probs(logits: torch.Tensor, targets: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits, (B, T) target ids, (B, T) bool -> (B,) sum of the counted log-probs."""
    log_probs = F.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (log_probs.double() * counted).sum(dim=1)


def _causal(scorer: SentenceScorer, sentences: list[list[int]], device: torch.device) -> torch.Tensor:
    """Position t predicts token t+1: the row `[start] sentence`, every sentence token counted."""
    out = []
    for chunk in _chunks(len(sentences), max(len(s) for s in sentences) + 1):
        ids, real = _padded([[scorer.start, *s] for s in sentences[chunk]], scorer.pad, device)
        logits = scorer.head(scorer.body(ids))[:, :-1]  # (B, T-1, V): the next token's logits
        out.append(_target_log_probs(logits, ids[:, 1:], real[:, 1:]))
    return torch.cat(out).cpu()


def _masked_copies(scorer: SentenceScorer, sentences: list[list[int]]) -> tuple[list[list[int]], list[int], list[int]]:
    """Every sentence `[CLS] s [SEP]` once per token, that token masked: (rows, sentence of each
    row, masked position of each row)."""
    rows, owners, positions = [], [], []
    for index, sentence in enumerate(sentences):
        row = [scorer.start, *sentence, scorer.end]
        for position in range(1, len(sentence) + 1):
            rows.append(row[:position] + [scorer.mask] + row[position + 1:])
            owners.append(index)
            positions.append(position)
    return rows, owners, positions


def _pseudo_log_likelihood(scorer: SentenceScorer, sentences: list[list[int]], device: torch.device) -> torch.Tensor:
    rows, owners, positions = _masked_copies(scorer, sentences)
    owners_t, positions_t = torch.as_tensor(owners), torch.as_tensor(positions)
    targets = torch.as_tensor([sentences[o][p - 1] for o, p in zip(owners, positions, strict=True)])
    totals = torch.zeros(len(sentences), dtype=torch.float64)
    for chunk in _chunks(len(rows), max(len(s) for s in sentences) + 2):
        ids, real = _padded(rows[chunk], scorer.pad, device)
        hidden = scorer.body(ids, real)  # (K, T, C)
        picked = hidden[torch.arange(len(ids), device=device), positions_t[chunk].to(device)]  # (K, C): masked only
        log_probs = F.log_softmax(scorer.head(picked).float(), dim=-1)  # (K, V)
        chosen = log_probs.gather(-1, targets[chunk].to(device)[:, None]).squeeze(-1)  # (K,)
        totals.index_add_(0, owners_t[chunk], chosen.double().cpu())
    return totals


def _discriminator(scorer: SentenceScorer, sentences: list[list[int]], device: torch.device) -> torch.Tensor:
    """ELECTRA's discriminator on the intact sentence: log P(original) = log sigmoid(-logit)."""
    out = []
    for chunk in _chunks(len(sentences), max(len(s) for s in sentences) + 2):
        ids, real = _padded([[scorer.start, *s, scorer.end] for s in sentences[chunk]], scorer.pad, device)
        logits = scorer.head(scorer.body(ids, real)).squeeze(-1).float()  # (B, T): replaced-token logits
        counted = real & (ids != scorer.start) & (ids != scorer.end)
        out.append((F.logsigmoid(-logits).double() * counted).sum(dim=1))
    return torch.cat(out).cpu()


def _seq2seq(encoder_row: Callable[[SentenceScorer], list[int]], decoder_prefix: Callable[[SentenceScorer], list[int]]):
    """A scorer of the sentence as the target of one fixed input (the whole sentence hidden)."""

    def score(scorer: SentenceScorer, sentences: list[list[int]], device: torch.device) -> torch.Tensor:
        prefix, out = decoder_prefix(scorer), []
        for chunk in _chunks(len(sentences), max(len(s) for s in sentences) + len(prefix)):
            rows = [prefix + s for s in sentences[chunk]]
            memory_ids, memory_real = _padded([encoder_row(scorer)] * len(rows), scorer.pad, device)
            memory = scorer.body(memory_ids, memory_real)  # (B, T, C)
            decoded, real = _padded(rows, scorer.pad, device)
            hidden = scorer.body.decode(decoded[:, :-1], memory, memory_real)  # (B, S-1, C)
            counted = real[:, 1:].clone()
            counted[:, :len(prefix) - 1] = False  # the prefix after the start token is given, not scored
            out.append(_target_log_probs(scorer.head(hidden), decoded[:, 1:], counted))
        return torch.cat(out).cpu()

    return score


SCORERS: dict[str, Callable[[SentenceScorer, list[list[int]], torch.device], torch.Tensor]] = {
    "causal": _causal,
    "pll": _pseudo_log_likelihood,
    "discriminator": _discriminator,
    "t5": _seq2seq(lambda s: [s.sentinel, s.end], lambda s: [s.start, s.sentinel]),
    "bart": _seq2seq(lambda s: [s.start, s.mask, s.end], lambda s: [s.start]),
}
