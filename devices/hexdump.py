"""The bytes of a capture kept as text: plain hex, or the common hex dump forms.

Accepted (each line an offset, then the bytes, then perhaps the bytes as text):

- ``xxd``: ``00000000: 4142 4344 ...  AB..`` (any ``-c``/``-g``);
- ``od -t x1`` and ``od -x`` (octal offsets; ``-x`` words as od prints them on a
  little-endian machine), and ``od -A x -t x1z``; the closing offset line gives the length;
- ``hexdump -C``: ``00000000  41 42 ...  |AB..|``;
- tcpdump ``-X``/``-xx``: ``0x0000:  4500 0034 ...  E..4``;
- Wireshark's "Copy as Hex Dump" and its text export: ``0000   01 00 5e ...``.

The offsets are never taken as data. Lines without an offset (a packet's summary line in
a Wireshark export) are skipped.
"""

from __future__ import annotations

import re
import string

_LINE = re.compile(r"^\s*(0x)?([0-9A-Fa-f]{4,8})(:?)(?:(\s+)(.*))?$")
_HEX = set(string.hexdigits)
#: A gap this wide ends the bytes: the text column is padded to align after a short line.
_TEXT_GAP = 3


def parse_plain_hex(text: str) -> bytes | None:
    """Hex digits only (whitespace and ``0x`` prefixes allowed), else None."""
    cleaned = "".join(text.replace("0x", " ").replace("0X", " ").split())
    if cleaned and len(cleaned) % 2 == 0 and set(cleaned) <= _HEX:
        return bytes.fromhex(cleaned)
    return None


def _form(prefix: str | None, digits: str, colon: str) -> str:
    if prefix and colon:
        return "tcpdump -X hex dump"
    if colon:
        return "xxd hex dump"
    if len(digits) == 7:
        return "od hex dump"
    return "Wireshark/hexdump -C hex dump"


def _tokens(rest: str, limit: int | None) -> list[str]:
    """The hex groups at the start of ``rest``, up to ``limit`` bytes."""
    out: list[str] = []
    count = 0
    for match in re.finditer(r"(\s*)(\S+)", rest):
        gap, token = match.group(1), match.group(2)
        if out and len(gap) >= _TEXT_GAP:
            break
        if len(token) % 2 or len(token) > 8 or not set(token) <= _HEX:
            break
        if limit is not None and count + len(token) // 2 > limit:
            break
        out.append(token)
        count += len(token) // 2
    return out


def parse_hexdump(text: str) -> tuple[bytes, str] | None:
    """The bytes of a hex dump and the name of its form, or None when ``text`` is not one."""
    rows: list[tuple[int, str]] = []
    form = ""
    end: int | None = None
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        prefix, digits, colon, _gap, rest = match.groups()
        if not form:
            form = _form(prefix, digits, colon)
        offset = int(digits, 8 if form == "od hex dump" else 16)
        if not rest:
            end = offset  # od and hexdump close with the length
            continue
        rows.append((offset, rest))
    if not rows or rows[0][0] != 0:
        return None
    data = bytearray()
    packet_start = 0  # a Wireshark export of several packets starts each at offset 0
    for k, (offset, rest) in enumerate(rows):
        if offset == 0:
            packet_start = len(data)
        elif offset != len(data) - packet_start:
            return None  # offsets that do not count the bytes: not a dump
        following = rows[k + 1][0] if k + 1 < len(rows) else None
        width = following - offset if following is not None and following > offset else None
        tokens = _tokens(rest, width)
        if not tokens:
            return None
        words = form == "od hex dump" and all(len(t) == 4 for t in tokens)
        for token in tokens:
            chunk = bytes.fromhex(token)
            data += chunk[::-1] if words else chunk  # od -x: little-endian words
    if end is not None and end >= rows[0][0]:
        del data[end - rows[0][0] :]  # od -x pads an odd length to a whole word
    return bytes(data), form


def load_text_capture(raw: bytes) -> tuple[bytes, str]:
    """The bytes a capture file holds and how they were read: a hex dump (its offsets
    counting its bytes from 0), plain hex text, or (anything else) the raw bytes."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return raw, "raw bytes"
    dump = parse_hexdump(text)
    if dump is not None:
        return dump
    plain = parse_plain_hex(text)
    if plain is not None:
        return plain, "hex text"
    return raw, "raw bytes (text that is not hex nor a hex dump)"
