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
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from paddle_mnist import config as recipe
from paddle_mnist import losses, plots, rundir, trainer
from paddle_mnist.cli import non_negative_int
from paddle_mnist.config import Config
from paddle_mnist.errors import UserError, cli_entry
from paddle_mnist.fileio import write_bytes_atomic
from paddle_mnist.runinfo import RunInfo

DEFAULT_LOSSES = ("mse", "mse_onehot", "cross_entropy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paddle-mnist compare", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add(
        "--losses",
        nargs="+",
        choices=tuple(losses.LOSSES),
        default=list(DEFAULT_LOSSES),
        help=f"losses to compare (default: {' '.join(DEFAULT_LOSSES)})",
    )
    add(
        "--seeds",
        type=non_negative_int,
        nargs="+",
        default=[0, 1, 2],
        help="one run per loss and seed (default: 0 1 2)",
    )
    add("--out", type=Path, default=Path("compare"), help="output directory (default: compare)")
    add("--force", action="store_true", help="retrain runs that are already finished (default: reuse them)")
    recipe.add_recipe_flags(parser, varied=("loss", "label_smoothing", "seed", "nproc"))
    return parser


def run_config(base: Config, out: Path, loss: str, seed: int) -> Config:
    return replace(base, loss=loss, seed=seed, out=str(out / "runs" / f"{loss}-seed{seed}"), track_eval=True)


def finished(config: Config) -> RunInfo | None:
    """The saved metadata if this exact run already completed, else None."""
    try:
        info = rundir.read(Path(config.out))
    except UserError:
        return None
    same = recipe.recipe_of(info.config) == recipe.recipe_of(asdict(config)) and info.config.get("data") == config.data
    return info if same and info.epochs_done == config.epochs and info.metrics.eval_acc is not None else None


def train_or_reuse(config: Config, force: bool) -> tuple[RunInfo, bool]:
    """(metadata, reused): a finished identical run is reused, an interrupted one resumes, and only a run
    of other settings (or ``force``) is trained afresh over.  Any other failure (no data, a NaN, a locked
    or unreadable run) is the user's to see: the saved run stays as it is."""
    info = None if force else finished(config)
    if info is not None:
        return info, True
    saved = not force and (Path(config.out) / rundir.METADATA).exists()
    other = saved and bool(rundir.recipe_changes(rundir.read(Path(config.out)), config))
    return trainer.fit(replace(config, resume=saved and not other, overwrite=force or other)), False


def result_row(loss: str, seed: int, info: RunInfo) -> dict:
    history = info.history
    return {
        "loss": loss,
        "seed": seed,
        "valid_acc": [row.valid_acc for row in history],
        "eval_acc": [row.eval_acc for row in history],
        "train_loss": [row.train_loss for row in history],
        "final_eval_acc": info.metrics.eval_acc,
        "best_epoch": info.best_epoch,
        "train_seconds": sum(row.seconds for row in history),
        "final_loss": history[-1].train_loss,
        "confusion": info.metrics.confusion,
    }


def summarise(results: list[dict], loss_names: list[str]) -> list[dict]:
    table = []
    for loss in loss_names:
        runs = [r for r in results if r["loss"] == loss]
        accs = [100 * r["final_eval_acc"] for r in runs]
        table.append(
            {
                "loss": loss,
                "runs": len(runs),
                "mean": statistics.mean(accs),
                "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "best_epoch": statistics.mean(r["best_epoch"] for r in runs),
                "seconds": statistics.mean(r["train_seconds"] for r in runs),
            }
        )
    return table


def verdict(table: list[dict]) -> str:
    ranked = sorted(table, key=lambda row: -row["mean"])
    winner, others = ranked[0], ranked[1:]
    gaps = ", ".join(f"{winner['mean'] - row['mean']:.2f} points above {row['loss']}" for row in others)
    return f"{winner['loss']} reaches the highest eval accuracy ({winner['mean']:.2f} ± {winner['std']:.2f} %)" + (
        f", {gaps}." if gaps else "."
    )


def markdown(table: list[dict], base: Config, seeds: list[int]) -> str:
    lines = [
        f"Model `{base.model}`, {base.optimizer} lr {base.lr}, batch {base.batch_size}, {base.epochs} epochs, "
        f"seeds {' '.join(map(str, seeds))}; eval accuracy of the best-validation epoch.",
        "",
        "| loss | eval accuracy (%) mean ± std | best epoch (mean) | train time per run (s) |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['loss']} | {r['mean']:.2f} ± {r['std']:.2f} | {r['best_epoch']:.1f} | {r['seconds']:.0f} |"
        for r in table
    ]
    return "\n".join(lines + ["", verdict(table)]) + "\n"


def write_results(out: Path, results: list[dict], table: list[dict], summary: str) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(
        [
            "loss",
            "seed",
            "epoch",
            "train_loss",
            "valid_acc",
            "eval_acc",
            "final_eval_acc",
            "best_epoch",
            "train_seconds",
        ]
    )
    for r in results:
        for epoch, (tl, va, ea) in enumerate(zip(r["train_loss"], r["valid_acc"], r["eval_acc"]), 1):
            writer.writerow(
                [r["loss"], r["seed"], epoch, tl, va, ea, r["final_eval_acc"], r["best_epoch"], r["train_seconds"]]
            )
    write_bytes_atomic(out / "results.csv", text.getvalue().encode())
    write_bytes_atomic(out / "results.json", json.dumps({"runs": results, "summary": table}, indent=1).encode())
    write_bytes_atomic(out / "summary.md", summary.encode())


def plot_accuracy(out: Path, results: list[dict], loss_names: list[str]) -> None:
    fig, ax = plots.subplots(figsize=(7, 4.5))
    for loss in loss_names:
        curves = 100 * np.array([r["eval_acc"] for r in results if r["loss"] == loss])
        epochs = np.arange(1, curves.shape[1] + 1)
        (line,) = ax.plot(epochs, curves.mean(axis=0), marker="o", label=loss)
        ax.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.2)
    ax.set(ylabel="eval accuracy (%)", title="eval accuracy per epoch (band: min-max over seeds)")
    plots.epoch_axis(ax)
    ax.legend()
    plots.save_figure(fig, out / "accuracy.png")


def plot_losses(out: Path, results: list[dict], loss_names: list[str]) -> None:
    fig, axes = plots.subplots(1, len(loss_names), figsize=(4 * len(loss_names), 3.5), squeeze=False)
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
    fig, ax = plots.subplots(figsize=(5.5, 5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=100)
    for (i, j), value in np.ndenumerate(rates):
        ax.text(
            j,
            i,
            f"{value:.0f}" if value >= 0.5 else "",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if value > 50 else "black",
        )
    ax.set(
        xticks=range(10),
        yticks=range(10),
        xlabel="predicted",
        ylabel="true",
        title=f"{loss}: eval confusion (% of each true digit)",
    )
    plots.save_figure(fig, out / f"confusion_{loss}.png")


def misread(run_dir: str | Path, data: str | None, dataset: str = "mnist") -> list[tuple[np.ndarray, int, int]]:
    """(pixels, true digit, digit read) of every eval digit of ``data`` the run's best weights misread."""
    from paddle_mnist.data import MnistDataset
    from paddle_mnist.predictor import on_paddle

    predictor = on_paddle(rundir.open_run(run_dir))
    evaluation = MnistDataset("eval", data, dataset=dataset)
    read = predictor.loss.digits(trainer.predict_outputs(predictor.network, evaluation.images))
    wrong = np.flatnonzero(read != evaluation.class_ids)
    return [(evaluation.pixels[i], int(evaluation.class_ids[i]), int(read[i])) for i in wrong]


def plot_misread(out: Path, base: Config, loss: str, seed: int) -> None:
    """The eval digits the run of ``loss`` (and ``seed``) misreads, titled 'true -> read': where the tutorial's
    question "why does MSE fail?" can be looked at."""
    wrong = misread(run_config(base, out, loss, seed).out, base.data, base.dataset)
    plots.misread_grid(wrong, out / f"misread_{loss}.png", what=f"eval digits, {loss} seed {seed}")


def compare(base: Config, loss_names: list[str], seeds: list[int], out: Path, force: bool = False) -> list[dict]:
    """Train (or reuse) one run per loss and seed from the ``base`` recipe; write the tables and plots."""
    out.mkdir(parents=True, exist_ok=True)
    loss_names = list(dict.fromkeys(loss_names))
    results, start = [], time.perf_counter()
    for seed in seeds:
        for loss in loss_names:
            info, reused = train_or_reuse(run_config(base, out, loss, seed), force)
            print(
                f"{loss} seed {seed}: eval {100 * info.metrics.eval_acc:.2f}%" + (" (reused)" if reused else ""),
                flush=True,
            )
            results.append(result_row(loss, seed, info))
    table = summarise(results, loss_names)
    summary = markdown(table, base, seeds)
    write_results(out, results, table, summary)
    plot_accuracy(out, results, loss_names)
    plot_losses(out, results, loss_names)
    for loss in loss_names:
        plot_confusion(out, results, loss)
        plot_misread(out, base, loss, seeds[0])
    print("\n" + summary + f"\nwrote {out}/ in {time.perf_counter() - start:.0f} s")
    return table


@cli_entry("paddle-mnist compare")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    base = recipe.from_args(args, out=str(args.out))
    compare(base, args.losses, args.seeds, args.out, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
