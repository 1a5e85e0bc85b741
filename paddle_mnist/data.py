"""``MnistDataset`` (a ``paddle.io.Dataset``) and the ``data`` command: ``prepare`` and ``show``.

The tutorial's contract holds: ``MnistDataset(mode)[i]`` is ``(float32
[1,28,28], label [1])`` with the file's own pixel values.  For fast training
loops, ``.images`` / ``.labels`` give the whole split as two arrays.
"""
from __future__ import annotations

import argparse
import functools
import gzip
import sys
from pathlib import Path

import numpy as np
import paddle

from paddle_mnist import idx, splits, tutorial_json
from paddle_mnist.errors import DataError, cli_entry
from paddle_mnist.fileio import write_bytes_atomic

MODES = {"train": "train", "valid": "valid", "eval": "eval", "test": "eval"}
LABEL_DTYPES = ("int64", "float32")


class MnistDataset(paddle.io.Dataset):
    """One split of MNIST or Fashion-MNIST.

    ``label_dtype="float32"`` serves a regression loss (the tutorial's MSE);
    ``transform`` maps a float32 [1,28,28] image to another (augmentation);
    ``limit`` keeps only the first N items, for quick runs.
    """

    def __init__(self, mode: str = "train", path: str | Path | None = None, *,
                 dataset: str = "mnist", label_dtype: str = "int64", transform=None, limit: int | None = None):
        super().__init__()
        if mode not in MODES:
            raise DataError(f"unknown mode {mode!r}: choose train, valid, eval (or test)")
        if label_dtype not in LABEL_DTYPES:
            raise DataError(f"unknown label dtype {label_dtype!r}: choose {' or '.join(LABEL_DTYPES)}")
        data = splits.load(path, dataset)
        split = data.splits[MODES[mode]]
        self.mode, self.label_dtype, self.transform = MODES[mode], label_dtype, transform
        self.pixels, self.targets = split.pixels[:limit], split.labels[:limit]
        self.encoding, self.classes, self.source = data.encoding, data.classes, data.source

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        image = self.encoding.decode(self.pixels[i]).reshape(1, 28, 28)
        if self.transform is not None:
            image = self.transform(image)
        return image, np.array([self.targets[i]], dtype=self.label_dtype)

    @functools.cached_property
    def images(self) -> np.ndarray:
        """The whole split as float32 [N,1,28,28], decoded once."""
        return self.encoding.decode(self.pixels).reshape(-1, 1, 28, 28)

    @property
    def labels(self) -> np.ndarray:
        """The whole split's labels as [N,1] in ``label_dtype``."""
        return self.targets.astype(self.label_dtype).reshape(-1, 1)


def prepare(idx_dir: Path, out: Path) -> dict[str, int]:
    """Write the tutorial's gzip-JSON from an IDX directory, with the tutorial's split."""
    if idx.missing_files(idx_dir):
        raise DataError(f"{idx_dir}: missing IDX files: {', '.join(idx.missing_files(idx_dir))}")
    arrays, encoding = splits.from_idx(idx_dir)
    pixels = [arrays[f"{name}_pixels"] for name in splits.SPLITS]
    labels = [arrays[f"{name}_labels"] for name in splits.SPLITS]
    text = tutorial_json.dumps(pixels, labels, scale=encoding.scale)
    write_bytes_atomic(out, gzip.compress(text, compresslevel=6, mtime=0))
    return {name: len(p) for name, p in zip(splits.SPLITS, pixels)}


def show(dataset: MnistDataset, n: int, out: Path, columns: int = 6) -> None:
    """A grid of the first ``n`` images titled with their class names."""
    from paddle_mnist.plots import plt, save_figure

    n = min(n, len(dataset))
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.4, rows * 1.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(dataset.pixels[i], cmap="gray", vmin=0, vmax=255)
            ax.set_title(dataset.classes[dataset.targets[i]], fontsize=9)
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
    s.add_argument("--data", type=Path, default=None, help="data file or IDX directory (default: search, see README)")
    s.add_argument("--dataset", choices=sorted(splits.CLASSES), default="mnist", help="which data set (default: mnist)")
    s.add_argument("--mode", choices=sorted(MODES), default="train", help="split to draw from (default: train)")
    s.add_argument("--n", type=int, default=18, help="number of images (default: 18)")
    s.add_argument("--out", type=Path, default=Path("samples.png"), help="output image (default: samples.png)")
    return parser


@cli_entry("paddle-mnist data")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "prepare":
        sizes = prepare(args.idx, args.out)
        print(f"wrote {args.out}: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
    else:
        if args.n < 1:
            raise DataError(f"--n must be at least 1, got {args.n}")
        dataset = MnistDataset(args.mode, args.data, dataset=args.dataset)
        show(dataset, args.n, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
