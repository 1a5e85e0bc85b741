"""``MnistDataset``: one split as a ``paddle.io.Dataset``, with the tutorial's item contract.

``MnistDataset(mode)[i]`` is ``(float32 [1,28,28], label [1])`` with the file's
own pixel values.  For fast training loops, ``.images`` / ``.labels`` give the
whole split as two arrays; ``.pixels`` / ``.class_ids`` are the same data as
stored (uint8), for plots and accuracy counts.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import numpy as np

from paddle_mnist._paddle import paddle
from paddle_mnist.data import splits
from paddle_mnist.errors import DataError

# mode -> the splits it spans; "train+valid" is the 60,000 official training images that published results train on
MODES = {
    "train": ("train",),
    "valid": ("valid",),
    "eval": ("eval",),
    "test": ("eval",),
    "train+valid": ("train", "valid"),
}
LABEL_DTYPES = ("int64", "float32")


class MnistDataset(paddle.io.Dataset):
    """One split of MNIST or Fashion-MNIST.

    ``label_dtype="float32"`` serves a regression loss (the tutorial's MSE);
    ``transform`` maps a float32 [1,28,28] image to another (augmentation);
    ``limit`` keeps only the first N items, for quick runs; ``data`` reuses
    splits already loaded (``load_datasets`` reads a source once for all three).
    """

    def __init__(
        self,
        mode: str = "train",
        path: str | Path | None = None,
        *,
        dataset: str = "mnist",
        label_dtype: str = "int64",
        transform=None,
        limit: int | None = None,
        data: splits.MnistData | None = None,
    ):
        super().__init__()
        if mode not in MODES:
            raise DataError(f"unknown mode {mode!r}: choose {', '.join(MODES)}")
        if label_dtype not in LABEL_DTYPES:
            raise DataError(f"unknown label dtype {label_dtype!r}: choose {' or '.join(LABEL_DTYPES)}")
        data = data or splits.load(path, dataset)
        parts = [data.splits[name] for name in MODES[mode]]
        self.mode, self.label_dtype, self.transform = "+".join(MODES[mode]), label_dtype, transform
        self.pixels = _joined([part.pixels for part in parts])[:limit]
        self.class_ids = _joined([part.class_ids for part in parts])[:limit]
        self.encoding, self.classes, self.source = data.encoding, data.classes, data.source

    def __len__(self) -> int:
        return len(self.class_ids)

    def __getitem__(self, i: int):
        image = self.encoding.to_floats(self.pixels[i]).reshape(1, 28, 28)
        if self.transform is not None:
            image = self.transform(image)
        return image, np.array([self.class_ids[i]], dtype=self.label_dtype)

    def extended(self, pixels: np.ndarray, class_ids: np.ndarray) -> MnistDataset:
        """A copy of this split with ``pixels`` (uint8 [N,28,28]) and their ``class_ids`` after its own items:
        training digits made from it (``--cut-digits``)."""
        more = copy.copy(self)
        more.__dict__.pop("images", None)  # the copy decodes its own
        more.pixels, more.class_ids = np.concatenate([self.pixels, pixels]), np.concatenate([self.class_ids, class_ids])
        return more

    @functools.cached_property
    def images(self) -> np.ndarray:
        """The whole split as float32 [N,1,28,28], decoded once."""
        return self.encoding.to_floats(self.pixels).reshape(-1, 1, 28, 28)

    @property
    def labels(self) -> np.ndarray:
        """The whole split's labels as [N,1] in ``label_dtype``: what a loss takes."""
        return self.class_ids.astype(self.label_dtype).reshape(-1, 1)


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    """The arrays end to end; a single one as it is (no copy of a whole split)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def load_datasets(
    path: str | Path | None = None,
    *,
    dataset: str = "mnist",
    label_dtype: str = "int64",
    limit_train: int | None = None,
    train_on_valid: bool = False,
) -> tuple[splits.MnistData, dict[str, MnistDataset]]:
    """All three splits from one read of the source: (the data, {"train", "valid", "eval"} datasets).

    ``train_on_valid`` makes "train" the train and valid splits together; "valid" is then part of it.
    """
    data = splits.load(path, dataset)
    modes = {"train": "train+valid" if train_on_valid else "train", "valid": "valid", "eval": "eval"}
    datasets = {
        name: MnistDataset(mode, data=data, label_dtype=label_dtype, limit=limit_train if name == "train" else None)
        for name, mode in modes.items()
    }
    return data, datasets
