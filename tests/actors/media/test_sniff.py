"""sniff: an upload's kind comes from its first bytes, and anything unknown is None."""

from __future__ import annotations

from io import BytesIO

import pytest
from PIL import Image

from actors.media.sniff import SNIFF_BYTES, MediaKind, Sniffed, sniff


def _image(pillow_format: str) -> bytes:
    out = BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 200)).save(out, pillow_format)
    return out.getvalue()


def _ftyp(brand: bytes, *compatible: bytes) -> bytes:
    body = b"ftyp" + brand + b"\x00\x00\x02\x00" + b"".join(compatible)
    return (len(body) + 4).to_bytes(4, "big") + body + b"\x00\x00\x00\x08free"


# EBML header: version 1, read version 1, max id 4, max size 8, doctype "webm".
_WEBM = bytes.fromhex("1a45dfa39f4286810142f7810142f2810442f381084282847765626d42878104")


@pytest.mark.parametrize(
    ("head", "kind", "mime"),
    [
        (_image("JPEG"), "IMAGE", "image/jpeg"),
        (_image("PNG"), "IMAGE", "image/png"),
        (_image("WEBP"), "IMAGE", "image/webp"),
        (_image("GIF"), "IMAGE", "image/gif"),
        (b"GIF87a" + bytes(20), "IMAGE", "image/gif"),
        (_ftyp(b"isom", b"isom", b"iso2", b"avc1", b"mp41"), "VIDEO", "video/mp4"),
        (_ftyp(b"mp42", b"mp42", b"isom"), "VIDEO", "video/mp4"),
        (_ftyp(b"M4V ", b"M4V ", b"mp42"), "VIDEO", "video/mp4"),
        (_ftyp(b"dash", b"iso6"), "VIDEO", "video/mp4"),
        (_ftyp(b"qt  ", b"qt  "), "VIDEO", "video/quicktime"),
        (_WEBM, "VIDEO", "video/webm"),
    ],
)
def test_known_formats_are_recognised_by_content(head: bytes, kind: MediaKind, mime: str) -> None:
    assert sniff(head[:SNIFF_BYTES]) == Sniffed(kind, mime)


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello, this is plain text and not an image at all\n",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>",
        _ftyp(b"heic", b"mif1", b"heic"),
        _ftyp(b"mif1", b"mif1", b"heic"),
        _ftyp(b"avif", b"avif", b"mif1", b"miaf"),
        _ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"),
        b"BM" + bytes(60),  # BMP: decodable, but not a format Nova takes
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
    ],
)
def test_other_content_is_not_recognised(head: bytes) -> None:
    assert sniff(head) is None


@pytest.mark.parametrize(
    ("whole", "signature_length"),
    [
        (_image("JPEG"), 3),
        (_image("PNG"), 8),
        (_image("WEBP"), 12),  # RIFF, the size, WEBP
        (_image("GIF"), 6),
        (_ftyp(b"isom"), 12),  # the box size, ftyp, the major brand
        (_WEBM, 4),
    ],
)
def test_a_head_shorter_than_the_signature_is_not_recognised(
    whole: bytes, signature_length: int
) -> None:
    assert sniff(whole[: signature_length - 1]) is None
    assert sniff(whole[:signature_length]) is not None
    assert signature_length <= SNIFF_BYTES
