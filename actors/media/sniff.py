r"""What an upload is, judged by its content alone.

A file's name and its declared Content-Type are chosen by the client, so neither decides how
Nova treats it: the leading bytes do. Only the formats Nova processes are recognised; anything
else (text, PDF, SVG, HEIC, AVIF, audio, a head too short to hold the signature) is `None`.

    >>> sniff(b"\x89PNG\r\n\x1a\n" + bytes(56))
    Sniffed(kind='IMAGE', mime='image/png')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How many leading bytes callers pass; every signature below fits in the first 12.
SNIFF_BYTES = 64

MediaKind = Literal["IMAGE", "VIDEO"]


@dataclass(frozen=True)
class Sniffed:
    kind: MediaKind
    mime: str


_JPEG = Sniffed("IMAGE", "image/jpeg")
_PNG = Sniffed("IMAGE", "image/png")
_GIF = Sniffed("IMAGE", "image/gif")
_WEBP = Sniffed("IMAGE", "image/webp")
_MP4 = Sniffed("VIDEO", "video/mp4")
_MOV = Sniffed("VIDEO", "video/quicktime")
# Matroska and WebM share the EBML header; both go to the same video pipeline.
_WEBM = Sniffed("VIDEO", "video/webm")

_PREFIXES: tuple[tuple[bytes, Sniffed], ...] = (
    (b"\xff\xd8\xff", _JPEG),
    (b"\x89PNG\r\n\x1a\n", _PNG),
    (b"GIF87a", _GIF),
    (b"GIF89a", _GIF),
    (b"\x1a\x45\xdf\xa3", _WEBM),
)

# ISO-BMFF files open with an `ftyp` box whose major brand names the profile. Only video
# brands are listed: HEIC and AVIF (heic, mif1, avif) and audio (M4A) use the same box.
_BRANDS: dict[bytes, Sniffed] = {
    **dict.fromkeys(
        (b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash"),
        _MP4,
    ),
    **dict.fromkeys((b"M4V ", b"M4VH", b"M4VP"), _MP4),
    b"qt  ": _MOV,
}


def sniff(head: bytes) -> Sniffed | None:
    """What `head` (the first `SNIFF_BYTES` of a file) is, or `None` if Nova does not take it."""
    for prefix, found in _PREFIXES:
        if head.startswith(prefix):
            return found
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _WEBP
    if head[4:8] == b"ftyp":
        return _BRANDS.get(head[8:12])
    return None
