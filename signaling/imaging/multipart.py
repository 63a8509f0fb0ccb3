"""``multipart/related`` (RFC 2387, RFC 2046 section 5.1), strict and bounded: the framing of
DICOMweb's STOW-RS uploads and WADO-RS answers.

Sans-I/O and pure. :func:`parse_related` takes a whole body (its size was bounded by the
caller while it was read) and gives its parts, or raises
:class:`~signaling.errors.InvalidMultipart` saying where the framing breaks: no opening
boundary, a part whose headers do not end within :attr:`MultipartLimits.max_header_bytes`,
a malformed or non-ASCII header line, more parts than allowed, no closing boundary (a
truncated upload). :func:`encode_related` is its serializer. The scan is linear in the body
(``bytes.find``): callers on an event loop run it in a worker thread with the rest of an
upload's checks.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from signaling.errors import InvalidMultipart

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_HEADER_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*([\x20-\x7e\t]*?)[ \t]*")
# One parameter of a Content-Type: a token, or a quoted string (RFC 9110 5.6.6).
_PARAMETER = re.compile(
    r';[ \t]*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)=("(?:[^"\\]|\\.)*"|[^;" \t]+)[ \t]*'
)
# RFC 2046's bchars; a boundary may not end in a space.
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
#: Spaces and tabs allowed between a boundary and its line end (RFC 2046 transport padding).
_MAX_PADDING = 64


@dataclass(frozen=True)
class MultipartLimits:
    """What a body may hold: parts, and per part its header block's size and line count,
    and how much preamble may precede the first boundary."""

    max_parts: int = 100
    max_header_bytes: int = 8192
    max_headers: int = 32
    max_preamble: int = 1024


@dataclass(frozen=True)
class Part:
    """One body part: its header fields (names in lower case, in order) and its bytes."""

    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True)
class MediaType:
    """A parsed ``Content-Type``: the bare type in lower case and its parameters (names in
    lower case, quoted values unquoted)."""

    type: str
    params: dict[str, str]


def parse_media_type(value: str) -> MediaType:
    """Parse a ``Content-Type`` value; raises :class:`InvalidMultipart` when its parameters
    are not well formed."""
    bare, sep, rest = value.partition(";")
    params: dict[str, str] = {}
    rest = sep + rest
    pos = 0
    while pos < len(rest):
        match = _PARAMETER.match(rest, pos)
        if match is None:
            raise InvalidMultipart(f"malformed parameters in the content type: {value[:120]!r}")
        name, raw = match.group(1).lower(), match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if name in params:
            raise InvalidMultipart(f"parameter {name!r} is given twice in the content type")
        params[name] = raw
        pos = match.end()
    return MediaType(bare.strip().lower(), params)


def related_boundary(content_type: str | None, part_type: str) -> str:
    """The boundary of a ``multipart/related`` body whose ``type`` parameter is
    ``part_type`` (PS3.18 requires it). Raises :class:`InvalidMultipart` saying what is
    wrong with ``content_type``."""
    if not content_type:
        raise InvalidMultipart(
            f'the body needs Content-Type: multipart/related; type="{part_type}"'
        )
    media = parse_media_type(content_type)
    if media.type != "multipart/related":
        raise InvalidMultipart(f"the body is {media.type[:64] or 'untyped'}, not multipart/related")
    declared = media.params.get("type", "").lower()
    if declared != part_type:
        raise InvalidMultipart(
            f'multipart/related needs type="{part_type}", not {declared[:64] or "none"!r}'
        )
    boundary = media.params.get("boundary")
    if boundary is None or _BOUNDARY.match(boundary) is None:
        raise InvalidMultipart("the boundary parameter is missing or not 1-70 valid characters")
    return boundary


def parse_related(body: bytes, boundary: str, limits: MultipartLimits) -> list[Part]:
    """The parts of ``body``, framed by ``boundary``. Raises :class:`InvalidMultipart`."""
    delimiter = b"--" + boundary.encode("ascii")
    if body.startswith(delimiter):
        pos = 0
    else:
        pos = body.find(b"\r\n" + delimiter, 0, limits.max_preamble + 2 + len(delimiter))
        if pos < 0:
            raise InvalidMultipart("the body does not open with its boundary")
        pos += 2
    parts: list[Part] = []
    while True:
        after = pos + len(delimiter)
        if body[after : after + 2] == b"--":
            break  # the close delimiter; an epilogue after it is ignored (RFC 2046)
        line_end = _line_end(body, after)
        if len(parts) >= limits.max_parts:
            raise InvalidMultipart(f"more than {limits.max_parts} parts")
        headers, start = _headers(body, line_end, limits, len(parts) + 1)
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise InvalidMultipart(
                f"truncated: part {len(parts) + 1} has no closing boundary "
                f"(the body ends after {len(body)} bytes)"
            )
        parts.append(Part(headers, body[start:end]))
        pos = end + 2
    if not parts:
        raise InvalidMultipart("the body has no parts")
    return parts


def _line_end(body: bytes, pos: int) -> int:
    """Where the line after a boundary ends (its CRLF passed); padding allowed before it."""
    end = pos
    while end < len(body) and end - pos < _MAX_PADDING and body[end] in b" \t":
        end += 1
    if body[end : end + 2] != b"\r\n":
        if end >= len(body) - 1:
            raise InvalidMultipart("truncated: the body ends on a boundary line")
        raise InvalidMultipart(f"a boundary at byte {pos} is not followed by a line end")
    return end + 2


def _headers(
    body: bytes, start: int, limits: MultipartLimits, number: int
) -> tuple[tuple[tuple[str, str], ...], int]:
    """The header fields of the part starting at ``start``, and where its body starts."""
    if body[start : start + 2] == b"\r\n":
        return (), start + 2  # no header fields: the body follows the empty line
    end = body.find(b"\r\n\r\n", start, start + limits.max_header_bytes + 4)
    if end < 0:
        if len(body) - start < limits.max_header_bytes:
            raise InvalidMultipart(f"truncated: the headers of part {number} do not end")
        raise InvalidMultipart(
            f"the headers of part {number} exceed {limits.max_header_bytes} bytes"
        )
    lines = body[start:end].split(b"\r\n")
    if len(lines) > limits.max_headers:
        raise InvalidMultipart(f"part {number} has more than {limits.max_headers} header lines")
    fields: list[tuple[str, str]] = []
    for line in lines:
        match = _HEADER_LINE.fullmatch(line)
        if match is None:
            raise InvalidMultipart(
                f"part {number} has a malformed header line (folded, non-ASCII or no name)"
            )
        name = match.group(1).decode("ascii").lower()
        if name in ("content-type", "content-digest", "content-length") and any(
            k == name for k, _ in fields
        ):
            raise InvalidMultipart(f"part {number} gives {name} twice")
        fields.append((name, match.group(2).decode("ascii")))
    return tuple(fields), end + 4


def new_boundary() -> str:
    """A boundary that no part will contain by chance (128 random bits)."""
    return f"telemed-{secrets.token_hex(16)}"


def encode_related(
    parts: Iterable[tuple[Sequence[tuple[str, str]], bytes]], boundary: str
) -> bytes:
    """Frame ``parts`` (each its header fields and bytes) as a multipart body; the inverse
    of :func:`parse_related`."""
    delimiter = b"--" + boundary.encode("ascii")
    out = bytearray()
    for headers, data in parts:
        out += delimiter + b"\r\n"
        for name, value in headers:
            out += f"{name}: {value}\r\n".encode("ascii")
        out += b"\r\n"
        out += data
        out += b"\r\n"
    out += delimiter + b"--\r\n"
    return bytes(out)


def related_part_head(headers: Sequence[tuple[str, str]], boundary: str) -> bytes:
    """The delimiter and header fields that open one part of a streamed multipart body (the
    part's bytes and ``\r\n`` follow); :func:`related_end` closes the body. Together they
    frame exactly what :func:`encode_related` does, a part at a time."""
    out = b"--" + boundary.encode("ascii") + b"\r\n"
    for name, value in headers:
        out += f"{name}: {value}\r\n".encode("ascii")
    return out + b"\r\n"


def related_end(boundary: str) -> bytes:
    """The close delimiter of a multipart body."""
    return b"--" + boundary.encode("ascii") + b"--\r\n"
