"""process_image: an uploaded image made safe and cheap to serve.

Uploads are untrusted, so three gates come before any pixel is decoded: Pillow may try only
the JPEG, PNG, WebP and GIF decoders; the canvas the header declares must hold at most
`max_pixels` (a few kilobytes can declare a canvas that takes gigabytes to decode); and
`verify()` must pass. Decoding then starts again from fresh bytes, since a verified image
cannot be decoded.

The image is turned upright by its EXIF orientation, converted to sRGB if it carries an ICC
profile, and re-encoded from its pixels alone: no EXIF (GPS position, camera serial), XMP,
comment or profile of the upload reaches a reader. Animated GIF and WebP keep their first
frame only.

Every variant always exists, in WebP and in JPEG: `thumb` (a 150 px square, centre-cropped),
`small` (480 px on the long side) and `large` (1080 px). Nothing is upscaled: a source
smaller than a target is re-encoded at its own size (a thumb at the shorter side), so a
client can ask for any variant without a fallback, and the duplicates a small source costs
are small. JPEG has no alpha: transparent sources are laid on white.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, field
from functools import cache
from io import BytesIO
from typing import Any, Literal

import blurhash
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

Format = Literal["webp", "jpeg"]

THUMB_PX = 150  # the side of the square
SMALL_PX = 480  # the long side
LARGE_PX = 1080  # the long side
FORMATS: tuple[Format, ...] = ("webp", "jpeg")

_PILLOW_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
_SAVE: dict[Format, tuple[str, dict[str, Any]]] = {
    "webp": ("WEBP", {"quality": 80, "method": 4}),
    "jpeg": ("JPEG", {"quality": 82, "progressive": True, "optimize": True}),
}
# What Pillow raises for damaged input; anything else is a bug here, not a bad upload.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
# A blurhash keeps a few colours: a 32 px copy hashes like the full image, in milliseconds.
_BLURHASH_PX = 32
_BLURHASH_COMPONENTS = (4, 3)
_WHITE = (255, 255, 255)


class ImageRejected(Exception):
    """The upload is not an image Nova will serve; `reason` can be shown to its uploader."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Variant:
    name: str  # "thumb", "small" or "large"
    format: Format
    width: int
    height: int
    data: bytes = field(repr=False)

    @property
    def content_type(self) -> str:
        return f"image/{self.format}"


@dataclass(frozen=True)
class ProcessedImage:
    """The upright size of the upload, its blurhash, and the variants to store."""

    width: int
    height: int
    blurhash: str
    variants: list[Variant]


def process_image(data: bytes, *, max_pixels: int) -> ProcessedImage:
    """Check, orient, strip and resize `data`; raises `ImageRejected` for a bad upload."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    upright, (width, height) = _decode(data, max_pixels)
    sized = _sized(_plain_srgb(upright))
    variants = [_encode(name, image, fmt) for name, image in sized.items() for fmt in FORMATS]
    return ProcessedImage(width, height, blurhash_of(sized["small"]), variants)


def _decode(data: bytes, max_pixels: int) -> tuple[Image.Image, tuple[int, int]]:
    try:
        # Pillow's own bomb limit refuses too, rather than leaving a warning in a log. The
        # filter is process-wide while it lasts: Ray runs one task per worker process.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _open_upright(data, max_pixels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageRejected("the image has more pixels than Nova accepts") from e
    except UnidentifiedImageError as e:
        raise ImageRejected("the file is not a JPEG, PNG, WebP or GIF image") from e
    except _DECODE_ERRORS as e:
        raise ImageRejected("the image is damaged or truncated and cannot be decoded") from e


def _open_upright(data: bytes, max_pixels: int) -> tuple[Image.Image, tuple[int, int]]:
    """The first frame, upright, and the upload's full size once upright."""
    with Image.open(BytesIO(data), formats=_PILLOW_FORMATS) as probe:
        _check_pixels(probe.size, max_pixels)
        probe.verify()
    with Image.open(BytesIO(data), formats=_PILLOW_FORMATS) as image:
        full = image.size
        # JPEG decodes at 1/2, 1/4 or 1/8 scale for a fraction of the work; the draft stays
        # at least as large as the largest variant on both sides.
        image.draft("RGB", (LARGE_PX, LARGE_PX))
        image.load()
        decoded = image.size
        upright = ImageOps.exif_transpose(image)
    # Orientations 5 to 8 swap the sides (a square is the same either way).
    return upright, full if upright.size == decoded else (full[1], full[0])


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageRejected(
            f"the image is {width}x{height} pixels; at most {max_pixels:,} pixels are accepted"
        )


def _plain_srgb(image: Image.Image) -> Image.Image:
    """RGB (RGBA if the source has transparency) in sRGB, with nothing left in `info`."""
    mode = "RGBA" if image.has_transparency_data else "RGB"
    icc = image.info.get("icc_profile")
    if image.mode.startswith("I"):
        # 16-bit grey (PNG): converted as it is, Pillow would clip it to white, not scale it.
        image = image.point(lambda value: value / 256).convert("L")
    # CMYK goes through its profile to RGB. Anything else becomes RGB(A) first, so that a
    # transparent colour key (PNG tRNS) is alpha before the profile maps RGB(A) to RGB(A).
    if image.mode not in ("CMYK", mode):
        image = image.convert(mode)
    if icc:
        image = _to_srgb(image, icc, mode) or image
    plain = image if image.mode == mode else image.convert(mode)
    # Savers fall back to `info` for some metadata (JPEG comments): leave them none.
    plain.info = {}
    return plain


def _to_srgb(image: Image.Image, icc: bytes, mode: str) -> Image.Image | None:
    """`image` mapped from its ICC profile to sRGB, or None if the profile is unusable.

    Browsers take pixels as sRGB once the profile is gone: a Display P3 phone photo stripped
    of its profile without this would look washed out.
    """
    try:
        profile = ImageCms.ImageCmsProfile(BytesIO(icc))
        return ImageCms.profileToProfile(image, profile, _srgb(), outputMode=mode)
    except (ImageCms.PyCMSError, OSError):
        return None  # broken, or for other pixels (a grey profile): take them as sRGB


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _sized(plain: Image.Image) -> dict[str, Image.Image]:
    """The variants by name, each resized from the smallest image that holds it: resizing a
    full photo costs far more than encoding all six variants."""
    large = _long_side(plain, LARGE_PX)
    side = min(THUMB_PX, *plain.size)
    # A panorama's large variant can be too short for the thumb: crop that from the source.
    thumb = ImageOps.fit(
        large if min(large.size) >= side else plain, (side, side), Image.Resampling.LANCZOS
    )
    return {"thumb": thumb, "small": _long_side(large, SMALL_PX), "large": large}


def _long_side(image: Image.Image, px: int) -> Image.Image:
    size = _scaled(image.size, px)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _scaled(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _encode(name: str, image: Image.Image, fmt: Format) -> Variant:
    return Variant(name, fmt, image.width, image.height, encoded(image, fmt))


def encoded(image: Image.Image, fmt: Format) -> bytes:
    """`image` in `fmt` as every variant is saved (a video's poster too)."""
    pillow_format, options = _SAVE[fmt]
    out = BytesIO()
    (image if fmt == "webp" else _on_white(image)).save(out, pillow_format, **options)
    return out.getvalue()


def _on_white(image: Image.Image) -> Image.Image:
    if image.mode != "RGBA":
        return image
    flat = Image.new("RGB", image.size, _WHITE)
    flat.paste(image, mask=image.getchannel("A"))
    return flat


def blurhash_of(image: Image.Image) -> str:
    """The placeholder a client paints while `image` loads."""
    small = _on_white(image.resize(_scaled(image.size, _BLURHASH_PX), Image.Resampling.BOX))
    pixels = small.get_flattened_data()
    width = small.width
    rows = [pixels[y * width : (y + 1) * width] for y in range(small.height)]
    return str(blurhash.encode(rows, *_BLURHASH_COMPONENTS))
