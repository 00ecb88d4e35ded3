"""process_image: bad uploads refused before decoding; what is served is upright, resized
without upscaling, and carries none of the upload's metadata. Inputs are made in memory."""

from __future__ import annotations

import pickle
import struct
import zlib
from io import BytesIO
from typing import Any, NoReturn

import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile

from actors.media.images import ImageRejected, ProcessedImage, Variant, process_image

MAX_PIXELS = 50_000_000


def _encode(image: Image.Image, pillow_format: str, **params: Any) -> bytes:
    out = BytesIO()
    image.save(out, pillow_format, **params)
    return out.getvalue()


def _photo(width: int, height: int) -> Image.Image:
    """Gradients in red and green: enough detail for every codec to have work."""
    red = Image.linear_gradient("L").resize((width, height))
    green = red.transpose(Image.Transpose.ROTATE_90).resize((width, height))
    return Image.merge("RGB", (red, green, Image.new("L", (width, height), 90)))


def _halves(width: int, height: int) -> Image.Image:
    """Red on the left half, blue on the right: shows which way the image was turned."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, width // 2, height))
    return image


def _png_declaring(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims width x height (the CRC fixed so the header is valid)."""
    png = _encode(Image.new("RGB", (1, 1)), "PNG")
    # Signature (8), IHDR length (4), b"IHDR", then width, height and 5 more header bytes.
    ihdr = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def _rgb(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    pixel = image.convert("RGB").getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel


def _is_near(pixel: tuple[int, ...], expected: tuple[int, int, int]) -> bool:
    """Within what lossy codecs move a flat colour."""
    return all(abs(a - b) <= 40 for a, b in zip(pixel, expected, strict=True))


def _srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _sizes(result: ProcessedImage) -> dict[tuple[str, str], tuple[int, int]]:
    return {(v.name, v.format): (v.width, v.height) for v in result.variants}


def _opened(variant: Variant) -> Image.Image:
    image = Image.open(BytesIO(variant.data))
    assert image.format == variant.format.upper()
    assert image.size == (variant.width, variant.height)
    return image


def test_every_variant_exists_in_webp_and_jpeg_at_its_size() -> None:
    result = process_image(_encode(_photo(2000, 1500), "JPEG"), max_pixels=MAX_PIXELS)

    assert (result.width, result.height) == (2000, 1500)
    expected = {"thumb": (150, 150), "small": (480, 360), "large": (1080, 810)}
    assert _sizes(result) == {
        (name, fmt): size for name, size in expected.items() for fmt in ("webp", "jpeg")
    }
    for variant in result.variants:
        image = _opened(variant)
        assert image.mode == "RGB"
        assert variant.content_type == f"image/{variant.format}"
        assert Image.MIME[image.format or ""] == variant.content_type


def test_the_long_side_is_the_one_limited() -> None:
    result = process_image(_encode(_photo(1000, 3000), "PNG"), max_pixels=MAX_PIXELS)

    sizes = _sizes(result)
    assert sizes["small", "webp"] == (160, 480)
    assert sizes["large", "jpeg"] == (360, 1080)
    assert sizes["thumb", "jpeg"] == (150, 150)


@pytest.mark.parametrize(
    ("source", "thumb", "small", "large"),
    [
        ((300, 200), (150, 150), (300, 200), (300, 200)),
        ((800, 600), (150, 150), (480, 360), (800, 600)),
        ((100, 60), (60, 60), (100, 60), (100, 60)),
        ((1, 1), (1, 1), (1, 1), (1, 1)),
    ],
)
def test_nothing_is_upscaled(
    source: tuple[int, int],
    thumb: tuple[int, int],
    small: tuple[int, int],
    large: tuple[int, int],
) -> None:
    result = process_image(_encode(_photo(*source), "PNG"), max_pixels=MAX_PIXELS)

    for fmt in ("webp", "jpeg"):
        sizes = _sizes(result)
        assert (sizes["thumb", fmt], sizes["small", fmt], sizes["large", fmt]) == (
            thumb,
            small,
            large,
        )


def _oriented_jpeg(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return _encode(image, "JPEG", exif=exif, quality=95)


def test_exif_orientation_6_turns_the_image_upright() -> None:
    result = process_image(_oriented_jpeg(_halves(200, 100), 6), max_pixels=MAX_PIXELS)

    assert (result.width, result.height) == (100, 200)
    large = next(v for v in result.variants if v.name == "large" and v.format == "webp")
    image = _opened(large)
    assert image.size == (100, 200)
    # Orientation 6 is shown turned 90 degrees clockwise: the left (red) half is on top.
    assert _is_near(_rgb(image, (50, 20)), (255, 0, 0))
    assert _is_near(_rgb(image, (50, 180)), (0, 0, 255))


def test_a_large_rotated_jpeg_reports_its_full_upright_size() -> None:
    # Large enough that the JPEG is decoded at reduced scale (draft) before turning.
    result = process_image(_oriented_jpeg(_photo(2400, 1200), 6), max_pixels=MAX_PIXELS)

    assert (result.width, result.height) == (1200, 2400)
    assert _sizes(result)["large", "jpeg"] == (540, 1080)


def test_no_metadata_of_the_upload_survives() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "NovaTestCam"
    exif[ExifTags.Base.BodySerialNumber] = "SN-0042-PRIVATE"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.0)
    upload = _encode(
        _photo(640, 480),
        "JPEG",
        exif=exif,
        xmp=b"<x:xmpmeta>HomeAddress</x:xmpmeta>",
        comment=b"NovaTestComment",
    )
    source = Image.open(BytesIO(upload))
    assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the test upload has them
    assert {"exif", "xmp", "comment"} <= source.info.keys()

    result = process_image(upload, max_pixels=MAX_PIXELS)

    for variant in result.variants:
        image = _opened(variant)
        assert not image.getexif()
        assert not {"exif", "xmp", "comment", "icc_profile"} & image.info.keys()
        for secret in (b"NovaTestCam", b"SN-0042", b"HomeAddress", b"NovaTestComment"):
            assert secret not in variant.data


def test_an_icc_profile_is_applied_then_dropped() -> None:
    upload = _encode(Image.new("RGB", (64, 64), (200, 40, 40)), "PNG", icc_profile=_srgb_profile())

    result = process_image(upload, max_pixels=MAX_PIXELS)

    for variant in result.variants:
        image = _opened(variant)
        assert "icc_profile" not in image.info
        assert _is_near(_rgb(image, (10, 10)), (200, 40, 40))


def test_an_unusable_icc_profile_is_ignored() -> None:
    upload = _encode(_photo(64, 64), "PNG", icc_profile=b"not a profile at all" * 10)

    result = process_image(upload, max_pixels=MAX_PIXELS)

    assert all("icc_profile" not in _opened(v).info for v in result.variants)


def test_transparency_is_kept_in_webp_and_laid_on_white_in_jpeg() -> None:
    image = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    image.paste((0, 0, 255, 255), (100, 0, 200, 100))

    result = process_image(_encode(image, "PNG"), max_pixels=MAX_PIXELS)

    for variant in result.variants:
        if variant.name != "large":
            continue
        opened = _opened(variant)
        if variant.format == "jpeg":
            assert opened.mode == "RGB"
            assert _is_near(_rgb(opened, (20, 50)), (255, 255, 255))
        else:
            assert opened.mode == "RGBA"
            assert opened.getchannel("A").getpixel((20, 50)) == 0


@pytest.mark.parametrize("pillow_format", ["GIF", "WEBP"])
def test_an_animation_keeps_its_first_frame(pillow_format: str) -> None:
    red, blue = Image.new("RGB", (64, 64), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 255))
    upload = _encode(red, pillow_format, save_all=True, append_images=[blue], duration=100)
    assert getattr(Image.open(BytesIO(upload)), "n_frames", 1) == 2

    result = process_image(upload, max_pixels=MAX_PIXELS)

    for variant in result.variants:
        image = _opened(variant)
        assert getattr(image, "n_frames", 1) == 1
        assert _is_near(_rgb(image, (32, 32)), (255, 0, 0))


def test_a_cmyk_jpeg_is_served_as_rgb() -> None:
    result = process_image(_encode(_photo(300, 200).convert("CMYK"), "JPEG"), max_pixels=10**6)

    assert {_opened(v).mode for v in result.variants} == {"RGB"}


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped() -> None:
    upload = _encode(Image.new("I;16", (40, 40), 30_000), "PNG")

    result = process_image(upload, max_pixels=10**4)

    for variant in result.variants:
        assert _is_near(_rgb(_opened(variant), (20, 20)), (117, 117, 117))


@pytest.mark.parametrize("with_profile", [False, True])
def test_a_transparent_colour_key_becomes_alpha(with_profile: bool) -> None:
    # With a profile, the key must become alpha before the profile is applied, or it is lost.
    profile = {"icc_profile": _srgb_profile()} if with_profile else {}
    upload = _encode(_halves(64, 32), "PNG", transparency=(255, 0, 0), **profile)
    assert ("icc_profile" in Image.open(BytesIO(upload)).info) is with_profile

    result = process_image(upload, max_pixels=10**4)

    large = next(v for v in result.variants if v.name == "large" and v.format == "webp")
    alpha = _opened(large).getchannel("A")
    assert alpha.getpixel((5, 5)) == 0
    assert alpha.getpixel((60, 5)) == 255


def _refuse_to_decode(self: ImageFile.ImageFile) -> NoReturn:
    raise AssertionError("pixels were decoded")


@pytest.mark.parametrize(
    ("side", "reason"),
    [
        (8_000, "the image is 8000x8000 pixels; at most 50,000,000 pixels are accepted"),
        # Over Pillow's own limit too, which it enforces while reading the header.
        (30_000, "the image has more pixels than Nova accepts"),
    ],
)
def test_a_declared_canvas_over_max_pixels_is_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch, side: int, reason: str
) -> None:
    monkeypatch.setattr(ImageFile.ImageFile, "load", _refuse_to_decode)

    with pytest.raises(ImageRejected) as refused:
        process_image(_png_declaring(side, side), max_pixels=MAX_PIXELS)
    assert refused.value.reason == reason


def test_max_pixels_applies_to_real_images_too() -> None:
    upload = _encode(_photo(100, 100), "PNG")

    with pytest.raises(ImageRejected, match="100x100"):
        process_image(upload, max_pixels=9_999)
    assert process_image(upload, max_pixels=10_000).width == 100


@pytest.mark.parametrize("side", [10_000, 30_000])
def test_pillows_own_bomb_limit_refuses_too(side: int) -> None:
    # 10000^2 is over Pillow's warning limit, 30000^2 over its error limit.
    assert Image.MAX_IMAGE_PIXELS is not None
    assert side * side > Image.MAX_IMAGE_PIXELS

    with pytest.raises(ImageRejected, match="more pixels than Nova accepts"):
        process_image(_png_declaring(side, side), max_pixels=10**12)


@pytest.mark.parametrize("pillow_format", ["JPEG", "PNG", "WEBP", "GIF"])
def test_a_truncated_image_cannot_be_decoded(pillow_format: str) -> None:
    whole = _encode(_photo(600, 400), pillow_format)

    with pytest.raises(ImageRejected, match="cannot be decoded"):
        process_image(whole[: len(whole) // 2], max_pixels=MAX_PIXELS)


@pytest.mark.parametrize(
    "upload",
    [
        b"",
        b"plain text, not an image",
        b"%PDF-1.7\n",
        _encode(Image.new("RGB", (8, 8)), "BMP"),
        _encode(Image.new("RGB", (8, 8)), "TIFF"),
    ],
)
def test_other_files_are_not_images_nova_takes(upload: bytes) -> None:
    with pytest.raises(ImageRejected, match="not a JPEG, PNG, WebP or GIF"):
        process_image(upload, max_pixels=MAX_PIXELS)


def test_the_blurhash_has_4x3_components() -> None:
    result = process_image(_encode(_photo(640, 480), "JPEG"), max_pixels=MAX_PIXELS)

    # 1 size flag ("L" is 4x3), 1 maximum, 4 for the average colour, 2 for each of 11 others.
    assert result.blurhash[0] == "L"
    assert len(result.blurhash) == 28
    plain = process_image(_encode(Image.new("RGB", (50, 50), "gray"), "PNG"), max_pixels=10**4)
    assert plain.blurhash != result.blurhash


def test_image_rejected_survives_pickling() -> None:
    error = ImageRejected("the image is damaged or truncated and cannot be decoded")

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is ImageRejected
    assert copy.reason == error.reason
    assert str(copy) == str(error)


def test_max_pixels_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        process_image(b"", max_pixels=0)
