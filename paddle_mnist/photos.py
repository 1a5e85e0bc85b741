"""Realistic pictures of digits, to measure the predictor on what people actually photograph.

    paddle-mnist photos --model-dir output --n 600 [--sets styles printed ...] [--errors misread.png]

``styles``: each MNIST eval digit enlarged and drawn in one of several photo
styles: dark ink on paper with wide off-centre margins, coloured ink on tinted
paper under uneven light, noisy JPEG, a phone JPEG stored sideways with an EXIF
rotation, a transparent PNG, and chalk (light on dark).  The other sets are
digits that are not MNIST's: ``printed`` (the label in the machine's TrueType
fonts, regular, bold, italic, serif), ``handwriting_font`` (handwriting-style
fonts; in both font sets half of the 7s are crossed, as in much of Europe),
``thick_marker`` and ``thin_pen`` (MNIST strokes widened or thinned),
``low_res_scan`` (a 14-pixel digit scanned up, blocky and blurred) and
``touching_frame`` (cropped with no margin).  The
command prints the accuracy of the default preprocessing against the
tutorial's ``--naive`` one per style and set, and the share of these real
digits the model refuses as "not a digit" (a refusal is not a right answer).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from paddle_mnist.errors import cli_entry
from paddle_mnist.rendering import FONTS, glyph, on_paper

STYLES = ("paper", "colour", "noisy_jpeg", "exif_rotated", "transparent_png", "chalk")
SETS = ("printed", "handwriting_font", "thick_marker", "thin_pen", "low_res_scan", "touching_frame")
EXIF_ORIENTATION = 0x0112
JPEG_MAGIC = b"\xff\xd8"


def _placed(digit: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """The digit's ink (0..1) enlarged into a large canvas at a random off-centre spot."""
    size = int(rng.integers(70, 180))
    canvas_w, canvas_h = int(rng.integers(size * 2, size * 4)), int(rng.integers(int(size * 1.5), size * 3))
    big = Image.fromarray(digit).resize((size, size), Image.BICUBIC)
    canvas = np.zeros((canvas_h, canvas_w), dtype=np.float32)
    top, left = int(rng.integers(0, canvas_h - size)), int(rng.integers(0, canvas_w - size))
    canvas[top : top + size, left : left + size] = np.asarray(big, dtype=np.float32) / 255
    return canvas, (canvas_h, canvas_w)


def render(digit: np.ndarray, style: str, rng: np.random.Generator) -> bytes:
    """One picture of a uint8 [28,28] MNIST digit as encoded file bytes (PNG or JPEG)."""
    ink, _ = _placed(digit, rng)
    out = io.BytesIO()
    if style == "paper":
        Image.fromarray(on_paper(ink, rng)).convert("L").save(out, "PNG")
    elif style == "colour":
        pen = (int(rng.integers(10, 40)), int(rng.integers(20, 60)), int(rng.integers(120, 200)))
        Image.fromarray(on_paper(ink, rng, paper=(245, 235, 200), pen=pen)).save(out, "PNG")
    elif style == "noisy_jpeg":
        rgb = on_paper(ink, rng).astype(np.float32) + rng.normal(0, 12, ink.shape + (1,))
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=int(rng.integers(40, 80)))
    elif style == "exif_rotated":
        stored = Image.fromarray(on_paper(ink, rng)).rotate(90, expand=True)  # sideways, as a phone stores it
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
        stored.save(out, "JPEG", quality=90, exif=exif)
    elif style == "transparent_png":
        alpha = (ink * 255).astype(np.uint8)
        rgba = np.dstack([np.full(ink.shape + (3,), 20, np.uint8), alpha])
        Image.fromarray(rgba, mode="RGBA").save(out, "PNG")
    elif style == "chalk":
        board = 40 + 15 * rng.random(ink.shape)
        gray = board * (1 - ink) + 230 * ink
        Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).save(out, "PNG")
    else:
        raise ValueError(f"unknown style {style!r}")
    return out.getvalue()


def font_ink(label: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The label drawn in one of the set's fonts at a random size and place; a 7 is crossed half the time."""
    canvas = glyph(str(label), kind, rng, largest=140)
    if label == 7 and rng.random() < 0.5:
        _cross(canvas)
    return np.asarray(canvas, np.float32) / 255


def _cross(canvas: Image.Image) -> None:
    """A bar through the stem of a drawn 7 at mid-height, half the digit wide, as thick as the 7's top bar."""
    ink = np.asarray(canvas) > 127
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    middle = (rows[0] + rows[-1]) // 2
    stem = np.flatnonzero(ink[middle])
    if not len(stem):
        return
    top = ink[rows[0] :, (cols[0] + cols[-1]) // 2]  # down the middle column: the top bar's run of ink
    thickness = int(np.argmin(top)) if top[0] else 0
    centre, half = stem.mean(), (cols[-1] - cols[0]) / 4
    ImageDraw.Draw(canvas).line([(centre - half, middle), (centre + half, middle)], fill=255, width=max(2, thickness))


def set_ink(digit: np.ndarray, label: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A digit that is not MNIST's, as an ink map (0..1) on its own canvas."""
    big = Image.fromarray(digit).resize((112, 112), Image.BICUBIC)
    if kind in FONTS:
        return font_ink(label, kind, rng)
    if kind == "thick_marker":
        return np.pad(np.asarray(big.filter(ImageFilter.MaxFilter(9)), np.float32) / 255, 40)
    if kind == "thin_pen":
        return np.pad(np.asarray(big.filter(ImageFilter.MinFilter(5)), np.float32) / 255, 40)
    if kind == "low_res_scan":
        small = Image.fromarray(digit).resize((14, 14), Image.BOX).resize((140, 140), Image.NEAREST)
        return np.pad(np.asarray(small.filter(ImageFilter.GaussianBlur(2)), np.float32) / 255, 30)
    if kind == "touching_frame":
        ink = np.asarray(big, np.float32) / 255
        rows, cols = np.flatnonzero(ink.max(axis=1) > 0.3), np.flatnonzero(ink.max(axis=0) > 0.3)
        return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    raise ValueError(f"unknown set {kind!r}")


def render_set(digit: np.ndarray, label: int, kind: str, rng: np.random.Generator) -> bytes:
    """One picture of a non-MNIST digit: dark ink on paper, PNG (a JPEG for the scan)."""
    out = io.BytesIO()
    picture = Image.fromarray(on_paper(set_ink(digit, label, kind, rng), rng)).convert("L")
    picture.save(out, "JPEG", quality=70) if kind == "low_res_scan" else picture.save(out, "PNG")
    return out.getvalue()


def write_set(
    digits: np.ndarray, labels: np.ndarray, out: Path, seed: int = 0, kinds: tuple[str, ...] = STYLES
) -> list[tuple[Path, int, str]]:
    """Render ``digits`` cycling through ``kinds`` (photo styles and sets); returns (file, label, kind) rows."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (digit, label) in enumerate(zip(digits, labels)):
        style = kinds[i % len(kinds)]
        data = render(digit, style, rng) if style in STYLES else render_set(digit, int(label), style, rng)
        suffix = "jpg" if data.startswith(JPEG_MAGIC) else "png"
        path = out / f"{i:04d}_{style}_{label}.{suffix}"
        path.write_bytes(data)
        rows.append((path, int(label), style))
    return rows


def accuracy_by_style(predictor, rows, naive: bool, misread: list | None = None) -> dict[str, float]:
    """Accuracy per style or set and overall (a digit refused as "not a digit" is not read right);
    ``misread`` collects (file, label, prediction) of the errors."""
    return accuracy(rows, read_all(predictor, rows, naive, misread))


def read_all(predictor, rows, naive: bool, misread: list | None = None) -> list:
    """The predictions of the pictures ``rows``; ``misread`` collects (file, label, prediction) of the errors."""
    results = predictor.predict([str(path) for path, _, _ in rows], naive=naive)
    for (path, label, _), result in zip(rows, results):
        if misread is not None and result.digit != label:
            misread.append((path, label, result.digit))
    return results


def accuracy(rows, results) -> dict[str, float]:
    return _by_style(rows, [result.digit == label for (_, label, _), result in zip(rows, results)])


def refused(rows, results) -> dict[str, float]:
    """The share of the digits refused as "not a digit", per style or set and overall."""
    return _by_style(rows, [result.reason is not None for result in results])


def _by_style(rows, hits: list[bool]) -> dict[str, float]:
    by_style: dict[str, list[bool]] = {}
    for (_, _, style), hit in zip(rows, hits):
        by_style.setdefault(style, []).append(hit)
    return {style: float(np.mean(h)) for style, h in by_style.items()} | {"all": float(np.mean(hits))}


@cli_entry("paddle-mnist photos")
def main(argv=None) -> int:
    from paddle_mnist import plots
    from paddle_mnist.data import MnistDataset
    from paddle_mnist.predict import add_model_flags, from_flags

    parser = argparse.ArgumentParser(prog="paddle-mnist photos", description=__doc__.splitlines()[0])
    add_model_flags(parser, committee=True)
    parser.add_argument(
        "--sets",
        nargs="+",
        choices=("styles",) + SETS,
        default=["styles"],
        help=f"which pictures: styles (the six photo styles) and/or {', '.join(SETS)} (default: styles)",
    )
    parser.add_argument(
        "--errors", type=Path, default=None, help="draw the misread pictures into this PNG (default: none)"
    )
    parser.add_argument("--data", default=None, help="data file or IDX directory (default: the search of docs/data.md)")
    parser.add_argument("--n", type=int, default=600, help="pictures, from the first N eval digits (default: 600)")
    parser.add_argument("--seed", type=int, default=0, help="seed for sizes, places and noise (default: 0)")
    parser.add_argument("--out", type=Path, default=None, help="keep the pictures here (default: a temp dir)")
    args = parser.parse_args(argv)
    evaluation = MnistDataset("eval", args.data)
    predictor = from_flags(args, "paddle-mnist photos")
    kinds = tuple(dict.fromkeys(k for s in args.sets for k in (STYLES if s == "styles" else (s,))))
    misread = []
    with tempfile.TemporaryDirectory() as tmp:
        rows = write_set(
            evaluation.pixels[: args.n], evaluation.class_ids[: args.n], args.out or Path(tmp), args.seed, kinds
        )
        results = read_all(predictor, rows, naive=False, misread=misread)
        report = {
            "images": len(rows),
            "default": accuracy(rows, results),
            "naive": accuracy_by_style(predictor, rows, naive=True),
            "refused": refused(rows, results),  # as not a digit, with the default preprocessing
        }
        if args.errors:
            pictures = [(Image.open(path).convert("L"), label, digit) for path, label, digit in misread]
            plots.misread_grid(pictures, args.errors)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
