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
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageFilter, ImageOps, PngImagePlugin, UnidentifiedImageError

from paddle_mnist import thickness
from paddle_mnist.errors import UserError
from paddle_mnist.fileio import open_regular

MAX_PIXELS = 40_000_000  # decompression-bomb guard: 40 MP is far above any phone photo of a digit
WORK_SIZE = 512  # long side the analysis runs at; more only costs time
BOX, CANVAS = 20, 28
MIN_CONTRAST = 0.15  # ink darker than paper by less than this is "no digit"
# A progressive JPEG is decoded one scan at a time, each a pass over every coefficient of the picture: libjpeg
# writes 6 scans (grey) or 10 (colour), optimisers a few more; 1,000 scans of a 39-megapixel grey picture take 4.7 s.
MAX_JPEG_SCANS = 100
# The characters of all of a PNG's text chunks, which Pillow reads with the header, before any charge (its
# MAX_TEXT_MEMORY, 64 M by default, counts characters, each up to 4 bytes as a str: 16 crafted PNGs of 4.4 MB
# took a server to 4.2 GB).  64 K characters hold any metadata a drawing or a photo of a digit carries.
MAX_PNG_TEXT = 1 << 16
FAINT_STROKE = 0.55  # median stroke pixel of MNIST's faintest digits (1st percentile, 2,000 eval digits: 0.54)


class ImageError(UserError):
    pass


class NoDigitFound(UserError):
    pass


@contextlib.contextmanager
def decoding(source: str):
    """Within: any failure of a decoder or converter on one image's bytes becomes that image's one-line
    ``ImageError`` (Pillow raises ValueError, SyntaxError, struct.error... on odd files), and every
    one-line error names ``source`` first."""
    try:
        yield
    except UserError as e:
        if str(e).startswith(source):
            raise
        raise type(e)(f"{source}: {e}") from None
    except Exception as e:
        raise ImageError(f"{source}: cannot decode the image ({type(e).__name__}: {e})") from None


def open_image(path: Path) -> Image.Image:
    """Open and decode ``path``, with one-line errors for every way that can fail (a directory, a FIFO,
    a device or a socket is named as what it is)."""
    path = Path(path)
    try:
        file = open_regular(path, ImageError)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None
    with file:
        return decode(file, str(path))


def open_image_bytes(data: bytes, source: str = "upload") -> Image.Image:
    """The same as ``open_image`` for an image's bytes (an upload); ``source`` names it in errors."""
    return decode(image_header(data, source), source)


def image_header(data: bytes, source: str = "upload", formats: tuple[str, ...] | None = None) -> Image.Image:
    """``data`` opened but not decoded: its size and mode are known, so is ``decode_cost``.

    A JPEG is already set to decode at the scale the analysis needs (``draft``).
    ``formats`` restricts the decoders tried (the server accepts only common ones).
    """
    if not data:
        raise ImageError(f"{source}: empty (no image data)")
    return _opened(io.BytesIO(data), source, formats)


def decode(file, source: str) -> Image.Image:
    """Decode an image file (or an ``image_header``) straight to what the analysis needs.

    What stays is small whatever the file: a JPEG's DCT is decoded at 1/2, 1/4 or
    1/8 scale (``Image.draft``; a 12-megapixel phone photo decoded in full takes
    ~45 ms), any other image is reduced by an integer factor right after loading,
    both keeping at least ``WORK_SIZE`` on the long side, all ``shrink`` keeps
    anyway.  The EXIF orientation is applied to the small image.
    """
    image = file if isinstance(file, Image.Image) else _opened(file, source)
    with _pillow_errors(source):
        image.load()
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        small = upright(reduced(image), orientation)
    if small is not image:
        image.close()  # its full-size pixels go now, not whenever the last reference to the header does
    return small


def decode_cost(image: Image.Image) -> int:
    """Bytes that decoding ``image`` (an ``image_header``) and analysing it hold at the peak, known
    before decoding.

    Pillow stores a pixel in 1 byte ("1", "L", "P"), 2 ("I;16") or 4 (anything of
    more bands, "I", "F"); ``reduced`` holds a premultiplied copy of an image with
    alpha and a converted copy of a palette or 1-bit one; WebP's decoder builds the
    picture in buffers of its own.  Measured by peak RSS on 16-megapixel pictures of
    every mode (within 10 % of this, over it where not exact).
    """
    stored = 1 if image.mode in ("1", "L", "P") else 2 if image.mode.startswith("I;16") else 4
    per_pixel = stored * BUFFERED.get(image.format, 1) + CONVERTED_BYTES.get(image.mode, 0)
    if image.mode in ALPHA_MODES:
        per_pixel += stored
    return image.width * image.height * per_pixel + WORK_BYTES + held_besides_pixels(image)


def held_besides_pixels(image: Image.Image) -> int:
    """What a decoder holds beside the picture (measured by peak RSS at 39 megapixels, within 2 %):
    a progressive JPEG's DCT coefficients, 2 bytes each at full size whatever ``draft`` saves on the
    pixels (75 MB grey, 226 MB colour); a compressed TIFF's strip or tile, which libtiff decodes whole
    before Pillow copies it; the text a PNG's header has already read."""
    if image.format == "TIFF" and image.tile and image.tile[0][0] == "libtiff":
        tags = image.tag_v2
        rows = min(tags.get(323, tags.get(278, image.height)), image.height)  # TileLength, else RowsPerStrip
        width = min(tags.get(322, image.width), image.width)  # TileWidth
        bits = tags.get(258, (8,))
        return width * rows * sum(bits if isinstance(bits, tuple) else (bits,)) // 8
    if image.format == "PNG":
        return sum(sys.getsizeof(value) for value in image.info.values() if isinstance(value, (str, bytes)))
    return getattr(image, "coefficient_bytes", 0)


CONVERTED_BYTES = {"1": 1, "P": 4, "PA": 4}  # what ``reduced`` converts these to before reducing
ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
BUFFERED = {"WEBP": 4}  # libwebp's own whole-picture buffers
WORK_BYTES = 2 << 20  # the analysis at WORK_SIZE: a few 512x512 float32 maps


def _opened(file, source: str, formats: tuple[str, ...] | None = None) -> Image.Image:
    with _pillow_errors(source):
        # Pillow's bound is a module setting read as a PNG's chunks are: tightened here, where every image opens
        PngImagePlugin.MAX_TEXT_MEMORY = min(PngImagePlugin.MAX_TEXT_MEMORY, MAX_PNG_TEXT)
        PngImagePlugin.MAX_TEXT_CHUNK = min(PngImagePlugin.MAX_TEXT_CHUNK, 4 * MAX_PNG_TEXT)  # one chunk, inflated
        image = Image.open(file, formats=formats)
        if image.width * image.height > MAX_PIXELS:
            raise ImageError(f"{source}: {image.width}x{image.height} pixels is over the {MAX_PIXELS:,}-pixel limit")
        if image.format in ("JPEG", "MPO"):  # MPO: a multi-picture JPEG (some cameras write them)
            _check_scans(file, source)
            if image.info.get("progressive"):  # its coefficients are held at full size: counted before draft
                planes = sum(h * v for _, h, v, _ in image.layer) / max(h * v for _, h, v, _ in image.layer)
                image.coefficient_bytes = int(2 * planes * image.width * image.height)
            long_side = max(image.size)  # at least half of WORK_SIZE on the long side: digits stay ~100 px tall
            image.draft("L", (image.width * WORK_SIZE // 2 // long_side, image.height * WORK_SIZE // 2 // long_side))
    return image


def _check_scans(file, source: str) -> None:
    """Refuse a JPEG of more than ``MAX_JPEG_SCANS`` scans (start-of-scan markers: 0xFFDA never occurs inside
    entropy-coded data, where a 0xFF byte is always followed by 0x00 or a restart marker)."""
    start, scans, last = file.tell(), 0, b""
    file.seek(0)
    for block in iter(lambda: file.read(1 << 20), b""):
        scans += (last + block).count(b"\xff\xda")
        last = block[-1:]
    file.seek(start)
    if scans > MAX_JPEG_SCANS:
        raise ImageError(f"{source}: a JPEG of {scans:,} scans; pictures are saved with at most a few dozen")


@contextlib.contextmanager
def _pillow_errors(source: str):
    """Pillow's ways of failing on a bad file, as one-line ``ImageError``s."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except UnidentifiedImageError:
        raise ImageError(f"{source}: not an image (Pillow cannot identify it)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{source}: refused as a possible decompression bomb (too many pixels)") from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's decoders raise all three on broken files
        raise ImageError(f"{source}: unreadable image ({e})") from None


def reduced(image: Image.Image, size: int = WORK_SIZE) -> Image.Image:
    """``image`` box-averaged by the largest integer factor that keeps ``size`` on its long side.

    Run right after loading, so a 40-megapixel picture's colour compositing and
    float conversion work on a few hundred thousand pixels.  Palette and 1-bit
    images are converted first (Pillow would resize them by nearest neighbour).
    """
    factor = max(image.size) // size
    if factor < 2:
        return image
    if image.mode == "1":
        image = image.convert("L")
    elif image.mode in ("P", "PA"):
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    if image.mode.startswith("I;16"):  # Image.reduce has no 16-bit kernel; resize's box filter does
        return image.resize((-(-image.width // factor), -(-image.height // factor)), Image.BOX)
    return image.reduce(factor)


# EXIF orientation -> the transpose that shows the picture upright (the EXIF 2.3 table, as ImageOps uses).
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def upright(image: Image.Image, orientation: int) -> Image.Image:
    """``image`` turned as its EXIF ``orientation`` says, and marked as upright (no EXIF left to apply)."""
    if orientation in ORIENTATIONS:
        image = image.transpose(ORIENTATIONS[orientation])
    elif image.info.keys() & ORIENTATION_INFO:
        image = image.copy()  # the decoded file's own info is left alone
    image.info = {k: v for k, v in image.info.items() if k not in ORIENTATION_INFO}
    return image


ORIENTATION_INFO = {"exif", "xmp", "XML:com.adobe.xmp", "Raw profile type exif"}  # where Pillow looks for one


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
        if not np.isfinite(values).all():  # a float TIFF can hold them; read as ink they would hide the digit
            raise ImageError(f"holds {np.count_nonzero(~np.isfinite(values)):,} NaN or infinite pixel values")
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


def thinned(ink: np.ndarray) -> np.ndarray:
    """A digit's ink, cropped to it, with strokes far thicker than MNIST's thinned (``thickness``); else ``ink``."""
    work = fit_box(ink, thickness.SIZE * BOX)
    thin = thickness.thinned(work)
    return ink if thin is work else thin


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
    out[top : top + h, left : left + w] = ink
    return out


def ink_map(image: Image.Image) -> tuple[np.ndarray, float]:
    """The picture's ink, bright on 0 and at most ``WORK_SIZE`` on its long side (not yet levelled), and how
    many of the upright picture's pixels one pixel of the map spans."""
    gray = to_gray(exif_upright(image))
    small = shrink(gray)
    return ink_polarity(small), gray.shape[1] / small.shape[1]


def in_mnist_form(ink: np.ndarray) -> bool:
    """Whether ``ink`` is a digit as MNIST stores it, which the model reads best as it is: 28x28, its ink's
    longest side exactly the 20-pixel box (all of MNIST's are) and its centre of mass within a pixel of the
    centre.  Re-cropping and re-fitting such a digit cost 0.6 points of accuracy (issue 31)."""
    if ink.shape != (CANVAS, CANVAS) or not ink.any():
        return False
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 != BOX:
        return False
    total = ink.sum()
    centre = (CANVAS - 1) / 2
    return bool(
        abs(ink.sum(axis=1) @ np.arange(CANVAS) / total - centre) <= 1
        and abs(ink.sum(axis=0) @ np.arange(CANVAS) / total - centre) <= 1
    )


def ink_aspects(pixels: np.ndarray) -> np.ndarray:
    """[N] the width over the height of the ink's box (pixels over 0.1) in each of [N,28,28] uint8 digits."""
    inked = pixels > 25
    cols, rows = inked.any(axis=1), inked.any(axis=2)  # [N,28] each
    return _extent(cols) / np.maximum(_extent(rows), 1)


def _extent(inked: np.ndarray) -> np.ndarray:
    """[N] how many positions lie from the first inked one of each row of ``inked`` [N,M] to its last (0: none)."""
    first, last = inked.argmax(axis=1), inked.shape[1] - 1 - inked[:, ::-1].argmax(axis=1)
    return np.where(inked.any(axis=1), last - first + 1, 0)


def digit_pixels(ink: np.ndarray) -> np.ndarray:
    """One digit's levelled ink to uint8 [28,28] MNIST-style pixels: cropped, thick strokes thinned, fitted,
    centred."""
    digit = center_of_mass_canvas(strengthen_faint(fit_box(thinned(crop_to_ink(ink)))))
    return np.rint(digit * 255).astype(np.uint8)


def mnist_like(image: Image.Image) -> np.ndarray:
    """The whole pipeline for a picture of one digit: a PIL image in, uint8 [28,28] white-on-black
    MNIST-style pixels out (a digit already in that form as it is)."""
    ink, _ = ink_map(image)
    if in_mnist_form(ink):
        return np.rint(ink * 255).astype(np.uint8)
    return digit_pixels(level_background(ink))


def naive(image: Image.Image) -> np.ndarray:
    """The tutorial's preprocessing, for comparison: grey, squash to 28x28, invert.

    Returns float32 [28,28] in [0,1] exactly as the tutorial feeds its model
    (``1 - x/255``); it ignores EXIF, margins, centring and polarity.
    """
    small = np.asarray(image.convert("L").resize((CANVAS, CANVAS), Image.LANCZOS), dtype=np.float32)
    return 1.0 - small / 255.0
