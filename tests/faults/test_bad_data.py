"""Bad input data: invalid UTF-8 and byte-order marks in corpora and fine-tune files, a bad
.jsonl line, and documents too long to tokenize whole (cut at whitespace into pieces)."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pretrainer.config import DataConfig, FinetuneConfig, TokenizerConfig
from pretrainer.data.blocks import load_or_pack
from pretrainer.data.packing import _word_starts, encode_documents
from pretrainer.data.sources import CorpusFormatError, open_corpus
from pretrainer.data.text import split_long_text
from pretrainer.errors import ConfigError, UserError
from pretrainer.finetune.files import read_rows
from pretrainer.finetune.sources import TaskDataError
from pretrainer.tokenization import KINDS, train_tokenizer
from pretrainer.tokenization.cache import training_sample
from tests.conftest import TINY
from tests.faults.conftest import assert_one_line_error

# Corpora ---------------------------------------------------------------------------------------

# (file, its bytes, line and column of the bad byte, the documents read with decode_errors=replace)
BAD_CORPORA = [
    ("bad.txt", b"one\r\ntwo\r\nbad \xff byte\r\nfour\n", "3", "byte 0xff at column 5",
     ["one", "two", "bad \ufffd byte", "four"]),
    ("bad.jsonl", b'{"text": "ok"}\n\n{"text": "caf\xc3 au lait"}\n', "3", "byte 0xc3 at column 14",
     ["ok", "caf\ufffd au lait"]),
    ("latin1.txt", "caf\u00e9\n".encode() + b"\xe9t\xe9\n", "2", "byte 0xe9 at column 1",  # a Latin-1 line
     ["caf\u00e9", "\ufffdt\ufffd"]),
    ("column.txt", "n\u00e9 ".encode() + b"\xff\n", "1", "byte 0xff at column 4",  # columns count characters
     ["n\u00e9 \ufffd"]),
    ("mac.txt", b"one\rtwo\rbad \xff\r", "3", "byte 0xff at column 5", ["one", "two", "bad \ufffd"]),  # \r ends lines
]


@pytest.mark.parametrize(("name", "content", "line", "where", "replaced"), BAD_CORPORA,
                         ids=[c[0] for c in BAD_CORPORA])
def test_invalid_utf8_in_a_corpus_names_file_and_line_or_is_replaced(tmp_path, name, content, line, where,
                                                                     replaced):
    path = tmp_path / name
    path.write_bytes(content)

    def corpus(errors: str):
        return open_corpus(DataConfig(source="text_files", paths=[str(path)], decode_errors=errors))

    assert_decoding(lambda errors: list(corpus(errors).documents()), ConfigError,
                    f"{path}:{line}: invalid UTF-8 ({where}); fix the file or set data.decode_errors=replace", replaced)
    assert corpus("replace").fingerprint == corpus("strict").fingerprint  # strict fails or reads the same text


def assert_decoding(read, error_type: type[Exception], message: str, replaced) -> None:
    """`read(decode_errors)` raises exactly `message` under strict, and returns `replaced` under replace."""
    with pytest.raises(error_type, match=f"^{re.escape(message)}$"):
        read("strict")
    assert read("replace") == replaced


@pytest.mark.parametrize(("name", "content"), [
    ("bom.txt", "\ufefffirst doc\nsecond doc\n"),
    ("bom.jsonl", '\ufeff{"text": "first doc"}\n{"text": "second doc"}\n'),
])
def test_a_byte_order_mark_at_the_start_is_not_text(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    documents = list(open_corpus(DataConfig(source="text_files", paths=[str(path)])).documents())
    assert documents == ["first doc", "second doc"]


def test_a_bad_jsonl_corpus_line_is_a_user_error_reported_in_one_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "ok"}\n{"text": broken\n')
    with pytest.raises(CorpusFormatError, match=r"broken\.jsonl:2: invalid JSON") as error:
        list(open_corpus(DataConfig(source="text_files", paths=[str(path)])).documents())
    assert isinstance(error.value, ConfigError) and isinstance(error.value, ValueError)
    assert isinstance(error.value, UserError) and error.value.exit_code == 2  # the CLI: one line, rc 2
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("name", "content", "fragment"), [
    ("broken.jsonl", b'{"text": "ok"}\n{"text": broken\n', "broken.jsonl:2: invalid JSON"),
    ("latin1.txt", b"fine\nd\xe9j\xe0 vu\n", "latin1.txt:2: invalid UTF-8 (byte 0xe9 at column 2)"),
])
def test_the_cli_reports_a_bad_corpus_file_in_one_line_with_exit_code_2(run_cli, tmp_path, name, content,
                                                                        fragment):
    path = tmp_path / name
    path.write_bytes(content)
    result = run_cli("train", *TINY, "data=text_files", f"data.paths=[{path}]", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_line_error(result, 2, fragment)


# Fine-tune files -------------------------------------------------------------------------------

# (file, its bytes, line of the bad byte, where in it, (text_a, line) of each row read with replace)
BAD_TASK_FILES = [
    ("train.csv",  # a byte-order mark, and a quoted field over lines 3-5: the bad byte is on line 6
     b'\xef\xbb\xbftext_a,label\r\nfine,pos\r\n"one\r\nquoted, two\r\nthree",neg\r\nbad \xff,pos\r\n', 6,
     "byte 0xff at column 5", [("fine", 2), ("one\r\nquoted, two\r\nthree", 5), ("bad \ufffd", 6)]),
    ("train.tsv", b'text_a\tlabel\nfine\tpos\n"quote\tneg\nbad\xfe\tneg\n', 4, "byte 0xfe at column 4",
     [("fine", 2), ('"quote', 3), ("bad\ufffd", 4)]),
    ("train.jsonl", b'{"text_a": "fine", "label": "pos"}\n\n{"text_a": "x\xc3(", "label": "neg"}\n', 3,
     "byte 0xc3 at column 14", [("fine", 1), ("x\ufffd(", 3)]),
]


@pytest.mark.parametrize(("name", "content", "line", "where", "replaced"), BAD_TASK_FILES,
                         ids=[f[0] for f in BAD_TASK_FILES])
def test_invalid_utf8_in_a_task_file_names_file_and_line_or_is_replaced(tmp_path, name, content, line, where,
                                                                       replaced):
    path = tmp_path / name
    path.write_bytes(content)

    def rows(errors: str):
        cfg = FinetuneConfig(source="files", tasks=["mine"], train_file=str(path), test_file=str(path),
                             decode_errors=errors)
        return [(row.text_a, row.line) for row in read_rows(path, cfg)]

    assert_decoding(rows, TaskDataError,
                    f"{path}:{line}: invalid UTF-8 ({where}); fix the file or set finetune.decode_errors=replace",
                    replaced)


# Long documents --------------------------------------------------------------------------------

# (text, max_chars, pieces): cuts go before the space that begins a word, else before other
# whitespace that begins one, else hard at max_chars.
SPLITS = [
    ("short", 10, ["short"]),
    ("the cat sat on the mat", 10, ["the cat", " sat on", " the mat"]),
    ("the  cat   sat", 6, ["the ", " cat  ", " sat"]),  # inside a run: before its last space
    ("one\ntwo\tthree", 8, ["one\ntwo", "\tthree"]),  # no space: other whitespace
    ("one two\tthree!", 12, ["one", " two\tthree!"]),  # a space first, though a tab comes later
    ("abcdefghij klm", 4, ["abcd", "efgh", "ij", " klm"]),  # no whitespace in the window: hard
    ("word" + " " * 5, 6, ["word", "     "]),  # before the whitespace that ends the text
]


@pytest.mark.parametrize(("text", "max_chars", "pieces"), SPLITS)
def test_split_long_text_examples(text, max_chars, pieces):
    assert split_long_text(text, max_chars) == pieces


SEPARATORS = [" ", "  ", "\t", "\n", " \n ", "\u3000", "\x0b"]
TEXTS = st.lists(st.one_of(st.sampled_from(SEPARATORS), st.text("ab\u00e9\u4e2d,.", min_size=1, max_size=12)),
                 max_size=60).map("".join)
CUT_TIERS = [" ", "\t\n\u3000"]  # of SEPARATORS, what a cut may go before, best first (\x0b: BERT deletes it)


def expected_cut(text: str, start: int, max_chars: int) -> int:
    """The specification, position by position: the last whitespace of the best tier that begins a
    word or the whitespace ending the text; hard at max_chars when there is none."""
    content_end = len(text.rstrip())
    for tier in CUT_TIERS:
        cuts = [p for p in range(start + 1, start + max_chars + 1)
                if text[p] in tier and (p == content_end or p + 1 < len(text) and not text[p + 1].isspace())]
        if cuts:
            return cuts[-1]
    return start + max_chars


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, max_chars=st.integers(1, 25))
def test_split_long_text_pieces_are_bounded_join_back_and_cut_at_whitespace(text, max_chars):
    pieces = split_long_text(text, max_chars)
    assert "".join(pieces) == text
    assert all(0 < len(piece) <= max_chars for piece in pieces) or pieces == [""]
    start = 0
    for piece in pieces[:-1]:
        assert start + len(piece) == expected_cut(text, start, max_chars)
        start += len(piece)


ENGLISH = ("the quick brown fox jumps over the lazy dog. a gardener waters the small plants every morning. "
           "unhappy hunters weren't observing the rainy hills; she'll sell 7 old books, then leave! "
           "caf\u00e9 na\u00efve \u00c9cole stra\u00dfe \u6211\u4eec\u4eca\u5929\u53bb\u516c\u56ed\u3002").split(" ")


def long_document(separators: list[str], words: int = 1200, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(ENGLISH) + rng.choice(separators) for _ in range(words))


@pytest.fixture(scope="module")
def tokenizers():
    """One tiny tokenizer of every kind, trained in-process."""
    sample = [long_document([" "], words=40, seed=seed) for seed in range(30)]
    return {kind: train_tokenizer(TokenizerConfig(name=kind, min_frequency=1,
                                                  vocab_size=400 if kind in ("bpe", "word_char", "unigram") else 200),
                                  iter(sample))
            for kind in sorted(KINDS)}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_long_document_encodes_piecewise_to_the_same_ids_and_word_starts(tokenizers, kind):
    document = long_document([" ", " ", "  ", " \t ", "   ", ", ", " \n "])
    assert len(split_long_text(document, 1000)) >= 5
    tokenizer = tokenizers[kind]
    whole = tokenizer.encode(document, add_special_tokens=False)
    [(ids, starts)] = encode_documents(tokenizer, [document], max_document_chars=1000)
    assert ids == whole.ids
    np.testing.assert_array_equal(starts, _word_starts(whole.word_ids))


PREFIXED = {"unigram": "\u2581", "word_char": "\u0120"}  # kinds that mark the start of each text they encode


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_long_document_without_spaces_cut_at_other_whitespace(tokenizers, kind):
    """Where no space begins a word within max_document_chars, the cut goes before a newline, tab
    or ideographic space. Unigram (Metaspace) and word_char (ByteLevel with a prefix space) put
    their word marker in front of every text they encode, so there each piece after the first
    gains exactly that one token: a known difference from encoding the document whole."""
    document = long_document(["\n", "\t", "\u3000", "\n\n"])
    pieces = split_long_text(document, 1000)
    assert len(pieces) >= 5 and " " not in document
    tokenizer = tokenizers[kind]
    whole = tokenizer.encode(document, add_special_tokens=False).ids
    [(ids, _)] = encode_documents(tokenizer, [document], max_document_chars=1000)
    if kind not in PREFIXED:
        assert ids == whole
        return
    assert ids != whole
    marker = tokenizer.token_to_id(PREFIXED[kind])
    without_markers = []
    for piece in pieces:
        piece_ids = tokenizer.encode(piece, add_special_tokens=False).ids
        if without_markers:
            assert piece_ids[0] == marker
            piece_ids = piece_ids[1:]
        without_markers += piece_ids
    assert without_markers == whole and len(ids) == len(whole) + len(pieces) - 1


def test_tokenizer_training_cuts_a_2mb_line_into_bounded_pieces(tmp_path):
    rng = random.Random(1)
    line = " ".join(rng.choice(ENGLISH) for _ in range(350_000))
    assert len(line) > 2_000_000
    path = tmp_path / "dump.txt"
    path.write_text(f"a short document\n{line}\nanother short one\n", encoding="utf-8")
    documents = open_corpus(DataConfig(source="text_files", paths=[str(path)])).documents
    cfg = TokenizerConfig(name="bpe", vocab_size=300, max_document_chars=100_000)
    sample = training_sample(cfg, documents())
    assert max(len(piece) for piece in sample) <= 100_000
    assert sample[0] == "a short document" and sample[-1] == "another short one"
    assert "".join(sample[1:-1]) == line and len(sample) - 2 >= 21
    tokenizer = train_tokenizer(cfg, documents())
    assert tokenizer.get_vocab_size() == 300


def test_packing_long_documents_piecewise_gives_the_blocks_of_packing_them_whole(tokenizers, tmp_path):
    documents = [long_document([" ", "  ", ", "], words=400, seed=seed) for seed in range(6)]
    assert min(len(document) for document in documents) > 2000
    tokenizer = tokenizers["wordpiece"]

    def pack(max_document_chars: int):
        return load_or_pack(documents, tokenizer, "corpus", "tokenizer", 32, 0.2, tmp_path,
                            max_document_chars=max_document_chars)

    piecewise, whole = pack(1000), pack(100_000)
    assert piecewise.cache_entry != whole.cache_entry  # the limit is part of the cache key
    for split in ("train", "eval"):
        a, b = getattr(piecewise, split), getattr(whole, split)
        assert a.num_blocks > 0
        np.testing.assert_array_equal(a.stream, b.stream)
        np.testing.assert_array_equal(a.word_starts, b.word_starts)
