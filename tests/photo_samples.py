"""Images the photo tests upload: a phone's JPEG with GPS and orientation tags, a PNG bomb, and others."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

EXIF_ORIENTATION = 0x0112
EXIF_MAKE = 0x010F
EXIF_GPS_IFD = 0x8825
# Where the phone was: the GPS tags a real camera writes (latitude/longitude refs and values).
GPS = {1: "N", 2: (31.0, 14.0, 9.5), 3: "E", 4: (121.0, 28.0, 44.25)}


def phone_jpeg(width: int = 3000, height: int = 2000, *, orientation: int = 6) -> bytes:
    """A landscape JPEG whose left half is red and right half blue, tagged to be shown turned
    (orientation 6: rotate 90 degrees clockwise, as a phone held upright writes it), with its GPS
    position and maker in EXIF."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, width // 2, height))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    exif[EXIF_MAKE] = "PhoneMaker"
    exif[EXIF_GPS_IFD] = GPS
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, quality=90)
    return out.getvalue()


def png(width: int = 400, height: int = 300, *, transparent: bool = False) -> bytes:
    image = Image.new(
        "RGBA" if transparent else "RGB", (width, height), (0, 128, 0, 128)[: 4 if transparent else 3]
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def webp(width: int = 300, height: int = 200) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 100, 0)).save(out, format="WEBP")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming `width` x `height` pixels (10^10 by default: 30 GB as RGB), with a
    few bytes of compressed data behind it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    row = b"\x00" + b"\x00" * 3 * 16
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(row * 16))
        + _chunk(b"IEND", b"")
    )
