"""Turn a real picture of a digit into an MNIST-like 28x28 image.

MNIST digits were made by fitting the ink into a 20x20 box (aspect kept) and
centring its centre of mass in 28x28, white ink on black.  Photos of digits
are dark ink on light paper, off-centre, with margins, colour and EXIF
rotation; each step below undoes one of those differences.  Intermediate
images are float32 "ink maps": 0 = background, 1 = full ink.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from paddle_mnist.errors import UserError

MAX_PIXELS = 40_000_000        # decompression-bomb guard: 40 MP is far above any phone photo of a digit
WORK_SIZE = 512                # long side the analysis runs at; more only costs time
BOX, CANVAS = 20, 28
MIN_CONTRAST = 0.15            # ink darker than paper by less than this is "no digit"
FAINT_STROKE = 0.55            # median stroke pixel of MNIST's faintest digits (1st percentile, 2,000 eval digits: 0.54)


class ImageError(UserError):
    pass


class NoDigitFound(UserError):
    pass


@contextlib.contextmanager
def decoding(source: str):
    """Within: any failure of a decoder or converter on one image's bytes becomes that image's one-line
    ``ImageError`` (Pillow raises ValueError, SyntaxError, struct.error... on odd files)."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        raise ImageError(f"{source}: cannot decode the image ({type(e).__name__}: {e})") from None


def open_image(path: Path) -> Image.Image:
    """Open and decode ``path``, with one-line errors for every way that can fail."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    return decode(path, str(path))


def open_image_bytes(data: bytes, source: str = "upload") -> Image.Image:
    """The same as ``open_image`` for an image's bytes (an upload); ``source`` names it in errors."""
    if not data:
        raise ImageError(f"{source}: empty (no image data)")
    return decode(io.BytesIO(data), source)


def decode(file, source: str) -> Image.Image:
    """Decode an image file; a JPEG only at the scale the analysis needs (``Image.draft``).

    A 12-megapixel phone JPEG decoded in full takes ~45 ms; its DCT can instead
    be decoded at 1/2, 1/4 or 1/8 scale, as long as the result stays at least
    ``WORK_SIZE`` on its long side, which is all ``shrink`` keeps anyway.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(file)
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(f"{source}: {image.width}x{image.height} pixels is over the {MAX_PIXELS:,}-pixel limit")
            if image.format == "JPEG":  # at least half of WORK_SIZE on the long side: digits stay ~100 px tall
                long_side = max(image.size)
                image.draft("L", (image.width * WORK_SIZE // 2 // long_side, image.height * WORK_SIZE // 2 // long_side))
            image.load()
    except UnidentifiedImageError:
        raise ImageError(f"{source}: not an image (Pillow cannot identify it)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{source}: refused as a possible decompression bomb (too many pixels)") from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's decoders raise all three on broken files
        raise ImageError(f"{source}: unreadable image ({e})") from None
    return image


def exif_upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, as a phone's gallery would show the photo."""
    return ImageOps.exif_transpose(image)


def to_gray(image: Image.Image) -> np.ndarray:
    """Any mode to float32 luminance in [0,1] (1 = white); transparency is composited over white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        return np.clip(values / top, 0, 1)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def shrink(gray: np.ndarray, size: int = WORK_SIZE) -> np.ndarray:
    """Downscale so the long side is at most ``size``: the analysis needs no more detail."""
    h, w = gray.shape
    if max(h, w) <= size:
        return gray
    scale = size / max(h, w)
    small = Image.fromarray(gray, mode="F").resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BOX)
    return np.asarray(small, dtype=np.float32)


def ink_polarity(gray: np.ndarray) -> np.ndarray:
    """Ink map with the digit bright: invert dark-ink-on-light-paper pictures.

    The background is what the border mostly shows; if it is lighter than the
    image's middle grey the ink is dark and the picture is inverted.
    """
    return 1.0 - gray if np.median(border(gray)) > 0.5 else gray.copy()


def border(image: np.ndarray) -> np.ndarray:
    """The outermost pixels of ``image``, all four sides."""
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def median3(image: np.ndarray) -> np.ndarray:
    """3x3 median filter of a [0,1] image: isolated specks vanish, strokes stay.

    Pillow's filter on 8-bit levels: 20x faster than a numpy median of nine
    shifted copies, and 1/255 is far finer than any threshold here.
    """
    levels = Image.fromarray(np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8), mode="L")
    return np.asarray(levels.filter(ImageFilter.MedianFilter(3)), dtype=np.float32) / 255.0


def level_background(ink: np.ndarray) -> np.ndarray:
    """Subtract the background level, stretch the ink to 1 and zero faint noise.

    The background is the median (most of a photo is paper), or the border's
    median where that is lower: a thick digit cropped tight can cover most of
    the picture but not most of its edge.  The strong ink is the brightest
    point once specks are filtered out, however small the digit; noise is
    whatever stays under a third of the way from one to the other.
    """
    background = float(min(np.median(ink), np.median(border(ink))))
    strong = float(median3(ink).max())
    contrast = strong - background
    if contrast < MIN_CONTRAST:
        raise NoDigitFound(f"no digit found (ink contrast {contrast:.2f} is below {MIN_CONTRAST})")
    levelled = np.clip((ink - background) / contrast, 0, 1)
    levelled[levelled < 1 / 3] = 0
    return levelled


def ink_bounds(ink: np.ndarray, trim: float = 0.002) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) holding all but ``trim`` of the ink mass on each side.

    Working on ink mass rather than any-pixel-above-zero keeps a few stray
    specks from stretching the box across the whole picture.
    """
    def span(profile: np.ndarray) -> tuple[int, int]:
        cumulative = np.cumsum(profile) / profile.sum()
        return int(np.searchsorted(cumulative, trim)), int(np.searchsorted(cumulative, 1 - trim)) + 1
    top, bottom = span(ink.sum(axis=1))
    left, right = span(ink.sum(axis=0))
    return top, bottom, left, right


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    if ink.sum() == 0:
        raise NoDigitFound("no digit found (no ink after background levelling)")
    top, bottom, left, right = ink_bounds(ink)
    return ink[top:bottom, left:right]


def fit_box(ink: np.ndarray, box: int = BOX) -> np.ndarray:
    """Scale so the longest side is ``box`` pixels, aspect kept, with antialiasing."""
    h, w = ink.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(ink, mode="F").resize(size, Image.LANCZOS), dtype=np.float32).clip(0, 1)


def strengthen_faint(ink: np.ndarray) -> np.ndarray:
    """Brighten strokes fainter than nearly all MNIST digits', so their median pixel is ``FAINT_STROKE``.

    A thin pen's line, shrunk into the 20x20 box, becomes a grey hairline (median
    stroke pixel 0.3-0.5) that models trained on MNIST's solid strokes misread;
    MNIST-like strokes (median 0.54 or more) are left exactly as they are.
    """
    stroke = ink[ink > 0.05]
    median = float(np.median(stroke)) if stroke.size else FAINT_STROKE
    return ink if median >= FAINT_STROKE else np.clip(ink * (FAINT_STROKE / median), 0, 1)


def center_of_mass_canvas(ink: np.ndarray, canvas: int = CANVAS) -> np.ndarray:
    """Paste into canvas x canvas so the ink's centre of mass lands on the centre, as MNIST did."""
    h, w = ink.shape
    total = ink.sum()
    rows, cols = np.arange(h), np.arange(w)
    com_r = (ink.sum(axis=1) @ rows) / total if total else (h - 1) / 2
    com_c = (ink.sum(axis=0) @ cols) / total if total else (w - 1) / 2
    top = int(np.clip(round(canvas / 2 - 0.5 - com_r), 0, canvas - h))
    left = int(np.clip(round(canvas / 2 - 0.5 - com_c), 0, canvas - w))
    out = np.zeros((canvas, canvas), dtype=np.float32)
    out[top:top + h, left:left + w] = ink
    return out


def mnist_like(image: Image.Image) -> np.ndarray:
    """The whole pipeline: a PIL image in, uint8 [28,28] white-on-black MNIST-style pixels out."""
    ink = level_background(ink_polarity(shrink(to_gray(exif_upright(image)))))
    digit = center_of_mass_canvas(strengthen_faint(fit_box(crop_to_ink(ink))))
    return np.rint(digit * 255).astype(np.uint8)


def naive(image: Image.Image) -> np.ndarray:
    """The tutorial's preprocessing, for comparison: grey, squash to 28x28, invert.

    Returns float32 [28,28] in [0,1] exactly as the tutorial feeds its model
    (``1 - x/255``); it ignores EXIF, margins, centring and polarity.
    """
    small = np.asarray(image.convert("L").resize((CANVAS, CANVAS), Image.LANCZOS), dtype=np.float32)
    return 1.0 - small / 255.0
