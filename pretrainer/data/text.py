"""Text as the data layer reads it: lines decoded from UTF-8 files, and long documents cut
into pieces of bounded length.

`decoded_lines` reads a file in binary and decodes it line by line, so invalid UTF-8 is
reported with its file, line and column (or replaced with U+FFFD), and a byte-order mark at
the start of the file never becomes text.

`split_long_text` cuts a document longer than `tokenizer.max_document_chars` at whitespace;
tokenizer training and packing both use it, so that one huge line (a dump without newlines)
costs bounded memory. A cut goes before the space that begins a word, so every tokenizer
kind encodes the pieces to the ids of the whole document. Failing a space within the limit,
the cut goes before other whitespace (unigram and word_char then gain their word marker, one
token per cut), and failing any whitespace, hard at the limit (the word there is split).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pretrainer.errors import ConfigError, UserError

UTF8_BOM = b"\xef\xbb\xbf"
_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")  # after a "\r" that is not part of "\r\n"

# Whitespace that no tokenizer kind deletes: a cut may go before it (BERT's normaliser drops \v,
# \f, \x85 and \x1c-\x1f as control characters, so a cut there could join two words of the whole).
_CUT_WHITESPACE = "\t\n\r\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Where a cut may go, best first: before a space, else before such whitespace. Each tier is
# (what a later piece may begin with, the last such character that begins a word in a window):
# greedy `.*` backtracks from the window's end, one C-level pass however many spaces it holds.
_CUT_TIERS = tuple((re.compile(chars), re.compile(f"(?s).*({chars})(?=\\S)"))
                   for chars in (" ", f"[{_CUT_WHITESPACE}]"))


def decoded_lines(path: Path, errors: str, field_name: str | None,
                  error_type: type[UserError] = ConfigError) -> Iterator[tuple[int, str]]:
    """(line number from 1, line with its ending) of a UTF-8 text file.

    Lines end at "\\n", "\\r\\n" or a lone "\\r", as in Python's universal newlines; the ending is
    kept untranslated (as `newline=""` does), so `csv` reads quoted fields across lines. A
    UTF-8 byte-order mark at the start of the file is dropped. Invalid UTF-8: `errors="strict"`
    raises `error_type` naming the file, line, byte and column and `field_name` (the setting
    that would accept it, if there is one); `"replace"` puts U+FFFD in place of each invalid sequence.
    """
    number = 0
    with open(path, "rb") as handle:
        for raw in handle:  # binary lines end at b"\n", never inside a UTF-8 sequence
            if number == 0 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM):]
            for line in _LONE_CR.split(raw) if b"\r" in raw else (raw,):
                if not line:
                    continue
                number += 1
                try:
                    text = line.decode("utf-8", errors)
                except UnicodeDecodeError as error:
                    raise _decode_error(error, f"{path}:{number}", field_name, error_type) from None
                yield number, text


def _decode_error(error: UnicodeDecodeError, place: str, field_name: str | None,
                  error_type: type[UserError]) -> UserError:
    line = error.object
    column = len(line[:error.start].decode("utf-8")) + 1  # the bytes before the first error are valid
    remedy = f"fix the file or set {field_name}=replace" if field_name else "fix the file"
    return error_type(f"{place}: invalid UTF-8 (byte 0x{line[error.start]:02x} at column {column}); {remedy}")


def split_long_text(text: str, max_chars: int) -> list[str]:
    """`text` cut into pieces of at most `max_chars` characters that join back to `text`.

    Each cut goes before the whitespace that ends the text, or before a space that begins a
    word (the next piece starts with that space); failing those, before other whitespace that
    begins a word; failing that (no whitespace in the window, or a run of whitespace longer
    than `max_chars`), hard at `max_chars` characters.
    """
    if len(text) <= max_chars:
        return [text]
    content_end = len(text.rstrip())  # where the trailing whitespace begins
    pieces, start = [], 0
    while len(text) - start > max_chars:
        cut = _cut_position(text, start, max_chars, content_end)
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def _cut_position(text: str, start: int, max_chars: int, content_end: int) -> int:
    """The end of the piece beginning at `start`: a position in (start, start + max_chars]."""
    # Candidate cut positions start+1 .. start+max_chars, plus one character to look ahead at.
    window = text[start + 1:start + max_chars + 2]
    for cut_char, last_word_start in _CUT_TIERS:
        # The whitespace ending the text comes after every word: the latest cut of its tier.
        if start < content_end <= start + max_chars and cut_char.fullmatch(text[content_end]):
            return content_end
        match = last_word_start.match(window)
        if match:
            return start + 1 + match.start(1)
    return start + max_chars
