"""Ink made into pictures: the machine's fonts (Debian's packages), and dark ink on light paper.

Shared by the pictures of digits that ``photos`` makes and the pictures of non-digits that
``notdigits`` makes, so that both look alike but for what they show.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from paddle_mnist.errors import UserError

FONT_DIRS = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype"))
# Per font set: the file name prefixes to use and the Debian packages that hold them.
FONTS = {
    "printed": (("DejaVu", "Liberation"), "fonts-dejavu-core fonts-liberation"),
    "handwriting_font": (
        ("Humor-Sans", "ComicNeue", "DancingScript"),
        "fonts-humor-sans fonts-comic-neue fonts-dancingscript",
    ),
}


@functools.cache
def font_files(kind: str) -> tuple[Path, ...]:
    """The machine's font files for a font set (``FONTS`` names their Debian packages); the font
    directories are walked once per set, not once per picture."""
    prefixes, _ = FONTS[kind]
    found = sorted(f for d in FONT_DIRS if d.is_dir() for f in d.rglob("*") if f.suffix in (".ttf", ".otf"))
    return tuple(f for f in found if f.name.startswith(prefixes))


def checked_font_files(kind: str) -> tuple[Path, ...]:
    """``font_files(kind)``, or a one-line error naming the packages to install when there are none."""
    files = font_files(kind)
    if not files:
        raise UserError(f"the {kind} set needs fonts: apt-get install {FONTS[kind][1]}")
    return files


def glyph(text: str, kind: str, rng: np.random.Generator, largest: int) -> Image.Image:
    """``text`` white on black in a 220x200 canvas, in one of the ``kind`` set's fonts at a random size
    (90 to ``largest`` px) and a random place near the centre."""
    fonts = checked_font_files(kind)
    canvas = Image.new("L", (220, 200), 0)
    font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), int(rng.integers(90, largest)))
    centre = (110 + int(rng.integers(-25, 25)), 100 + int(rng.integers(-20, 20)))
    ImageDraw.Draw(canvas).text(centre, text, fill=255, font=font, anchor="mm")
    return canvas


def on_paper(ink: np.ndarray, rng, paper=(235, 232, 225), pen=(25, 25, 30)) -> np.ndarray:
    """RGB uint8: pen colour where the ink is, paper elsewhere, with a soft light gradient."""
    h, w = ink.shape
    light = 1 - 0.15 * np.linspace(0, 1, w)[None, :] * rng.uniform(0.3, 1.0)
    paper_rgb = np.array(paper, np.float32)[None, None] * light[..., None]
    pen_rgb = np.array(pen, np.float32)[None, None]
    rgb = paper_rgb * (1 - ink[..., None]) + pen_rgb * ink[..., None]
    return np.clip(rgb, 0, 255).astype(np.uint8)
