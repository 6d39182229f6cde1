"""The tokenizer kinds, each built from Hugging Face `tokenizers` components only, so the
result is a plain `tokenizer.json` that `Tokenizer.from_file` loads.

- `bpe`: byte-level BPE (GPT-2): bytes, GPT-2's regex, no prefix space; never unknown.
- `wordpiece`: WordPiece (BERT), `##` continuations, whitespace + punctuation split, CJK
  characters apart; `[UNK]` for a word with a character never seen.
- `unigram`: Unigram LM (SentencePiece) over a metaspace (`▁`) stream, so text without
  spaces (Chinese) is cut into pieces too; unseen characters fall back to their bytes.
- `char`: one token per character (spaces as `▁`); `[UNK]` beyond the K most frequent.
- `word`: one token per word (whitespace + punctuation); `[UNK]` beyond the top K.
- `word_char`: whole words for the K most frequent, byte-level characters for every
  other word; never unknown.

Training is deterministic: the same sample gives the same `tokenizer.json` byte for
byte. Hugging Face's WordPiece trainer is not (its `##` alphabet takes hash-map order and
breaks count ties with it, huggingface/tokenizers#1794), so `wordpiece` is trained as
deterministic BPE and relabelled: pieces that continue a word get `##`, and the
vocabulary keeps the most frequent labelled pieces. Unigram scores carry float noise
from parallel EM; they are rounded to 6 decimals and the pieces sorted by score.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from pretrainer.config import ConfigError, TokenizerConfig
from pretrainer.tokenization.special import SPECIAL_TOKENS, UNK

METASPACE = "\u2581"  # ▁
KINDS_VERSION = 3  # part of the cache key: bump when a builder changes what it trains


def unicode_normalizer(cfg: TokenizerConfig) -> normalizers.Normalizer:
    steps = {"nfc": [normalizers.NFC()], "nfkc": [normalizers.NFKC()], "none": []}[cfg.normalization]
    return normalizers.Sequence(steps + ([normalizers.Lowercase()] if cfg.lowercase else []))


def _trained(tokenizer: Tokenizer, trainer: trainers.Trainer, sample: list[str], cfg: TokenizerConfig) -> Tokenizer:
    try:
        tokenizer.train_from_iterator(sample, trainer=trainer)
    except Exception as error:  # the trainers' own words: "The vocabulary is not large enough to contain all chars"
        if "not large enough" in str(error):
            raise ConfigError(f"tokenizer.vocab_size={cfg.vocab_size} is below the alphabet of the training sample "
                              f"for tokenizer={cfg.name}: {error}") from error
        raise
    return tokenizer


def byte_level_bpe(cfg: TokenizerConfig, sample: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = unicode_normalizer(cfg)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # exact round trip
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    return _trained(tokenizer, trainer, sample, cfg)


def wordpiece(cfg: TokenizerConfig, sample: list[str]) -> Tokenizer:
    normalizer = normalizers.BertNormalizer(lowercase=cfg.lowercase, strip_accents=cfg.lowercase)
    bpe = Tokenizer(models.BPE(unk_token=UNK))
    bpe.normalizer, bpe.pre_tokenizer = normalizer, pre_tokenizers.BertPreTokenizer()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    _trained(bpe, trainer, sample, cfg)
    counts = _labelled_piece_counts(bpe, sample)
    alphabet = sorted(token for token in bpe.get_vocab() if len(token) == 1 and token not in SPECIAL_TOKENS)
    vocab = list(SPECIAL_TOKENS) + alphabet + [f"##{char}" for char in alphabet]
    if len(vocab) > cfg.vocab_size:
        raise ConfigError(f"tokenizer.vocab_size={cfg.vocab_size} is below the alphabet: wordpiece needs "
                          f"{len(vocab)} entries for the {len(alphabet)} characters of the sample (with ## forms)")
    pieces = sorted((piece for piece in counts if piece not in set(vocab)), key=lambda p: (-counts[p], p))
    vocab += pieces[: cfg.vocab_size - len(vocab)]
    tokenizer = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocab)}, unk_token=UNK))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def _labelled_piece_counts(bpe: Tokenizer, sample: list[str]) -> Counter:
    """How often each BPE piece occurs, as `piece` at a word start and `##piece` inside a word."""
    counts: Counter = Counter()
    for encoding in bpe.encode_batch(sample, add_special_tokens=False):
        previous_word = None
        for token, word in zip(encoding.tokens, encoding.word_ids, strict=True):
            counts[token if word != previous_word else f"##{token}"] += 1
            previous_word = word
    return counts


BYTE_PIECES = [f"<0x{byte:02X}>" for byte in range(256)]  # SentencePiece's byte-fallback pieces


def unigram(cfg: TokenizerConfig, sample: list[str]) -> Tokenizer:
    """SentencePiece-style, with byte fallback: a character never seen in training becomes
    its UTF-8 bytes, not `[UNK]` (256 of the vocabulary's entries are those bytes)."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = unicode_normalizer(cfg)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(),
                                           decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")])
    budget = cfg.vocab_size - len(BYTE_PIECES)
    trainer = trainers.UnigramTrainer(vocab_size=budget, special_tokens=list(SPECIAL_TOKENS), unk_token=UNK,
                                      show_progress=False)
    _trained(tokenizer, trainer, sample, cfg)
    model = json.loads(tokenizer.to_str())["model"]
    if len(model["vocab"]) > budget:
        raise ConfigError(f"tokenizer.vocab_size={cfg.vocab_size} is below the alphabet: unigram needs "
                          f"{len(model['vocab']) + len(BYTE_PIECES)} pieces for the characters of the sample "
                          f"and the {len(BYTE_PIECES)} byte-fallback pieces")
    special = [tuple(item) for item in model["vocab"][: len(SPECIAL_TOKENS)]]
    pieces = sorted(((piece, round(score, 6)) for piece, score in model["vocab"][len(SPECIAL_TOKENS):]),
                    key=lambda item: (-item[1], item[0]))
    pieces = _canonical_char_tail(pieces)
    byte_score = min(score for _, score in pieces) - 10.0  # bytes only where nothing else matches
    tokenizer.model = models.Unigram(special + pieces + [(piece, byte_score) for piece in BYTE_PIECES],
                                     unk_id=SPECIAL_TOKENS.index(UNK), byte_fallback=True)
    return tokenizer


def _canonical_char_tail(pieces: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The trainer appends characters it must keep with descending penalty scores in
    hash-set order; hand those scores out in character order instead."""
    tail = len(pieces)
    while tail > 0 and len(pieces[tail - 1][0]) == 1:
        tail -= 1
    chars = sorted(piece for piece, _ in pieces[tail:])
    return pieces[:tail] + list(zip(chars, [score for _, score in pieces[tail:]], strict=True))


def char(cfg: TokenizerConfig, sample: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    # Spaces become ▁ first, so that they are characters like any other and decode back.
    tokenizer.normalizer = normalizers.Sequence([unicode_normalizer(cfg), normalizers.Replace(" ", METASPACE)])
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Sequence([decoders.Fuse(), decoders.Replace(METASPACE, " ")])
    return _trained(tokenizer, _word_level_trainer(cfg), sample, cfg)


def word(cfg: TokenizerConfig, sample: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = unicode_normalizer(cfg)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # decoding joins words with single spaces
    return _trained(tokenizer, _word_level_trainer(cfg), sample, cfg)


def _word_level_trainer(cfg: TokenizerConfig) -> trainers.WordLevelTrainer:
    return trainers.WordLevelTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                     special_tokens=list(SPECIAL_TOKENS), show_progress=False)


def word_char(cfg: TokenizerConfig, sample: list[str]) -> Tokenizer:
    """A BPE model with no merges and `ignore_merges`: a pre-token found in the vocabulary
    (a frequent word) is one token, any other falls apart into its bytes."""
    normalizer = unicode_normalizer(cfg)
    pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)  # " the" and a first "the" are one word
    counts: Counter = Counter()
    for text in sample:
        counts.update(piece for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    vocab = list(SPECIAL_TOKENS) + sorted(pre_tokenizers.ByteLevel.alphabet())
    frequent = (w for w, n in counts.items() if n >= cfg.min_frequency and len(w) > 1)
    words = sorted(frequent, key=lambda w: (-counts[w], w))
    vocab += words[: cfg.vocab_size - len(vocab)]
    tokenizer = Tokenizer(models.BPE({token: i for i, token in enumerate(vocab)}, [], ignore_merges=True))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    # The prefix space added before the first word is taken off again when decoding.
    tokenizer.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    return tokenizer


KINDS: dict[str, Callable[[TokenizerConfig, list[str]], Tokenizer]] = {
    "bpe": byte_level_bpe, "wordpiece": wordpiece, "unigram": unigram, "char": char, "word": word,
    "word_char": word_char,
}


def with_bpe_dropout(tokenizer: Tokenizer, dropout: float) -> Tokenizer:
    """A copy whose BPE skips each merge with probability `dropout` (Provilkov et al. 2020)."""
    state = json.loads(tokenizer.to_str())
    state["model"]["dropout"] = dropout
    return Tokenizer.from_str(json.dumps(state))
