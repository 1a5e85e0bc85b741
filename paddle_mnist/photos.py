"""Realistic pictures of MNIST test digits, to measure the predictor on what people actually photograph.

    python -m paddle_mnist.photos --model-dir output --n 600 [--out photos/]

Each MNIST eval digit is enlarged and drawn in one of several styles: dark ink
on paper with wide off-centre margins, coloured ink on tinted paper under
uneven light, noisy JPEG, a phone JPEG stored sideways with an EXIF rotation,
a transparent PNG, and chalk (light on dark).  The command prints the accuracy
of the default preprocessing against the tutorial's ``--naive`` one per style.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from paddle_mnist.errors import cli_entry

STYLES = ("paper", "colour", "noisy_jpeg", "exif_rotated", "transparent_png", "chalk")
EXIF_ORIENTATION = 0x0112
JPEG_MAGIC = b"\xff\xd8"


def _placed(digit: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """The digit's ink (0..1) enlarged into a large canvas at a random off-centre spot."""
    size = int(rng.integers(70, 180))
    canvas_w, canvas_h = int(rng.integers(size * 2, size * 4)), int(rng.integers(int(size * 1.5), size * 3))
    big = Image.fromarray(digit).resize((size, size), Image.BICUBIC)
    canvas = np.zeros((canvas_h, canvas_w), dtype=np.float32)
    top, left = int(rng.integers(0, canvas_h - size)), int(rng.integers(0, canvas_w - size))
    canvas[top:top + size, left:left + size] = np.asarray(big, dtype=np.float32) / 255
    return canvas, (canvas_h, canvas_w)


def _on_paper(ink: np.ndarray, rng, paper=(235, 232, 225), pen=(25, 25, 30)) -> np.ndarray:
    """RGB uint8: pen colour where the ink is, paper elsewhere, with a soft light gradient."""
    h, w = ink.shape
    light = 1 - 0.15 * np.linspace(0, 1, w)[None, :] * rng.uniform(0.3, 1.0)
    paper_rgb = np.array(paper, np.float32)[None, None] * light[..., None]
    pen_rgb = np.array(pen, np.float32)[None, None]
    rgb = paper_rgb * (1 - ink[..., None]) + pen_rgb * ink[..., None]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def render(digit: np.ndarray, style: str, rng: np.random.Generator) -> bytes:
    """One picture of a uint8 [28,28] MNIST digit as encoded file bytes (PNG or JPEG)."""
    ink, _ = _placed(digit, rng)
    out = io.BytesIO()
    if style == "paper":
        Image.fromarray(_on_paper(ink, rng)).convert("L").save(out, "PNG")
    elif style == "colour":
        pen = (int(rng.integers(10, 40)), int(rng.integers(20, 60)), int(rng.integers(120, 200)))
        Image.fromarray(_on_paper(ink, rng, paper=(245, 235, 200), pen=pen)).save(out, "PNG")
    elif style == "noisy_jpeg":
        rgb = _on_paper(ink, rng).astype(np.float32) + rng.normal(0, 12, ink.shape + (1,))
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=int(rng.integers(40, 80)))
    elif style == "exif_rotated":
        stored = Image.fromarray(_on_paper(ink, rng)).rotate(90, expand=True)  # sideways, as a phone stores it
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


def write_set(digits: np.ndarray, labels: np.ndarray, out: Path, seed: int = 0) -> list[tuple[Path, int, str]]:
    """Render ``digits`` cycling through the styles; returns (file, label, style) rows."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (digit, label) in enumerate(zip(digits, labels)):
        style = STYLES[i % len(STYLES)]
        data = render(digit, style, rng)
        suffix = "jpg" if data.startswith(JPEG_MAGIC) else "png"
        path = out / f"{i:04d}_{style}_{label}.{suffix}"
        path.write_bytes(data)
        rows.append((path, int(label), style))
    return rows


def accuracy_by_style(predictor, rows, naive: bool) -> dict[str, float]:
    results = predictor.predict([str(path) for path, _, _ in rows], naive=naive)
    by_style: dict[str, list[bool]] = {}
    for (_, label, style), result in zip(rows, results):
        by_style.setdefault(style, []).append(result.digit == label)
    table = {style: float(np.mean(hits)) for style, hits in by_style.items()}
    table["all"] = float(np.mean([result.digit == label for (_, label, _), result in zip(rows, results)]))
    return table


@cli_entry("paddle-mnist photos")
def main(argv=None) -> int:
    from paddle_mnist.data import MnistDataset
    from paddle_mnist.predict import Predictor

    parser = argparse.ArgumentParser(prog="paddle-mnist photos", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="output", help="trained model to measure (default: output)")
    parser.add_argument("--data", default=None, help="data file or IDX directory (default: the README's search)")
    parser.add_argument("--n", type=int, default=600, help="pictures, from the first N eval digits (default: 600)")
    parser.add_argument("--seed", type=int, default=0, help="seed for sizes, places and noise (default: 0)")
    parser.add_argument("--out", type=Path, default=None, help="keep the pictures here (default: a temp dir)")
    args = parser.parse_args(argv)
    evaluation = MnistDataset("eval", args.data)
    predictor = Predictor.from_dir(args.model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        rows = write_set(evaluation.pixels[:args.n], evaluation.class_ids[:args.n], args.out or Path(tmp), args.seed)
        report = {"images": len(rows), "default": accuracy_by_style(predictor, rows, naive=False),
                  "naive": accuracy_by_style(predictor, rows, naive=True)}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
