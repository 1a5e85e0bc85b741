"""Compare loss functions on accuracy: ``python -m paddle_mnist.compare`` (also ``paddle-mnist compare``).

Losses on different scales cannot be compared with each other; accuracy can.
Each loss is trained by the ordinary trainer under identical conditions: the
same model family, seed (so the same initial weights for every layer but the
head, and the same data order), optimizer, batch size and epochs.  Only the
loss, and the head it implies, changes.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from paddle_mnist import checkpoint, losses, models, plots, splits, train
from paddle_mnist.errors import UserError, cli_entry
from paddle_mnist.fileio import write_bytes_atomic

DEFAULT_LOSSES = ("mse", "mse_onehot", "cross_entropy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paddle-mnist compare", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--losses", nargs="+", choices=sorted(losses.LOSSES), default=list(DEFAULT_LOSSES),
        help=f"losses to compare (default: {' '.join(DEFAULT_LOSSES)})")
    add("--model", choices=sorted(models.MODELS), default="cnn", help="network for every loss (default: cnn)")
    add("--epochs", type=int, default=10, help="epochs per run (default: 10)")
    add("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per loss and seed (default: 0 1 2)")
    add("--out", type=Path, default=Path("compare"), help="output directory (default: compare)")
    add("--force", action="store_true", help="retrain runs that are already finished (default: reuse them)")
    add("--data", help="data file or IDX directory (default: the README's search)")
    add("--dataset", choices=sorted(splits.CLASSES), default="mnist", help="which data set (default: mnist)")
    add("--limit-train", type=int, metavar="N", help="train on the first N images only (default: all)")
    add("--optimizer", choices=("sgd", "momentum", "adam"), default="sgd", help="optimizer for every run (default: sgd)")
    add("--lr", type=float, default=0.01, help="learning rate for every run (default: 0.01)")
    add("--batch-size", type=int, default=100, help="batch size for every run (default: 100)")
    add("--device", choices=("auto", "cpu", "gpu"), default="auto", help="where to train (default: auto)")
    return parser


def run_config(args, loss: str, seed: int) -> train.Config:
    base = train.Config(data=args.data, dataset=args.dataset, model=args.model, optimizer=args.optimizer, lr=args.lr,
                        batch_size=args.batch_size, epochs=args.epochs, seed=seed, limit_train=args.limit_train,
                        device=args.device, track_eval=True)
    return replace(base, loss=loss, out=str(args.out / "runs" / f"{loss}-seed{seed}"))


def finished(config: train.Config) -> dict | None:
    """The saved metadata if this exact run already completed, else None."""
    try:
        meta = checkpoint.load_metadata(Path(config.out))
    except UserError:
        return None
    same = {k: v for k, v in meta["config"].items() if k not in ("resume", "out")} == \
        {k: v for k, v in vars(config).items() if k not in ("resume", "out")}
    return meta if same and meta["epochs_done"] == config.epochs and "eval_acc" in meta["metrics"] else None


def train_or_reuse(config: train.Config, force: bool) -> tuple[dict, bool]:
    """(metadata, reused): a finished identical run is reused; an interrupted one resumes."""
    meta = None if force else finished(config)
    if meta is not None:
        return meta, True
    resumable = not force and (Path(config.out) / checkpoint.METADATA).exists()
    try:
        return train.fit(replace(config, resume=resumable)), False
    except UserError:
        if not resumable:
            raise
        return train.fit(config), False  # a stale run of other settings: start it afresh


def result_row(loss: str, seed: int, meta: dict) -> dict:
    history = meta["history"]
    return {
        "loss": loss, "seed": seed,
        "valid_acc": [row["valid_acc"] for row in history],
        "eval_acc": [row["eval_acc"] for row in history],
        "train_loss": [row["train_loss"] for row in history],
        "final_eval_acc": meta["metrics"]["eval_acc"], "best_epoch": meta["best_epoch"],
        "train_seconds": sum(row["seconds"] for row in history),
        "final_loss": history[-1]["train_loss"],
        "confusion": meta["metrics"]["confusion"],
    }


def summarise(results: list[dict], loss_names: list[str]) -> list[dict]:
    table = []
    for loss in loss_names:
        runs = [r for r in results if r["loss"] == loss]
        accs = [100 * r["final_eval_acc"] for r in runs]
        table.append({"loss": loss, "runs": len(runs), "mean": statistics.mean(accs),
                      "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                      "best_epoch": statistics.mean(r["best_epoch"] for r in runs),
                      "seconds": statistics.mean(r["train_seconds"] for r in runs)})
    return table


def verdict(table: list[dict]) -> str:
    ranked = sorted(table, key=lambda row: -row["mean"])
    winner, others = ranked[0], ranked[1:]
    gaps = ", ".join(f"{winner['mean'] - row['mean']:.2f} points above {row['loss']}" for row in others)
    return (f"{winner['loss']} reaches the highest eval accuracy ({winner['mean']:.2f} ± {winner['std']:.2f} %)"
            + (f", {gaps}." if gaps else "."))


def markdown(table: list[dict], args) -> str:
    lines = [f"Model `{args.model}`, {args.optimizer} lr {args.lr}, batch {args.batch_size}, {args.epochs} epochs, "
             f"seeds {' '.join(map(str, args.seeds))}; eval accuracy of the best-validation epoch.", "",
             "| loss | eval accuracy (%) mean ± std | best epoch (mean) | train time per run (s) |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {r['loss']} | {r['mean']:.2f} ± {r['std']:.2f} | {r['best_epoch']:.1f} | {r['seconds']:.0f} |" for r in table]
    return "\n".join(lines + ["", verdict(table)]) + "\n"


def write_results(out: Path, results: list[dict], table: list[dict], args) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["loss", "seed", "epoch", "train_loss", "valid_acc", "eval_acc",
                     "final_eval_acc", "best_epoch", "train_seconds"])
    for r in results:
        for epoch, (tl, va, ea) in enumerate(zip(r["train_loss"], r["valid_acc"], r["eval_acc"]), 1):
            writer.writerow([r["loss"], r["seed"], epoch, tl, va, ea, r["final_eval_acc"], r["best_epoch"], r["train_seconds"]])
    write_bytes_atomic(out / "results.csv", text.getvalue().encode())
    write_bytes_atomic(out / "results.json", json.dumps({"runs": results, "summary": table}, indent=1).encode())
    write_bytes_atomic(out / "summary.md", markdown(table, args).encode())


def plot_accuracy(out: Path, results: list[dict], loss_names: list[str]) -> None:
    fig, ax = plots.plt.subplots(figsize=(7, 4.5))
    for loss in loss_names:
        curves = 100 * np.array([r["eval_acc"] for r in results if r["loss"] == loss])
        epochs = np.arange(1, curves.shape[1] + 1)
        line, = ax.plot(epochs, curves.mean(axis=0), marker="o", label=loss)
        ax.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.2)
    ax.set(ylabel="eval accuracy (%)", title="eval accuracy per epoch (band: min-max over seeds)")
    plots.epoch_axis(ax)
    ax.legend()
    plots.save_figure(fig, out / "accuracy.png")


def plot_losses(out: Path, results: list[dict], loss_names: list[str]) -> None:
    fig, axes = plots.plt.subplots(1, len(loss_names), figsize=(4 * len(loss_names), 3.5), squeeze=False)
    for ax, loss in zip(axes[0], loss_names):
        for r in (r for r in results if r["loss"] == loss):
            ax.plot(range(1, len(r["train_loss"]) + 1), r["train_loss"], marker=".", label=f"seed {r['seed']}")
        ax.set(title=f"{loss} (own scale)")
        plots.epoch_axis(ax)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("training loss")
    fig.tight_layout()
    plots.save_figure(fig, out / "loss.png")


def plot_confusion(out: Path, results: list[dict], loss: str) -> None:
    counts = np.sum([r["confusion"] for r in results if r["loss"] == loss], axis=0)
    rates = 100 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plots.plt.subplots(figsize=(5.5, 5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=100)
    for (i, j), value in np.ndenumerate(rates):
        ax.text(j, i, f"{value:.0f}" if value >= 0.5 else "", ha="center", va="center", fontsize=7,
                color="white" if value > 50 else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true",
           title=f"{loss}: eval confusion (% of each true digit)")
    plots.save_figure(fig, out / f"confusion_{loss}.png")


def compare(args) -> list[dict]:
    if args.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {args.epochs}")
    args.out.mkdir(parents=True, exist_ok=True)
    loss_names = list(dict.fromkeys(args.losses))
    results, start = [], time.perf_counter()
    for seed in args.seeds:
        for loss in loss_names:
            meta, reused = train_or_reuse(run_config(args, loss, seed), args.force)
            print(f"{loss} seed {seed}: eval {100 * meta['metrics']['eval_acc']:.2f}%" + (" (reused)" if reused else ""),
                  flush=True)
            results.append(result_row(loss, seed, meta))
    table = summarise(results, loss_names)
    write_results(args.out, results, table, args)
    plot_accuracy(args.out, results, loss_names)
    plot_losses(args.out, results, loss_names)
    for loss in loss_names:
        plot_confusion(args.out, results, loss)
    print("\n" + markdown(table, args) + f"\nwrote {args.out}/ in {time.perf_counter() - start:.0f} s")
    return table


@cli_entry("paddle-mnist compare")
def main(argv=None) -> int:
    compare(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
