"""The ``data`` command: ``prepare`` the tutorial's file from IDX, or ``show`` a labelled grid."""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

from paddle_mnist.cli import positive_int
from paddle_mnist.data import idx, splits, tutorial_json
from paddle_mnist.data.dataset import MODES, MnistDataset
from paddle_mnist.data.encoding import TUTORIAL_ENCODING
from paddle_mnist.errors import DataError, cli_entry
from paddle_mnist.fileio import write_bytes_atomic


def prepare(idx_dir: Path, out: Path) -> dict[str, int]:
    """Write the tutorial's gzip-JSON from an IDX directory, with the tutorial's split."""
    if idx.missing_files(idx_dir):
        raise DataError(f"{idx_dir}: missing IDX files: {', '.join(idx.missing_files(idx_dir))}")
    arrays = splits.from_idx(idx_dir)
    pixels = [arrays[f"{name}_pixels"] for name in splits.SPLITS]
    class_ids = [arrays[f"{name}_class_ids"] for name in splits.SPLITS]
    text = tutorial_json.dumps(pixels, class_ids, scale=TUTORIAL_ENCODING.scale)
    write_bytes_atomic(out, gzip.compress(text, compresslevel=6, mtime=0))
    return {name: len(p) for name, p in zip(splits.SPLITS, pixels)}


def show(dataset: MnistDataset, n: int, out: Path, columns: int = 6) -> None:
    """A grid of the first ``n`` images titled with their class names."""
    from paddle_mnist.plots import save_figure, subplots

    n = min(n, len(dataset))
    rows = max(1, -(-n // columns))
    fig, axes = subplots(rows, columns, figsize=(columns * 1.4, rows * 1.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(dataset.pixels[i], cmap="gray", vmin=0, vmax=255)
            ax.set_title(dataset.classes[dataset.class_ids[i]], fontsize=9)
    fig.suptitle(f"{dataset.source.name}: {dataset.mode}, first {n}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paddle-mnist data", description="Prepare and inspect the MNIST data.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="convert the four official IDX files into the tutorial's mnist.json.gz")
    p.add_argument("--idx", type=Path, required=True, help="directory holding the four IDX files (.gz or raw)")
    p.add_argument("--out", type=Path, default=Path("mnist.json.gz"), help="output file (default: mnist.json.gz)")
    s = sub.add_parser("show", help="draw a grid of images with their labels into a PNG")
    s.add_argument(
        "--data", type=Path, default=None, help="data file or IDX directory (default: the search of docs/data.md)"
    )
    s.add_argument("--dataset", choices=sorted(splits.CLASSES), default="mnist", help="which data set (default: mnist)")
    s.add_argument("--mode", choices=sorted(MODES), default="train", help="split to draw from (default: train)")
    s.add_argument("--n", type=positive_int, default=18, help="number of images (default: 18)")
    s.add_argument("--out", type=Path, default=Path("samples.png"), help="output image (default: samples.png)")
    return parser


@cli_entry("paddle-mnist data")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "prepare":
        sizes = prepare(args.idx, args.out)
        print(f"wrote {args.out}: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
    else:
        dataset = MnistDataset(args.mode, args.data, dataset=args.dataset)
        show(dataset, args.n, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
