"""multipart/related framing: the parser against its serializer and dicomweb-client's
encoder, every refusal with its reason, and hostile bodies inside valid framing (the parser
either gives parts that re-encode to the same body or raises InvalidMultipart, never
anything else)."""

from __future__ import annotations

import random

import pytest
from dicomweb_client.api import DICOMwebClient

from signaling.errors import InvalidInstance, InvalidMultipart
from signaling.imaging.multipart import (
    MultipartLimits,
    encode_related,
    parse_media_type,
    parse_related,
    related_boundary,
)
from signaling.imaging.stow import check_part, content_digest, sha256_of_digest_header
from tests.fuzzing import budget

LIMITS = MultipartLimits(max_parts=8, max_header_bytes=256, max_headers=8)
DICOM = "application/dicom"


def _parts(n: int, rng: random.Random) -> list[tuple[list[tuple[str, str]], bytes]]:
    return [
        (
            [("Content-Type", DICOM), ("Content-Digest", f"sha-256=:{'A' * 43}=:")],
            rng.randbytes(rng.randrange(0, 300)),
        )
        for _ in range(n)
    ]


def test_round_trip_and_dicomweb_clients_framing() -> None:
    rng = random.Random(1)
    parts = _parts(3, rng)
    body = encode_related(parts, "b-1")
    parsed = parse_related(body, "b-1", LIMITS)
    assert [(list(p.headers), p.body) for p in parsed] == [
        ([(k.lower(), v) for k, v in h], b) for h, b in parts
    ]
    assert encode_related([(list(p.headers), p.body) for p in parsed], "b-1") == body.replace(
        b"Content-Type", b"content-type"
    ).replace(b"Content-Digest", b"content-digest")
    # dicomweb-client opens with CRLF (an empty preamble) and closes without one.
    content_type = 'multipart/related; type="application/dicom"; boundary="0f3cf5c0-70e0"'
    client_body = DICOMwebClient._encode_multipart_message([b"one", b"\r\ntwo\r\n"], content_type)
    boundary = related_boundary(content_type, DICOM)
    assert [p.body for p in parse_related(client_body, boundary, LIMITS)] == [
        b"one",
        b"\r\ntwo\r\n",
    ]


def test_content_types() -> None:
    media = parse_media_type('Multipart/Related; type="application/dicom"; boundary="a b;c"')
    assert media.type == "multipart/related"
    assert media.params == {"type": "application/dicom", "boundary": "a b;c"}
    assert (
        related_boundary('multipart/related; boundary=xyz; type="application/dicom"', DICOM)
        == "xyz"
    )
    for bad, words in [
        (None, "Content-Type"),
        ("application/dicom", "not multipart/related"),
        ("multipart/related; boundary=x", "type="),
        ('multipart/related; type="application/dicom"', "boundary"),
        ('multipart/related; type="application/dicom"; boundary=' + "x" * 71, "boundary"),
        ('multipart/related; type="application/dicom"; boundary="ends in space "', "boundary"),
        ('multipart/related; type="application/dicom"; boundary=a; boundary=b', "twice"),
        ('multipart/related; type="application/dicom"; boundary', "malformed"),
    ]:
        with pytest.raises(InvalidMultipart, match=words):
            related_boundary(bad, DICOM)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "does not open"),
        (b"x" * 2000 + b"\r\n--B\r\n\r\nx\r\n--B--", "does not open"),
        (b"--B--", "no parts"),
        (b"--B\r\n\r\nbody", "truncated: part 1"),
        (b"--B\r\nContent-Type: a", "truncated: the headers"),
        (b"--B\r\nX: " + b"y" * 300 + b"\r\n\r\nz\r\n--B--", "exceed 256"),
        (b"--B\r\n" + b"X: y\r\n" * 9 + b"\r\nz\r\n--B--", "more than 8 header"),
        (b"--B\r\n folded: y\r\n\r\nz\r\n--B--", "malformed header"),
        (b"--B\r\nNo colon\r\n\r\nz\r\n--B--", "malformed header"),
        ("--B\r\nX: 血\r\n\r\nz\r\n--B--".encode(), "malformed header"),
        (b"--B\r\nX: a\x00b\r\n\r\nz\r\n--B--", "malformed header"),
        (b"--B\r\nContent-Type: a\r\nContent-Type: b\r\n\r\nz\r\n--B--", "twice"),
        (b"--Bjunk\r\n\r\nz\r\n--B--", "not followed by a line end"),
        (b"--B\r\n\r\nz\r\n--B", "truncated: the body ends on a boundary"),
        (b"--B\r\n\r\nz\r\n" * 9 + b"--B--", "more than 8 parts"),
    ],
)
def test_refusals_say_where(body: bytes, words: str) -> None:
    with pytest.raises(InvalidMultipart, match=words):
        parse_related(body, "B", LIMITS)


def test_padding_preamble_and_epilogue_are_allowed() -> None:
    body = b"preamble\r\n--B  \t\r\nX: 1\r\n\r\nfirst\r\n--B\r\n\r\n\r\n--B--epilogue\r\n--B\r\n"
    parts = parse_related(body, "B", LIMITS)
    assert [(p.headers, p.body) for p in parts] == [((("x", "1"),), b"first"), ((), b"")]


def test_digest_header() -> None:
    data = b"some bytes"
    assert sha256_of_digest_header(content_digest(data)) is not None
    assert sha256_of_digest_header("sha-512=:AAAA:") is None  # another algorithm only
    assert sha256_of_digest_header(None) is None
    both = f"sha-512=:AAAA:, {content_digest(data)}"
    assert sha256_of_digest_header(both) == sha256_of_digest_header(content_digest(data))
    for bad in ["sha-256=AAAA", "sha-256=:AAAA:", "sha-256=:!!:", "SHA-256=:x:", ",", "=:a:"]:
        with pytest.raises(InvalidInstance):
            sha256_of_digest_header(bad)


def _mutate(body: bytes, rng: random.Random) -> bytes:
    """One hostile change inside the framing: bytes flipped, cut, doubled or inserted
    where the parser looks (boundaries, header lines, CRLFs)."""
    data = bytearray(body)
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(6)
        at = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif kind == 1:
            del data[at : at + rng.randrange(1, 40)]
        elif kind == 2:
            data[at:at] = rng.choice(
                [b"\r\n", b"\r\n\r\n", b"--B", b"\r\n--B", b"--B--", b":", b" "]
            )
        elif kind == 3:
            data[at:at] = data[at : at + rng.randrange(1, 60)]
        elif kind == 4:
            data[at:at] = (
                b"X-" + bytes(rng.randrange(33, 127) for _ in range(rng.randrange(300))) + b"\r\n"
            )
        else:
            data = data[:at]
    return bytes(data)


def test_hostile_bodies_parse_or_are_refused() -> None:
    rng = random.Random(13)
    refused = parsed = 0
    for _ in range(budget(3000)):
        body = _mutate(encode_related(_parts(rng.randrange(1, 5), rng), "B"), rng)
        try:
            parts = parse_related(body, "B", LIMITS)
        except InvalidMultipart as exc:
            assert str(exc)
            refused += 1
            continue
        parsed += 1
        assert 1 <= len(parts) <= LIMITS.max_parts
        for number, part in enumerate(parts, 1):
            assert len(part.headers) <= LIMITS.max_headers
            assert all(k == k.lower() and k.isascii() for k, _ in part.headers)
            # Every part that parses is checked without raising (a refusal is data).
            assert check_part(part, number).__class__.__name__ in ("Checked", "Failed")
    assert refused > 100 and parsed > 100, (refused, parsed)
