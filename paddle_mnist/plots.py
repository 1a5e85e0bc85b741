"""Figures written atomically as PNG, drawn on ``matplotlib.figure.Figure`` objects of their own.

No pyplot: its global state (the current figure, the backend) belongs to the caller, so a notebook
that trains keeps its inline backend and its figures.  A ``Figure`` renders to PNG with Agg by itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from paddle_mnist.fileio import atomic_path

if TYPE_CHECKING:
    from paddle_mnist.runinfo import EpochRow


def subplots(rows: int = 1, columns: int = 1, **figure_args):
    """(figure, axes) as ``pyplot.subplots`` gives them, without pyplot."""
    squeeze = figure_args.pop("squeeze", True)
    fig = Figure(**figure_args)
    return fig, fig.subplots(rows, columns, squeeze=squeeze)


def epoch_axis(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def save_figure(fig, out: Path) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def training_curves(history: list[EpochRow], out: Path, title: str) -> None:
    """Loss and accuracy per epoch, train against valid."""
    epochs = [row.epoch for row in history]
    fig, (loss_ax, acc_ax) = subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [row.train_loss for row in history], "o-", label="train")
    loss_ax.plot(epochs, [row.valid_loss for row in history], "s--", label="valid")
    acc_ax.plot(epochs, [100 * row.train_acc for row in history], "o-", label="train")
    acc_ax.plot(epochs, [100 * row.valid_acc for row in history], "s--", label="valid")
    loss_ax.set(ylabel="loss", title="loss")
    acc_ax.set(ylabel="accuracy (%)", title="accuracy")
    for ax in (loss_ax, acc_ax):
        epoch_axis(ax)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, out)


def misread_grid(misread: list, out: Path, what: str = "pictures", columns: int = 8) -> None:
    """The misread images (each a PIL image or a grey array, with its true label and what was read; None:
    no digit found), titled 'true -> read', at most 64."""
    shown = misread[:64]
    rows = max(1, -(-len(shown) // columns))
    fig, axes = subplots(rows, columns, figsize=(columns * 1.5, rows * 1.7), squeeze=False)
    for ax, item in zip(axes.flat, shown + [None] * (rows * columns - len(shown))):
        ax.axis("off")
        if item is not None:
            picture, label, digit = item
            ax.imshow(picture, cmap="gray")
            ax.set_title(f"{label} -> {'none' if digit is None else digit}", fontsize=8)
    fig.suptitle(f"misread: {len(misread)} {what}" + (" (first 64)" if len(misread) > 64 else ""), fontsize=10)
    fig.tight_layout()
    save_figure(fig, out)
