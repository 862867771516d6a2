"""Draw the volunteer app's icons: `python web/app_icons.py` writes the PNGs beside `icon.svg`.

The PNGs are committed (the app is served without a build step); this script is how they were made,
so a new colour or shape is one edit and one run. The drawing matches `icon.svg`: a white parcel
with a check mark on the app's green, inside the safe zone of a maskable icon.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

STATIC = Path(__file__).resolve().parents[1] / "services" / "dispatcher" / "entrypoints" / "app" / "static"
GREEN = (29, 92, 79, 255)
WHITE = (255, 255, 255, 255)


def icon(size: int) -> Image.Image:
    scale = size / 512
    image = Image.new("RGBA", (size, size), GREEN)
    draw = ImageDraw.Draw(image)

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        return (round(x0 * scale), round(y0 * scale), round(x1 * scale), round(y1 * scale))

    draw.rounded_rectangle(box(136, 160, 376, 372), radius=round(20 * scale), fill=WHITE)
    draw.rectangle(box(136, 204, 376, 224), fill=GREEN)
    points = [(196, 290), (240, 334), (320, 246)]
    draw.line([(round(x * scale), round(y * scale)) for x, y in points], fill=GREEN, width=round(28 * scale))
    return image


def main() -> None:
    for size in (192, 512):
        icon(size).save(STATIC / f"icon-{size}.png", optimize=True)


if __name__ == "__main__":
    main()
