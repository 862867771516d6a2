"""A photo is stored decoded, stripped of its metadata, upright, scaled down and re-encoded; an image
claiming too many pixels is refused from its header, before it takes the memory it claims."""

from __future__ import annotations

import hashlib
import io
import tracemalloc

import pytest
from PIL import Image

from services.dispatcher.domain.photo import (
    PhotoTooManyPixels,
    PhotoUnreadable,
    normalise,
    supported_types,
)
from tests import photo_samples

LIMITS = {"max_side": 1600, "max_pixels": 50_000_000}


def test_a_phone_jpeg_loses_its_gps_and_every_other_tag_and_is_stored_upright_and_smaller() -> None:
    upload = photo_samples.phone_jpeg(3000, 2000, orientation=6)
    sent = Image.open(io.BytesIO(upload)).getexif()
    assert sent.get_ifd(photo_samples.EXIF_GPS_IFD), "the sample does carry a GPS position"
    assert sent[photo_samples.EXIF_ORIENTATION] == 6

    stored = normalise(upload, media_type="image/jpeg", **LIMITS)

    assert stored.content_type == "image/jpeg"
    assert stored.sha256 == hashlib.sha256(stored.data).hexdigest()
    image = Image.open(io.BytesIO(stored.data))
    assert image.format == "JPEG"
    exif = image.getexif()
    assert len(exif) == 0 and not exif.get_ifd(photo_samples.EXIF_GPS_IFD)
    assert not {"exif", "icc_profile", "xmp", "comment"} & set(image.info)
    assert b"PhoneMaker" not in stored.data and b"Exif" not in stored.data
    # Turned as the tag said (portrait now), longest side brought down to 1600.
    assert (image.width, image.height) == (stored.width, stored.height) == (1067, 1600)
    top, bottom = image.getpixel((533, 100)), image.getpixel((533, 1500))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60, f"the red half is on top once upright: {top}"
    assert bottom[2] > 200 and bottom[0] < 60, f"the blue half is below: {bottom}"


def test_a_small_photo_keeps_its_size_and_transparency_keeps_png() -> None:
    stored = normalise(photo_samples.png(400, 300, transparent=True), media_type="image/png", **LIMITS)
    assert (stored.width, stored.height, stored.content_type) == (400, 300, "image/png")
    assert Image.open(io.BytesIO(stored.data)).mode == "RGBA"
    opaque = normalise(photo_samples.webp(300, 200), media_type="image/webp", **LIMITS)
    assert (opaque.width, opaque.height, opaque.content_type) == (300, 200, "image/jpeg")


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (b"", "image/jpeg"),
        (b"not an image at all", "image/png"),
        (b"%PDF-1.7\n1 0 obj\n", "image/jpeg"),
        (photo_samples.phone_jpeg(300, 200)[:400], "image/jpeg"),  # cut off mid-way
        (photo_samples.png()[:-60], "image/png"),
    ],
    ids=["empty", "text", "pdf", "truncated-jpeg", "truncated-png"],
)
def test_what_is_no_image_or_a_broken_one_is_unreadable(data: bytes, media_type: str) -> None:
    with pytest.raises(PhotoUnreadable) as refused:
        normalise(data, media_type=media_type, **LIMITS)
    errors = refused.value.errors or []
    assert [error["field"] for error in errors] == ["body"]


def test_a_png_bomb_is_refused_from_its_header_without_the_memory_it_claims() -> None:
    bomb = photo_samples.png_bomb(100_000, 100_000)  # 10^10 pixels: 30 GB decoded
    assert len(bomb) < 200
    tracemalloc.start()
    try:
        with pytest.raises(PhotoTooManyPixels):
            normalise(bomb, media_type="image/png", **LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024, f"refusing took {peak} bytes"


def test_the_pixel_limit_is_ours_and_is_checked_before_decoding() -> None:
    # Below Pillow's own bomb threshold, above the configured limit: refused all the same.
    claimed = photo_samples.png_bomb(8000, 7000)
    with pytest.raises(PhotoTooManyPixels) as refused:
        normalise(claimed, media_type="image/png", max_side=1600, max_pixels=50_000_000)
    assert "8000x7000" in refused.value.message
    real = photo_samples.png(2000, 1000)
    with pytest.raises(PhotoTooManyPixels):
        normalise(real, media_type="image/png", max_side=1600, max_pixels=1_000_000)
    assert normalise(real, media_type="image/png", max_side=1600, max_pixels=2_000_000).width == 1600


def test_the_supported_types_are_the_common_camera_formats() -> None:
    assert {"image/jpeg", "image/png", "image/webp"} <= set(supported_types())
