"""Looking at what a model learned: `fill-mask` for the masked-LM family, `generate` for
decoders and encoder-decoders, on our runs and on local Hugging Face directories alike
(both load as a `SentenceScorer`: the body, its LM head and the special ids it reads).

* fill-mask: `[CLS] text [SEP]`, every `[MASK]` in the text predicted at once; the top k
  tokens of each with their probabilities.
* generate, decoder: `[CLS] prompt`, then one token at a time until the end-of-text token
  (`[SEP]`), `max_new_tokens` or the model's length.
* generate, T5: the input `prompt <extra_id_0> [SEP]` (or the prompt's own `[MASK]`s as
  sentinels, in order), the decoder's output from `<extra_id_0>` up to the next sentinel:
  what the model puts in the first gap.
* generate, BART: the input `[CLS] prompt [MASK] [SEP]` (or the prompt's own `[MASK]`s), the
  decoder rewrites the whole text (BART reconstructs its input).

Decoding is greedy, or sampling with a temperature and top-k from a seeded generator (the
same seed gives the same text). No key/value cache: each step reruns the model on the
text so far, which is fine at the lengths these models are trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from pretrainer.errors import ConfigError
from pretrainer.evaluation.scoring import SentenceScorer, evaluation_mode
from pretrainer.tokenization.special import sentinel_ids

MASK_TEXT = "[MASK]"  # how a user writes a gap, whatever the tokenizer calls its mask token
FILL_MASK_KINDS = ("pll",)
GENERATE_KINDS = ("causal", "t5", "bart")


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 40
    greedy: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0: the whole vocabulary
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be positive, got {self.max_new_tokens}")
        if not self.greedy and self.temperature <= 0:
            raise ConfigError(f"--temperature must be positive (or use --greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"--top-k must be 0 (no cut) or positive, got {self.top_k}")


def _pieces(text: str) -> list[str]:
    """The text around each `[MASK]`: n masks give n + 1 pieces."""
    return text.split(MASK_TEXT)


def _encode(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids if text.strip() else []


def _with_gaps(tokenizer: Tokenizer, text: str, gap_ids: list[int]) -> list[int]:
    """Token ids of `text` with the i-th `[MASK]` as `gap_ids[i]`. The text before a gap loses its
    trailing space: byte-level and Unigram tokenizers would make a lone space token of it, which
    training never put before a masked word."""
    pieces = _pieces(text)
    ids = _encode(tokenizer, pieces[0].rstrip())
    for number, (gap, piece) in enumerate(zip(gap_ids, pieces[1:], strict=True), start=1):
        ids += [gap, *_encode(tokenizer, piece if number == len(gap_ids) else piece.rstrip())]
    return ids


@torch.no_grad()
def fill_mask(scorer: SentenceScorer, tokenizer: Tokenizer, text: str, top_k: int,
              device: torch.device) -> list[list[tuple[str, float]]]:
    """Per `[MASK]` of `text`, the `top_k` (token, probability) the model puts there, best first."""
    if scorer.kind not in FILL_MASK_KINDS:
        raise ConfigError(f"fill-mask needs a masked-LM model (mlm, wwm, span_mlm, mlm_nsp, mlm_sop or an exported "
                          f"BERT); this one scores as {scorer.kind!r}: use `pretrainer generate` for decoders and "
                          "encoder-decoders")
    gaps = len(_pieces(text)) - 1
    if gaps == 0:
        raise ConfigError(f"fill-mask: the text has no {MASK_TEXT} to fill")
    ids = [scorer.start, *_with_gaps(tokenizer, text, [scorer.mask] * gaps), scorer.end]
    _check_length(scorer, len(ids))
    row = torch.as_tensor([ids], device=device)  # (1, T)
    with evaluation_mode(scorer.body, scorer.head):
        hidden = scorer.body(row, torch.ones_like(row, dtype=torch.bool))[0]  # (T, C)
        probs = F.softmax(scorer.head(hidden[row[0] == scorer.mask]).float(), dim=-1)  # (gaps, V)
    best = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [[(_shown(tokenizer, int(i)), float(p)) for p, i in zip(values, indices, strict=True)]
            for values, indices in zip(best.values.cpu(), best.indices.cpu(), strict=True)]


def _shown(tokenizer: Tokenizer, token_id: int) -> str:
    """A vocabulary entry as text (`Ġsat`, `▁sat`, `##s` as the words they make), else its raw form."""
    return tokenizer.decode([token_id]).strip() or tokenizer.id_to_token(token_id)


@torch.no_grad()
def generate(scorer: SentenceScorer, tokenizer: Tokenizer, prompt: str, decoding: Decoding,
             device: torch.device) -> str:
    """The model's continuation (decoder), gap filling (T5) or rewrite (BART) of `prompt`, as text."""
    if scorer.kind not in GENERATE_KINDS:
        raise ConfigError(f"generate needs a decoder or an encoder-decoder; this model scores as {scorer.kind!r} "
                          "(an encoder): use `pretrainer fill-mask` with a [MASK] in the text")
    with evaluation_mode(scorer.body, scorer.head):
        return _generated(scorer, tokenizer, prompt, decoding, device)


def _generated(scorer: SentenceScorer, tokenizer: Tokenizer, prompt: str, decoding: Decoding,
               device: torch.device) -> str:
    sampler = torch.Generator().manual_seed(decoding.seed)
    if scorer.kind == "causal":
        prefix = [scorer.start, *_encode(tokenizer, prompt.replace(MASK_TEXT, ""))]
        _check_length(scorer, len(prefix))
        new = _decode_loop(lambda ids: scorer.head(scorer.body(ids))[:, -1], scorer, prefix, decoding, sampler,
                           device, stop={scorer.end})
        return tokenizer.decode(prefix[1:] + new)
    memory_ids = _encoder_input(scorer, tokenizer, prompt)
    _check_length(scorer, len(memory_ids))
    source = torch.as_tensor([memory_ids], device=device)
    memory = scorer.body(source, torch.ones_like(source, dtype=torch.bool))  # (1, S, C)

    def next_logits(ids: torch.Tensor) -> torch.Tensor:
        return scorer.head(scorer.body.decode(ids, memory, torch.ones_like(source, dtype=torch.bool)))[:, -1]

    if scorer.kind == "t5":
        stop = {scorer.end, *sentinel_ids(tokenizer)}
        return tokenizer.decode(_decode_loop(next_logits, scorer, [scorer.start, scorer.sentinel], decoding, sampler,
                                             device, stop))
    return tokenizer.decode(_decode_loop(next_logits, scorer, [scorer.start], decoding, sampler, device,
                                         stop={scorer.end}))


def _encoder_input(scorer: SentenceScorer, tokenizer: Tokenizer, prompt: str) -> list[int]:
    """The encoder's row: the prompt with its gaps (a gap at the end when it has none)."""
    if MASK_TEXT not in prompt:
        prompt = f"{prompt} {MASK_TEXT}"
    gaps = len(_pieces(prompt)) - 1
    if scorer.kind == "t5":
        sentinels = sentinel_ids(tokenizer)
        if gaps > len(sentinels):
            raise ConfigError(f"generate: {gaps} gaps but the model has {len(sentinels)} sentinel tokens")
        return [*_with_gaps(tokenizer, prompt, sentinels[:gaps]), scorer.end]
    return [scorer.start, *_with_gaps(tokenizer, prompt, [scorer.mask] * gaps), scorer.end]


def _decode_loop(next_logits, scorer: SentenceScorer, prefix: list[int], decoding: Decoding,
                 sampler: torch.Generator, device: torch.device, stop: set[int]) -> list[int]:
    """New ids after `prefix`, one per step, until a `stop` id (not returned), the step budget or
    the model's length. `next_logits`: (1, T) ids -> (1, V) logits of the next token."""
    ids, new = list(prefix), []
    while len(new) < decoding.max_new_tokens and len(ids) < scorer.body.cfg.max_len:
        logits = next_logits(torch.as_tensor([ids], device=device))[0].float().cpu()  # (V,)
        token = _pick(logits, decoding, sampler, never={scorer.pad, scorer.start} - stop)
        if token in stop:
            break
        ids.append(token)
        new.append(token)
    return new


def _pick(logits: torch.Tensor, decoding: Decoding, sampler: torch.Generator, never: set[int]) -> int:
    """The next token from (V,) logits: the argmax, or a sample at the temperature from the top k."""
    logits = logits.clone()
    logits[list(never)] = float("-inf")  # padding and the start token are never generated
    if decoding.greedy:
        return int(logits.argmax())
    logits = logits / decoding.temperature
    if decoding.top_k:
        cut = logits.topk(min(decoding.top_k, logits.numel())).values[-1]
        logits[logits < cut] = float("-inf")
    return int(torch.multinomial(F.softmax(logits, dim=-1), 1, generator=sampler))


def _check_length(scorer: SentenceScorer, length: int) -> None:
    if length > scorer.body.cfg.max_len:
        raise ConfigError(f"the text is {length} tokens with the special ones; the model reads at most "
                          f"{scorer.body.cfg.max_len} (arch.max_len)")
