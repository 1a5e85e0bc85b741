"""Compare settings on accuracy, one knob at a time: ``python -m paddle_mnist.compare`` (``paddle-mnist compare``).

The course's method (change one thing, keep the rest): each value of the knob is
trained by the ordinary trainer under otherwise identical conditions, the same
recipe and the same seeds, so the same data order and the same initial weights for
every layer the runs share.  Without ``--vary`` it answers the tutorial's question,
which loss; losses on different scales cannot be compared with each other, accuracy can.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from paddle_mnist import config as recipe
from paddle_mnist import losses, plots, rundir, trainer
from paddle_mnist.cli import non_negative_float, non_negative_int, positive_float, positive_int
from paddle_mnist.config import Config
from paddle_mnist.errors import UserError, cli_entry
from paddle_mnist.fileio import write_bytes_atomic
from paddle_mnist.runinfo import RunInfo

DEFAULT_LOSSES = ("mse", "mse_onehot", "cross_entropy")


def on_off(text: str) -> bool:
    """An argparse type for a switch's value: on/off (also true/false, yes/no, 1/0)."""
    words = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False, "0": False}
    if text.lower() not in words:
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return words[text.lower()]


def one_of(names: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(names)}, got {text!r}")
        return text

    return parse


# The recipe fields --vary may change, each with how a value is read from the command line.
KNOBS: dict[str, Callable[[str], object]] = {
    "loss": one_of(tuple(losses.LOSSES)),
    "optimizer": one_of(recipe.OPTIMIZERS),
    "lr": positive_float,
    "batch_size": positive_int,
    "model": one_of(recipe.MODEL_NAMES),
    "activation": one_of(recipe.ACTIVATIONS),
    "weight_decay": non_negative_float,
    "schedule": one_of(recipe.SCHEDULES),
    "augment": on_off,
    "distort": on_off,
    "outliers": on_off,
    "cut_digits": on_off,
    "label_smoothing": non_negative_float,
    "epochs": positive_int,
}
SWITCHES = tuple(knob for knob, parse in KNOBS.items() if parse is on_off)  # the recipe's on/off fields


@dataclass(frozen=True)
class Variation:
    """The knob (a ``Config`` field) and the values each run gives it, in the order given."""

    knob: str
    values: tuple

    @property
    def labels(self) -> list[str]:
        return [value_label(v) for v in self.values]


def value_label(value) -> str:
    """How a knob's value names its runs, files and rows: ``0.01``, ``on``, ``cross_entropy``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def variation(tokens: list[str]) -> Variation:
    """``--vary KNOB V1 V2 ...`` read and checked: one line naming the knob and the value for a bad one."""
    knob, *texts = tokens
    knob = knob.replace("-", "_")
    if knob not in KNOBS:
        raise UserError(f"--vary: unknown knob {tokens[0]!r}: choose {', '.join(KNOBS)}")
    if not texts:
        raise UserError(f"--vary {tokens[0]}: give the values to compare, e.g. --vary lr 0.1 0.01")
    values = []
    for text in texts:
        try:
            values.append(KNOBS[knob](text))
        except argparse.ArgumentTypeError as e:
            raise UserError(f"--vary {tokens[0]}: {e}") from None
    varied = Variation(knob, tuple(dict.fromkeys(values)))
    if len(set(varied.labels)) < len(varied.labels):  # 0.1 and 0.1000001 would share runs/0.1-seedS
        raise UserError(f"--vary {tokens[0]}: two values print as the same name ({', '.join(varied.labels)})")
    return varied


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paddle-mnist compare", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--vary",
        nargs="+",
        metavar=("KNOB", "VALUE"),
        help=f"the recipe field to vary and its values, e.g. --vary lr 0.1 0.01 0.001; KNOB is one of "
        f"{', '.join(k.replace('_', '-') for k in KNOBS)}; switches take on/off "
        f"(default: --vary loss {' '.join(DEFAULT_LOSSES)})",
    )
    which.add_argument(
        "--losses",
        nargs="+",
        choices=tuple(losses.LOSSES),
        help="the same as --vary loss LOSS ...",
    )
    add(
        "--seeds",
        type=non_negative_int,
        nargs="+",
        default=[0, 1, 2],
        help="one run per value and seed; the table gives mean ± std over them (default: 0 1 2)",
    )
    add("--out", type=Path, default=Path("compare"), help="output directory (default: compare)")
    add("--force", action="store_true", help="retrain runs that are already finished (default: reuse them)")
    recipe.add_recipe_flags(parser, varied=("seed", "nproc"))
    return parser


def chosen_variation(args: argparse.Namespace) -> Variation:
    """The knob and values the flags ask for; a recipe flag that sets the varied knob too is refused."""
    if args.vary:
        varied = variation(args.vary)
    else:
        varied = Variation("loss", tuple(dict.fromkeys(args.losses or DEFAULT_LOSSES)))
    if getattr(args, varied.knob, None) is not None:
        flag = "--" + varied.knob.replace("_", "-")
        raise UserError(f"{flag} sets {varied.knob}, which --vary {varied.knob} varies: give its values once")
    return varied


def run_config(base: Config, out: Path, knob: str, value, seed: int) -> Config:
    """The recipe of one run: ``base`` with the knob at ``value`` and the seed, in ``out/runs/VALUE-seedS``."""
    out_dir = out / "runs" / f"{value_label(value)}-seed{seed}"
    return replace(base, **{knob: value}, seed=seed, out=str(out_dir), track_eval=True)


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


def result_row(label: str, seed: int, info: RunInfo) -> dict:
    history = info.history
    return {
        "value": label,
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


def summarise(results: list[dict], labels: list[str]) -> list[dict]:
    table = []
    for label in labels:
        runs = [r for r in results if r["value"] == label]
        accs = [100 * r["final_eval_acc"] for r in runs]
        table.append(
            {
                "value": label,
                "runs": len(runs),
                "mean": statistics.mean(accs),
                "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "best_epoch": statistics.mean(r["best_epoch"] for r in runs),
                "seconds": statistics.mean(r["train_seconds"] for r in runs),
            }
        )
    return table


def verdict(table: list[dict], knob: str) -> str:
    ranked = sorted(table, key=lambda row: -row["mean"])
    winner, others = ranked[0], ranked[1:]
    gaps = ", ".join(f"{winner['mean'] - row['mean']:.2f} points above {knob} {row['value']}" for row in others)
    return (
        f"{knob} {winner['value']} reaches the highest eval accuracy ({winner['mean']:.2f} ± {winner['std']:.2f} %)"
        + (f", {gaps}." if gaps else ".")
    )


def recipe_line(base: Config, varied: Variation, seeds: list[int]) -> str:
    """What every run shares, with the varied knob named: the first line of the summary."""
    shared = {
        "model": base.model + (f" ({base.activation})" if base.activation else ""),
        "loss": base.loss,
        "optimizer": base.optimizer,
        "lr": f"{base.lr:g}" + (f" ({base.schedule})" if base.schedule != "constant" else ""),
        "batch_size": base.batch_size,
        "weight_decay": f"{base.weight_decay:g}",
        "epochs": base.epochs,
    }
    shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in shared.items() if k != varied.knob)
    switches = [name for name in SWITCHES if getattr(base, name) and name != varied.knob]
    images = f"the first {base.limit_train:,} training images" if base.limit_train else "the whole training split"
    return (
        f"Varied: **{varied.knob}** ({', '.join(varied.labels)}). The same for every run: {shown}"
        + (f", {', '.join(name.replace('_', ' ') for name in switches)}" if switches else "")
        + f"; {images}{' and valid' if base.train_on_valid else ''}; seeds {' '.join(map(str, seeds))}. "
        "Eval accuracy of the best-validation epoch."
    )


def markdown(table: list[dict], base: Config, varied: Variation, seeds: list[int]) -> str:
    lines = [
        recipe_line(base, varied, seeds),
        "",
        f"| {varied.knob} | eval accuracy (%) mean ± std | best epoch (mean) | train time per run (s) |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['value']} | {r['mean']:.2f} ± {r['std']:.2f} | {r['best_epoch']:.1f} | {r['seconds']:.0f} |"
        for r in table
    ]
    return "\n".join(lines + ["", verdict(table, varied.knob)]) + "\n"


def write_results(out: Path, knob: str, results: list[dict], table: list[dict], summary: str) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    columns = ["seed", "epoch", "train_loss", "valid_acc", "eval_acc", "final_eval_acc", "best_epoch", "train_seconds"]
    writer.writerow([knob, *columns])
    for r in results:
        for epoch, (tl, va, ea) in enumerate(zip(r["train_loss"], r["valid_acc"], r["eval_acc"]), 1):
            writer.writerow(
                [r["value"], r["seed"], epoch, tl, va, ea, r["final_eval_acc"], r["best_epoch"], r["train_seconds"]]
            )
    write_bytes_atomic(out / "results.csv", text.getvalue().encode())
    payload = {"knob": knob, "runs": results, "summary": table}
    write_bytes_atomic(out / "results.json", json.dumps(payload, indent=1).encode())
    write_bytes_atomic(out / "summary.md", summary.encode())


def plot_accuracy(out: Path, results: list[dict], varied: Variation) -> None:
    fig, ax = plots.subplots(figsize=(7, 4.5))
    for label in varied.labels:
        curves = 100 * np.array([r["eval_acc"] for r in results if r["value"] == label])
        epochs = np.arange(1, curves.shape[1] + 1)
        (line,) = ax.plot(epochs, curves.mean(axis=0), marker="o", label=f"{varied.knob} {label}")
        ax.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.2)
    ax.set(ylabel="eval accuracy (%)", title="eval accuracy per epoch (band: min-max over seeds)")
    plots.epoch_axis(ax)
    ax.legend()
    plots.save_figure(fig, out / "accuracy.png")


def plot_losses(out: Path, results: list[dict], varied: Variation) -> None:
    """One panel per value: losses may be on scales of their own (mse against cross-entropy)."""
    labels = varied.labels
    fig, axes = plots.subplots(1, len(labels), figsize=(4 * len(labels), 3.5), squeeze=False)
    for ax, label in zip(axes[0], labels):
        for r in (r for r in results if r["value"] == label):
            ax.plot(range(1, len(r["train_loss"]) + 1), r["train_loss"], marker=".", label=f"seed {r['seed']}")
        ax.set(title=f"{varied.knob} {label}" + (" (own scale)" if varied.knob == "loss" else ""))
        plots.epoch_axis(ax)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("training loss")
    fig.tight_layout()
    plots.save_figure(fig, out / "loss.png")


def plot_confusion(out: Path, results: list[dict], knob: str, label: str) -> None:
    counts = np.sum([r["confusion"] for r in results if r["value"] == label], axis=0)
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
        title=f"{knob} {label}: eval confusion (% of each true digit)",
    )
    plots.save_figure(fig, out / f"confusion_{label}.png")


def misread(run_dir: str | Path, data: str | None, dataset: str = "mnist") -> list[tuple[np.ndarray, int, int]]:
    """(pixels, true digit, digit read) of every eval digit of ``data`` the run's best weights misread."""
    from paddle_mnist.data import MnistDataset
    from paddle_mnist.predictor import on_paddle

    predictor = on_paddle(rundir.open_run(run_dir))
    evaluation = MnistDataset("eval", data, dataset=dataset)
    read = predictor.loss.digits(trainer.predict_outputs(predictor.network, evaluation.images))
    wrong = np.flatnonzero(read != evaluation.class_ids)
    return [(evaluation.pixels[i], int(evaluation.class_ids[i]), int(read[i])) for i in wrong]


def plot_misread(out: Path, run: Config, knob: str, label: str) -> None:
    """The eval digits ``run`` (the knob's value ``label``) misreads, titled 'true -> read': where the
    tutorial's question "why does MSE fail?" can be looked at."""
    wrong = misread(run.out, run.data, run.dataset)
    what = f"eval digits, {knob} {label} seed {run.seed}"
    plots.misread_grid(wrong, out / f"misread_{label}.png", what=what)


def compare(base: Config, varied: Variation, seeds: list[int], out: Path, force: bool = False) -> list[dict]:
    """Train (or reuse) one run per value of the knob and seed from the ``base`` recipe; write the tables
    and plots.  Every value's recipe is checked before the first run trains."""
    configs = {
        (value, seed): run_config(base, out, varied.knob, value, seed) for seed in seeds for value in varied.values
    }
    out.mkdir(parents=True, exist_ok=True)
    results, start = [], time.perf_counter()
    for (value, seed), config in configs.items():
        label = value_label(value)
        info, reused = train_or_reuse(config, force)
        print(
            f"{varied.knob} {label} seed {seed}: eval {100 * info.metrics.eval_acc:.2f}%"
            + (" (reused)" if reused else ""),
            flush=True,
        )
        results.append(result_row(label, seed, info))
    table = summarise(results, varied.labels)
    summary = markdown(table, base, varied, seeds)
    write_results(out, varied.knob, results, table, summary)
    plot_accuracy(out, results, varied)
    plot_losses(out, results, varied)
    for value in varied.values:
        plot_confusion(out, results, varied.knob, value_label(value))
        plot_misread(out, configs[(value, seeds[0])], varied.knob, value_label(value))
    print("\n" + summary + f"\nwrote {out}/ in {time.perf_counter() - start:.0f} s")
    return table


@cli_entry("paddle-mnist compare")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    varied = chosen_variation(args)
    base = recipe.from_args(args, out=str(args.out))
    compare(base, varied, args.seeds, args.out, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
