"""Matplotlib figures written atomically with the Agg backend (no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from paddle_mnist.fileio import atomic_path  # noqa: E402


def epoch_axis(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def save_figure(fig, out: Path) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def training_curves(history: list[dict], out: Path, title: str) -> None:
    """Loss and accuracy per epoch, train against valid."""
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "o-"), ("valid", "s--")):
        loss_ax.plot(epochs, [row[f"{split}_loss"] for row in history], style, label=split)
        acc_ax.plot(epochs, [100 * row[f"{split}_acc"] for row in history], style, label=split)
    loss_ax.set(ylabel="loss", title="loss")
    acc_ax.set(ylabel="accuracy (%)", title="accuracy")
    for ax in (loss_ax, acc_ax):
        epoch_axis(ax)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, out)
