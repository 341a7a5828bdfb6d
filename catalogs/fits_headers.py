"""The primary and first-extension headers of a plain FITS file, read without astropy.

astropy's header machinery (card objects, verification, configuration lookups) costs about 5 ms
per file, more than reading a quadrant catalog's thousands of rows. A catalog file is two HDUs of
80-character cards, so a plain one is read here in tens of microseconds. Anything this reader does
not fully understand (a compressed file, an extension other than a binary table, long-string
CONTINUE or HIERARCH cards, a complex or undefined value) makes it return None, and the caller
falls back to astropy: it never guesses.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

BLOCK_BYTES = 2880
CARD_BYTES = 80
#: Headers longer than this are left to astropy (ZTF catalog headers are a few blocks).
MAX_HEADER_BLOCKS = 64

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([EeDd][+-]?\d+)?$")
_COMMENTARY = {"COMMENT", "HISTORY", ""}


@dataclass(frozen=True)
class PlainTableHeaders:
    """Header keys of the primary HDU and of HDU 1 (a BINTABLE), and where its rows start."""

    primary: dict[str, object]
    table: dict[str, object]
    data_offset: int  # bytes from the start of the file


class _NotPlain(Exception):
    pass


def _value(text: str) -> object:
    """The value of a card's value field (after ``= ``), as astropy would give it."""
    text = text.lstrip()
    if text.startswith("'"):
        chars, i = [], 1
        while True:
            j = text.find("'", i)
            if j < 0:
                raise _NotPlain
            chars.append(text[i:j])
            if text[j + 1 : j + 2] == "'":  # an escaped quote
                chars.append("'")
                i = j + 2
                continue
            rest = text[j + 1 :].strip()
            if rest and not rest.startswith("/"):
                raise _NotPlain
            return "".join(chars).rstrip()
    token = text.split("/", 1)[0].strip()
    if token == "T":
        return True
    if token == "F":
        return False
    if _INT.match(token):
        return int(token)
    if _FLOAT.match(token):
        value = float(token.replace("D", "E").replace("d", "e"))
        if math.isfinite(value):
            return value
    raise _NotPlain


def _header(data: bytes, start: int) -> tuple[dict[str, object], int]:
    """Keys of the header starting at byte ``start``; the offset just past it."""
    keys: dict[str, object] = {}
    for block in range(MAX_HEADER_BLOCKS):
        base = start + block * BLOCK_BYTES
        chunk = data[base : base + BLOCK_BYTES]
        if len(chunk) < BLOCK_BYTES:
            raise _NotPlain
        try:
            text = chunk.decode("ascii")
        except UnicodeDecodeError:
            raise _NotPlain from None
        for c in range(0, BLOCK_BYTES, CARD_BYTES):
            card = text[c : c + CARD_BYTES]
            key = card[:8].rstrip()
            if key == "END" and not card[8:].strip():
                return keys, base + BLOCK_BYTES
            if card[8:10] != "= ":
                if key in _COMMENTARY:
                    continue
                raise _NotPlain  # CONTINUE, HIERARCH, ...
            if key in keys:
                raise _NotPlain  # astropy's rules for repeated keys are not repeated here
            keys[key] = _value(card[10:])
    raise _NotPlain


def _data_bytes(keys: dict[str, object]) -> int:
    """Bytes of an HDU's data, padded to whole blocks."""
    n_axes = keys.get("NAXIS", 0)
    if not isinstance(n_axes, int) or isinstance(n_axes, bool) or n_axes < 0:
        raise _NotPlain
    if n_axes == 0:
        return 0
    size = 1
    for k in range(1, n_axes + 1):
        axis = keys.get(f"NAXIS{k}")
        if not isinstance(axis, int) or isinstance(axis, bool) or axis < 0:
            raise _NotPlain
        size *= axis
    bitpix = keys.get("BITPIX")
    if bitpix not in (8, 16, 32, 64, -32, -64):
        raise _NotPlain
    gcount, pcount = keys.get("GCOUNT", 1), keys.get("PCOUNT", 0)
    if not (isinstance(gcount, int) and isinstance(pcount, int)):
        raise _NotPlain
    size = abs(bitpix) // 8 * gcount * (pcount + size)
    return -(-size // BLOCK_BYTES) * BLOCK_BYTES


def read_plain_table_headers(path: str | os.PathLike) -> PlainTableHeaders | None:
    """The headers of a plain FITS file whose HDU 1 is a binary table, or None.

    None means "ask astropy": the file is compressed, is not FITS, has no BINTABLE at HDU 1, or
    holds a card this reader does not take apart exactly.
    """
    with open(path, "rb") as f:
        data = f.read(2 * MAX_HEADER_BLOCKS * BLOCK_BYTES)
    if not data.startswith(b"SIMPLE  ="):
        return None
    try:
        primary, end = _header(data, 0)
        if primary.get("SIMPLE") is not True:
            return None
        start = end + _data_bytes(primary)
        if start + BLOCK_BYTES > len(data):
            return None
        table, data_offset = _header(data, start)
    except _NotPlain:
        return None
    if table.get("XTENSION") != "BINTABLE" or table.get("NAXIS") != 2:
        return None
    return PlainTableHeaders(primary, table, data_offset)
