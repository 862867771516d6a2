"""A proof-of-delivery photo as it is kept: decoded, stripped, upright, scaled down and re-encoded.

Nothing of the upload is stored as sent. Its metadata goes (EXIF carries the GPS position of the
volunteer's phone, and the phone's make and serial), its orientation tag is applied to the pixels,
its longest side is brought down to a limit, and it is encoded afresh: JPEG, or PNG when it has
transparency. The dimensions are read from the header and checked before any pixel is decoded, so
an image claiming to be huge (a "decompression bomb") is refused without the memory it claims.

CPU work, no IO: callers run `normalise` in a thread.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from shared.errors import Invalid

# The media types an upload may be sent as, and the Pillow formats each may hold.
_FORMATS: dict[str, tuple[str, ...]] = {
    "image/jpeg": ("JPEG",),  # a phone's MPO (JPEG with a depth map) opens as JPEG too
    "image/png": ("PNG",),
    "image/webp": ("WEBP",),
}
try:  # HEIC (iPhones' default) only where its decoder is installed: pillow-heif is optional.
    from pillow_heif import register_heif_opener

    register_heif_opener()
    _FORMATS["image/heic"] = ("HEIF",)
except ImportError:  # pragma: no cover - depends on the installation
    pass

JPEG_QUALITY = 85


def supported_types() -> tuple[str, ...]:
    """The media types an upload may have here (image/heic only where its decoder is installed)."""
    return tuple(_FORMATS)


class PhotoUnreadable(Invalid):
    """The upload is no image of its type, or a broken one."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"The photo could not be read: {why}.",
            errors=[{"field": "body", "message": why}],
        )


class PhotoTooManyPixels(Invalid):
    """The image claims more pixels than a photo may have (a decompression bomb, or a panorama)."""

    def __init__(self, max_pixels: int, size: tuple[int, int] | None = None) -> None:
        claimed = f"The photo is {size[0]}x{size[1]} pixels" if size else "The photo has too many pixels"
        super().__init__(
            f"{claimed}; at most {max_pixels} pixels are accepted.",
            errors=[{"field": "body", "message": f"at most {max_pixels} pixels"}],
        )


@dataclass(frozen=True, slots=True)
class Normalised:
    """The bytes to store, their media type, size in pixels and SHA-256 (hex)."""

    data: bytes
    content_type: str
    width: int
    height: int
    sha256: str


def normalise(data: bytes, *, media_type: str, max_side: int, max_pixels: int) -> Normalised:
    """The photo as it is stored, from an upload sent as `media_type` (one of `supported_types()`)."""
    formats = _FORMATS[media_type]
    with warnings.catch_warnings():
        # Our own pixel limit is checked below; Pillow's warning for large images is no news here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=list(formats)) as source:
                width, height = source.size  # from the header: nothing is decoded yet
                if width * height > max_pixels:
                    raise PhotoTooManyPixels(max_pixels, (width, height))
                source.draft("RGB", (max_side, max_side))  # a JPEG decodes at a fraction of its size
                source.load()
                upright = ImageOps.exif_transpose(source)
        except Image.DecompressionBombError as exc:
            raise PhotoTooManyPixels(max_pixels) from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
            raise PhotoUnreadable(_why(exc, formats)) from exc
    return _encode(upright, max_side=max_side)


def _encode(image: Image.Image, *, max_side: int) -> Normalised:
    transparent = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    image = image.convert("RGBA" if transparent else "RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    # A fresh image of the pixels alone: no info, EXIF, XMP, ICC profile or comment is carried over.
    clean = Image.frombytes(image.mode, image.size, image.tobytes())
    out = io.BytesIO()
    if transparent:
        clean.save(out, format="PNG", optimize=True)
        content_type = "image/png"
    else:
        clean.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        content_type = "image/jpeg"
    stored = out.getvalue()
    return Normalised(
        data=stored,
        content_type=content_type,
        width=clean.width,
        height=clean.height,
        sha256=hashlib.sha256(stored).hexdigest(),
    )


def _why(exc: BaseException, formats: tuple[str, ...]) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return f"not a {formats[0]} image"
    return "the image data is damaged or incomplete"
