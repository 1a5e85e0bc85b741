"""Each preprocessing step on its own, and the bad-file errors of open_image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from paddle_mnist import preprocess, thickness
from paddle_mnist.preprocess import ImageError, NoDigitFound

from fixtures import run_python


def stroke_image(h=120, w=200, box=(30, 60, 40, 120), ink=20, paper=230) -> np.ndarray:
    """Grey paper with a dark rectangle 'stroke' (top, left, height, width)."""
    image = np.full((h, w), paper, np.uint8)
    top, left, hh, ww = box
    image[top : top + hh, left : left + ww] = ink
    return image


def test_exif_rotation_is_applied():
    upright = Image.fromarray(stroke_image())
    stored = upright.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", exif=exif)
    restored = preprocess.exif_upright(Image.open(buffer))
    assert restored.size == upright.size
    difference = np.abs(np.asarray(restored.convert("L"), int) - np.asarray(upright, int))
    assert difference.mean() < 2 and difference.max() < 60, "the pixels are the upright picture's (JPEG-exact)"
    decoded = preprocess.decode(io.BytesIO(buffer.getvalue()), "x")  # the decoder turns it upright too
    assert np.abs(np.asarray(decoded.convert("L"), int) - np.asarray(upright, int)).mean() < 2


@pytest.mark.parametrize("mode", ["RGB", "P", "1", "I;16", "LA"])
def test_modes_become_gray_in_unit_range(mode):
    base = Image.fromarray(stroke_image())
    image = base.convert("RGB").convert("P") if mode == "P" else base.convert(mode)
    if mode == "I;16":
        image = Image.fromarray(stroke_image().astype(np.uint16) * 257)
    gray = preprocess.to_gray(image)
    assert gray.shape == (120, 200) and gray.dtype == np.float32
    assert gray[0, 0] >= 0.75 and gray[50, 80] < 0.2  # the web palette turns paper grey 230 into 204


def test_transparent_png_is_composited_over_white():
    rgba = np.zeros((50, 50, 4), np.uint8)
    rgba[20:30, 20:30] = (10, 10, 10, 255)
    gray = preprocess.to_gray(Image.fromarray(rgba, "RGBA"))
    assert gray[0, 0] == 1.0 and gray[25, 25] < 0.1


def test_polarity_makes_ink_bright_either_way():
    dark_on_light = stroke_image() / 255.0
    light_on_dark = 1 - dark_on_light
    for picture in (dark_on_light, light_on_dark):
        ink = preprocess.ink_polarity(picture.astype(np.float32))
        assert ink[0, 0] < 0.2 and ink[50, 80] > 0.8


def test_levelling_removes_background_and_faint_noise():
    rng = np.random.default_rng(0)
    ink = 0.3 + 0.05 * rng.random((100, 100)).astype(np.float32)
    ink[40:60, 45:55] = 0.9
    levelled = preprocess.level_background(ink)
    assert levelled[0:30].max() == 0 and levelled[50, 50] == pytest.approx(1, abs=0.1)


def test_blank_image_is_no_digit():
    rng = np.random.default_rng(0)
    with pytest.raises(NoDigitFound, match="no digit found"):
        preprocess.level_background(0.5 + 0.02 * rng.random((64, 64)).astype(np.float32))


def test_small_digit_on_a_big_page_is_found():
    page = np.zeros((500, 500), np.float32)
    page[300:330, 100:104] = 1.0  # 0.05 % of the page
    assert preprocess.level_background(page).max() == 1.0


def test_a_thick_digit_cropped_tight_is_found():
    """A marker-thick 0 covering 70 % of the picture but little of its edge: the paper is the edge's level."""
    rows, cols = np.mgrid[:80, :50]
    radius = np.hypot((rows - 39.5) / 40, (cols - 24.5) / 25)
    ink = np.where((radius > 0.3) & (radius < 1.0), 0.9, 0.1).astype(np.float32)
    assert (ink > 0.5).mean() > 0.6 and np.median(preprocess.border(ink)) == pytest.approx(0.1)
    digit = preprocess.mnist_like(Image.fromarray(np.uint8(255 * (1 - ink))))
    # ink, hole (paper but for a trace of resampling: the ring is thinned first), ink
    assert digit[14, 14] < 5 and digit[14, :14].max() > 200 and digit[14, 15:].max() > 200


def test_crop_ignores_stray_specks():
    ink = np.zeros((200, 200), np.float32)
    ink[50:150, 80:120] = 1.0
    ink[5, 195] = 1.0
    crop = preprocess.crop_to_ink(ink)
    assert crop.shape == (100, 40)


def test_fit_box_keeps_aspect_and_centre_of_mass_is_centred():
    tall = np.ones((100, 40), np.float32)
    fitted = preprocess.fit_box(tall)
    assert fitted.shape == (20, 8)
    canvas = preprocess.center_of_mass_canvas(fitted)
    rows, cols = np.nonzero(canvas)
    assert canvas.shape == (28, 28)
    com = np.array([(canvas.sum(1) @ np.arange(28)), (canvas.sum(0) @ np.arange(28))]) / canvas.sum()
    np.testing.assert_allclose(com, [13.5, 13.5], atol=0.6)


def test_a_thin_pen_line_is_brightened_to_mnist_strength_and_solid_strokes_are_not():
    """A 2 px ring in a 200 px picture shrinks to a grey hairline; the predictor's input gets MNIST-strong strokes."""
    rows, cols = np.mgrid[:200, :200]
    radius = np.hypot(rows - 99.5, cols - 99.5)
    ring = np.where(np.abs(radius - 80) < 1, 20, 230).astype(np.uint8)
    hairline = preprocess.fit_box(preprocess.crop_to_ink(preprocess.level_background(1 - ring / np.float32(255))))
    assert np.median(hairline[hairline > 0.05]) < 0.4
    digit = preprocess.mnist_like(Image.fromarray(ring)) / np.float32(255)
    assert np.median(digit[digit > 0.05]) == pytest.approx(preprocess.FAINT_STROKE, abs=0.01)
    solid = preprocess.fit_box(np.ones((100, 40), np.float32))
    assert preprocess.strengthen_faint(solid) is solid


def test_a_marker_thick_digit_is_thinned_so_its_loops_stay_open_and_mnist_strokes_are_untouched():
    """An 8 drawn with a marker (two rings, holes a tenth of their width): fitted into the box as it is, the
    holes fill with the ink around them; thinned first, they stay paper."""
    rows, cols = np.mgrid[:260, :160]
    eight = np.zeros((260, 160), np.float32)
    for centre in (70, 190):
        radius = np.hypot(rows - centre, cols - 79.5)
        eight[(radius < 66) & (radius > 7)] = 1.0
    side = thickness.SIZE * preprocess.BOX
    assert thickness.stroke_width(preprocess.fit_box(eight, side)) / thickness.SIZE > thickness.THICK
    thin = preprocess.thinned(eight)
    assert (
        max(thin.shape) < side
        and thickness.stroke_width(preprocess.fit_box(thin, side)) / thickness.SIZE < thickness.THICK
    )
    as_is = preprocess.center_of_mass_canvas(preprocess.fit_box(eight))
    digit = preprocess.mnist_like(Image.fromarray(np.uint8(230 - 210 * eight))) / np.float32(255)
    column = digit[:, 14]
    inked = np.flatnonzero(column > 0.5)
    holes = [r for r in range(inked[0], inked[-1]) if column[r] < 0.1]
    assert len(holes) >= 2 and min(as_is[r, 14] for r in holes) > 0.4  # paper thinned, half ink as it is
    bar = np.zeros((100, 60), np.float32)
    bar[:, 20:35] = 1.0  # 3 box pixels wide: an MNIST stroke
    assert preprocess.thinned(bar) is bar


def test_pipeline_output_is_mnist_like():
    pixels = preprocess.mnist_like(Image.fromarray(stroke_image()))
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
    assert pixels[0].max() == 0 and pixels.max() == 255
    rows, cols = np.nonzero(pixels)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 <= 21


def test_naive_is_the_tutorials():
    image = Image.fromarray(stroke_image())
    expected = 1 - np.asarray(image.convert("L").resize((28, 28), Image.LANCZOS), np.float32) / 255
    np.testing.assert_array_equal(preprocess.naive(image), expected)


def test_bad_files(tmp_path):
    with pytest.raises(ImageError, match="nope.png: no such file"):
        preprocess.open_image(tmp_path / "nope.png")
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(ImageError, match=r"notes.png: not an image"):
        preprocess.open_image(tmp_path / "notes.png")
    buffer = io.BytesIO()
    Image.fromarray(stroke_image(400, 400)).save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut.jpg: unreadable image \(image file is truncated"):
        preprocess.open_image(tmp_path / "cut.jpg")
    Image.new("1", (10_000, 5_000)).save(tmp_path / "huge.png")
    with pytest.raises(ImageError, match=r"huge.png: 10000x5000 pixels is over the 40,000,000-pixel limit"):
        preprocess.open_image(tmp_path / "huge.png")


def big_page(mode: str, size=(3000, 2000)) -> Image.Image:
    """A digit-like stroke drawn big on a page, in ``mode``."""
    from PIL import ImageDraw

    page = Image.new("L", size, 235)
    ImageDraw.Draw(page).line([(1200, 300), (1800, 300), (1400, 1700)], fill=25, width=120)
    if mode == "I;16":
        return Image.fromarray(np.asarray(page).astype(np.uint16) * 257)
    return page.convert(mode)


def test_a_jpeg_of_too_many_scans_and_a_png_of_too_much_text_are_refused_unread(tmp_path):
    """Each scan of a progressive JPEG is a pass over the whole picture, and a PNG's text is read with its
    header: both are bounded before any pixel is decoded, each with one line."""
    buffer = io.BytesIO()
    big_page("L").save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    scan = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)  # the second scan: an AC one
    end = data.index(b"\xff\xda", scan + 2)
    (tmp_path / "scans.jpg").write_bytes(data[:end] + data[scan:end] * (preprocess.MAX_JPEG_SCANS + 1) + data[end:])
    with pytest.raises(ImageError, match=r"scans.jpg: a JPEG of 1\d\d scans; pictures are saved with at most"):
        preprocess.open_image(tmp_path / "scans.jpg")
    info = PngImagePlugin.PngInfo()
    for i in range(64):
        info.add_itxt(f"k{i}", "\U0001f600" * (preprocess.MAX_PNG_TEXT // 32))
    big_page("L", (60, 40)).save(tmp_path / "text.png", pnginfo=info)
    with pytest.raises(ImageError, match=r"text.png: unreadable image \(Too much memory used in text chunks"):
        preprocess.open_image(tmp_path / "text.png")


@pytest.mark.parametrize("mode, orientation", [("L", 1), ("RGB", 6), ("RGBA", 3), ("P", 8), ("1", 1), ("I;16", 1)])
def test_a_big_picture_reduced_on_load_reads_as_the_full_decode_does(mode, orientation):
    """``decode`` box-reduces big pictures right after loading and turns them upright; the model input is
    within a few grey levels of preprocessing the full-size picture turned by ImageOps."""
    from PIL import ImageOps

    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    big_page(mode).save(buffer, "PNG" if mode != "1" else "TIFF", exif=exif)
    data = buffer.getvalue()
    reduced = preprocess.decode(preprocess.image_header(data), "x")
    assert max(reduced.size) < 1024 and reduced.getexif().get(0x0112) is None
    full = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert reduced.size == (-(-full.width // (max(full.size) // 512)), -(-full.height // (max(full.size) // 512)))
    difference = np.abs(preprocess.mnist_like(reduced).astype(int) - preprocess.mnist_like(full).astype(int))
    assert difference.max() <= 12 and difference.mean() < 1, (difference.max(), difference.mean())


MEASURE_DECODE = """
import io, sys
from PIL import Image
from paddle_mnist import preprocess
data = open(sys.argv[1], "rb").read()
warm = io.BytesIO(); Image.new("L", (2000, 2000), 255).save(warm, "PNG")
preprocess.decode(preprocess.image_header(warm.getvalue()), "warm")  # the first decode's one-off allocations
def kb(field):
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0])
header = preprocess.image_header(data)
cost = preprocess.decode_cost(header)  # as the server charges it: before decoding
open("/proc/self/clear_refs", "w").write("5")
before = kb("VmRSS")
try:
    preprocess.mnist_like(preprocess.decode(header, "x"))
except preprocess.NoDigitFound:
    pass
print(cost, (kb("VmHWM") - before) * 1024)
"""


@pytest.mark.parametrize(
    "mode, kind",
    [
        ("L", "PNG"),
        ("RGB", "PNG"),
        ("RGBA", "PNG"),
        ("P", "GIF"),
        ("1", "PNG"),
        ("I;16", "PNG"),
        ("RGB", "WEBP"),
        ("RGB", "TIFF"),
        ("L", "progressive JPEG"),
        ("RGB", "progressive JPEG"),
        ("I;16", "one-strip deflate TIFF"),
    ],
)
def test_decode_cost_is_what_decoding_takes(tmp_path, mode, kind):
    """The cost known from the header is at least the decode's real peak (RSS, in a fresh process), and
    not far over it: the server's budgets charge exactly this, decoders' own buffers included."""
    options = {
        "progressive JPEG": ("JPEG", {"progressive": True, "subsampling": 0}),
        "one-strip deflate TIFF": ("TIFF", {"compression": "tiff_adobe_deflate", "strip_size": 1 << 40}),
    }
    kind, save_options = options.get(kind, (kind, {}))
    path = tmp_path / f"page.{kind.lower()}"
    big_page(mode, (6000, 4000) if save_options else (3000, 2000)).save(path, kind, **save_options)
    out = run_python("-c", MEASURE_DECODE, path, timeout=120)
    cost, peak = map(int, out.stdout.split())
    assert peak <= cost * 1.1 + (2 << 20) and cost <= 1.6 * peak + (4 << 20), (cost >> 20, peak >> 20)


def test_ink_aspects_measure_the_ink_box_and_no_eval_digit_is_too_flat_to_be_one(shared_eval):
    """``ink_aspects`` is the ink box's width over its height (faint pixels, up to 0.1, are no ink); the eval
    split's 10,000 digits are all within ``reading.MAX_ASPECT`` (its widest: 2.0)."""
    from paddle_mnist import reading

    boxes = np.zeros((3, 28, 28), np.uint8)
    boxes[0, 10:15, 4:24] = 200  # 20 wide, 5 high
    boxes[1, 4:24, 12:14] = 255
    boxes[1, 0, :] = 25  # faint: not ink
    np.testing.assert_allclose(preprocess.ink_aspects(boxes), [4.0, 0.1, 0.0])
    assert 1.9 < preprocess.ink_aspects(shared_eval.pixels).max() <= reading.MAX_ASPECT
