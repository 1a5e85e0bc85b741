"""Train a network on MNIST: ``python -m paddle_mnist.train`` (also ``paddle-mnist train``).

The defaults are the tutorial's recipe: the ``cnn`` network, cross-entropy,
SGD with lr 0.01, batch 100, 10 epochs.  The whole split lives in memory and
batches are taken by index, so no per-sample Python runs in the loop.  Every
random choice (initial weights, data order, augmentation) is a function of
``--seed`` and the epoch number, which is what lets ``--resume`` continue
exactly where an interrupted run stopped.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle

from paddle_mnist import checkpoint, losses, models, parallel, plots, splits
from paddle_mnist.augment import apply_affine, draw_affine
from paddle_mnist.data import MnistDataset
from paddle_mnist.errors import UserError, cli_entry
from paddle_mnist.fileio import write_bytes_atomic
from paddle_mnist.progress import Progress, format_seconds

PRESETS = {
    "tutorial": dict(model="cnn", loss="cross_entropy", optimizer="sgd", lr=0.01, batch_size=100, epochs=10,
                     schedule="constant", weight_decay=0.0, augment=False),
    "fast": dict(model="convnet", loss="cross_entropy", optimizer="adam", lr=0.003, batch_size=128, epochs=5,
                 schedule="onecycle", weight_decay=0.0, augment=False),
    "best": dict(model="vgg", loss="cross_entropy", optimizer="momentum", lr=0.05, batch_size=128, epochs=30,
                 schedule="onecycle", weight_decay=5e-4, augment=True),
}
# Fields that must not change when a run is resumed (epochs may grow with a constant schedule).
RESUME_FIELDS = ("dataset", "model", "loss", "optimizer", "lr", "batch_size", "seed", "schedule",
                 "weight_decay", "augment", "limit_train")
EVAL_BATCH = 1000


@dataclass
class Config:
    data: str | None = None
    dataset: str = "mnist"
    preset: str = "tutorial"
    model: str = "cnn"
    loss: str = "cross_entropy"
    optimizer: str = "sgd"
    lr: float = 0.01
    batch_size: int = 100
    epochs: int = 10
    schedule: str = "constant"
    weight_decay: float = 0.0
    augment: bool = False
    seed: int = 0
    out: str = "output"
    resume: bool = False
    device: str = "auto"
    limit_train: int | None = None
    track_eval: bool = False  # also score the eval split every epoch (the loss comparison plots it)
    amp: bool = False


class TrainingDiverged(UserError):
    pass


# --- the command line --------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paddle-mnist train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a network on MNIST and save it for paddle-mnist predict.",
        epilog=_models_epilog() + "\n\npresets:\n" + "\n".join(
            f"  {name:<9} " + ", ".join(f"{k}={v}" for k, v in values.items()) for name, values in PRESETS.items()))
    add = parser.add_argument
    add("--data", help="data file or IDX directory (default: the search described in the README)")
    add("--dataset", choices=sorted(splits.CLASSES), help="which data set (default: mnist)")
    add("--preset", choices=sorted(PRESETS), help="a named recipe; explicit flags override it (default: tutorial)")
    add("--model", choices=sorted(models.MODELS), help="network, see below (default: cnn, the tutorial's)")
    add("--loss", choices=sorted(losses.LOSSES), help="loss, which also sets the head size and label dtype (default: cross_entropy)")
    add("--optimizer", choices=("sgd", "momentum", "adam"), help="optimizer; momentum is 0.9, Nesterov (default: sgd)")
    add("--lr", type=float, help="learning rate, the peak rate for onecycle (default: 0.01)")
    add("--batch-size", type=int,
        help="images per optimizer step: the global batch, split evenly over data-parallel processes (default: 100)")
    add("--epochs", type=int, help="passes over the training split (default: 10)")
    add("--schedule", choices=("constant", "cosine", "onecycle"), help="learning-rate schedule over all steps (default: constant)")
    add("--weight-decay", type=float, help="L2 weight decay (default: 0)")
    add("--augment", action=argparse.BooleanOptionalAction, default=None,
        help="random shifts (2 px), rotations (10 deg) and scalings (10%%) of training images (default: off)")
    add("--seed", type=int, help="seed for initial weights, data order and augmentation (default: 0)")
    add("--out", help="directory for weights, metadata, history and plots (default: output)")
    add("--resume", action="store_true", help="continue the run saved in --out exactly where it stopped (default: off)")
    add("--device", choices=("auto", "cpu", "gpu"), help="where to train; auto = gpu when paddle has CUDA and a GPU (default: auto)")
    add("--amp", action="store_true", default=None, help="automatic mixed precision (auto_cast + GradScaler), GPU only (default: off)")
    add("--nproc", type=int, metavar="N", default=1,
        help="run N data-parallel processes through python -m paddle.distributed.launch, "
             "with its per-rank logs in OUT/launch-logs (default: 1)")
    add("--limit-train", type=int, metavar="N", help="train on the first N training images only, for quick runs (default: all)")
    return parser


def _models_epilog() -> str:
    lines = ["models (parameters with a 10-class head):"]
    for name, cls in models.MODELS.items():
        lines.append(f"  {name:<9} {models.parameter_count(cls(10)):>9,}  {cls.__doc__.splitlines()[0]}")
    lines.append("\nlosses:")
    lines += [f"  {loss.name:<13} {loss.summary}" for loss in losses.LOSSES.values()]
    return "\n".join(lines)


def resolve(args: argparse.Namespace) -> Config:
    """Preset values first, then every flag the user gave."""
    given = {k: v for k, v in vars(args).items() if v is not None and k != "nproc"}
    preset = given.get("preset", "tutorial")
    config = Config(**{**PRESETS[preset], **given, "preset": preset})
    for name in ("epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}")
    if config.lr <= 0 or not math.isfinite(config.lr):
        raise UserError(f"--lr must be a positive number, got {config.lr}")
    if config.limit_train is not None and config.limit_train < 1:
        raise UserError(f"--limit-train must be at least 1, got {config.limit_train}")
    return config


# --- setting up ----------------------------------------------------------------

def select_device(name: str, amp: bool = False) -> str:
    """cpu or gpu (this rank's GPU under the launcher); a clear error when a GPU is asked for and absent."""
    has_gpu = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if name == "gpu" and not has_gpu:
        why = "this paddle build has no CUDA" if not paddle.is_compiled_with_cuda() else "no GPU is visible"
        raise UserError(f"--device gpu: {why}; install paddlepaddle-gpu on a machine with a GPU, or use --device cpu")
    device = "gpu" if name == "gpu" or (name == "auto" and has_gpu) else "cpu"
    if amp and device != "gpu":
        raise UserError("--amp needs a GPU (automatic mixed precision runs float16 kernels); drop --amp on CPU")
    paddle.set_device(f"gpu:{paddle.distributed.ParallelEnv().dev_id}" if device == "gpu" else "cpu")
    return device


def load_splits(config: Config, loss: losses.Loss):
    """(train, valid, eval) datasets; ``--limit-train`` keeps the first N training images."""
    kwargs = dict(dataset=config.dataset, label_dtype=loss.label_dtype)
    return (MnistDataset("train", config.data, limit=config.limit_train, **kwargs),
            MnistDataset("valid", config.data, **kwargs), MnistDataset("eval", config.data, **kwargs))


def make_optimizer(config: Config, model: paddle.nn.Layer, steps_per_epoch: int):
    """The optimizer and its per-step LR scheduler (None for a constant rate)."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "cosine":
        lr = paddle.optimizer.lr.CosineAnnealingDecay(config.lr, T_max=total)
    elif config.schedule == "onecycle":
        lr = paddle.optimizer.lr.OneCycleLR(config.lr, total_steps=total, phase_pct=0.25)
    else:
        lr = config.lr
    decay = config.weight_decay or None
    params = model.parameters()
    if config.optimizer == "adam":
        optimizer = paddle.optimizer.Adam(lr, parameters=params, weight_decay=decay)
    elif config.optimizer == "momentum":
        optimizer = paddle.optimizer.Momentum(lr, momentum=0.9, use_nesterov=True, parameters=params, weight_decay=decay)
    else:
        optimizer = paddle.optimizer.SGD(lr, parameters=params, weight_decay=decay)
    return optimizer, (lr if isinstance(lr, paddle.optimizer.lr.LRScheduler) else None)


# --- the loops -----------------------------------------------------------------

def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled order of epoch ``epoch``: the same for a fresh and a resumed run."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def train_epoch(model, loss_fn, optimizer, scheduler, dataset: MnistDataset, config: Config, epoch: int,
                scaler=None) -> dict:
    """One pass over ``dataset`` in this epoch's order; returns mean loss, accuracy and speed.

    Under data parallelism each rank takes its rows of every global batch; the
    loss is summed over ranks every step, so all ranks see the same numbers and
    stop together on a NaN.
    """
    model.train()
    paddle.seed(config.seed * 100_003 + epoch)  # dropout and friends, if a model has them
    augment_rng = np.random.default_rng([config.seed, epoch, 1])
    images, labels, targets = dataset.images, dataset.labels, dataset.targets
    order = epoch_order(config.seed, epoch, len(targets))
    batches = range(0, len(order), config.batch_size)
    progress = Progress(f"epoch {epoch}/{config.epochs}", len(batches), enabled=parallel.is_main())
    background = float(dataset.encoding.decode(np.zeros(1, np.uint8))[0])
    total_loss, correct, start = 0.0, 0, time.perf_counter()
    for step, first in enumerate(batches, 1):
        batch = order[first:first + config.batch_size]
        rows = parallel.shard(np.arange(len(batch)))
        index = batch[rows]
        x = paddle.to_tensor(images[index])
        if config.augment:
            x = apply_affine(x, draw_affine(augment_rng, len(batch))[rows], background)
        with paddle.amp.auto_cast(enable=scaler is not None):
            outputs = model(x)
        loss = loss_fn(outputs.astype("float32"), paddle.to_tensor(labels[index]))
        value = parallel.all_sum([float(loss) * len(index)])[0] / len(batch)
        if not math.isfinite(value):
            progress.close()
            raise TrainingDiverged(f"loss became {value} at epoch {epoch}, batch {step}")
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.clear_grad()
        if scheduler is not None:
            scheduler.step()
        total_loss += value * len(batch)
        correct += int((loss_fn.digits(outputs.numpy()) == targets[index]).sum())
        progress.update(step, first + len(batch), value)
    progress.close()
    seconds = time.perf_counter() - start
    n = len(order)
    correct, seconds = parallel.all_sum([correct, seconds])
    seconds /= parallel.world_size()
    return {"train_loss": total_loss / n, "train_acc": correct / n, "seconds": seconds, "images_per_s": n / seconds}


@paddle.no_grad()
def predict_outputs(model, images: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Raw model outputs for float32 images [N,1,28,28], in eval mode."""
    model.eval()
    return np.concatenate([model(paddle.to_tensor(images[i:i + batch_size])).numpy()
                           for i in range(0, len(images), batch_size)])


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int = 10) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(truth.astype(np.int64) * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def evaluate(model, loss_fn, dataset: MnistDataset) -> dict:
    """Mean loss and accuracy on a whole split, plus the predicted digits (for confusion matrices)."""
    outputs = predict_outputs(model, dataset.images)
    loss = float(loss_fn(paddle.to_tensor(outputs), paddle.to_tensor(dataset.labels)))
    digits = loss_fn.digits(outputs)
    return {"loss": loss, "acc": float((digits == dataset.targets).mean()), "digits": digits}


# --- saving and resuming -------------------------------------------------------

HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "seconds", "images_per_s",
                   "eval_loss", "eval_acc")


def write_history(path: Path, history: list[dict]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=HISTORY_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_bytes_atomic(path, text.getvalue().encode())


def metadata(config: Config, loss: losses.Loss, train: MnistDataset, state: dict) -> dict:
    """Everything a predictor needs to rebuild the model with no flags, and a resume to continue."""
    encoding = train.encoding
    return {
        "format": 1,
        "model": config.model, "loss": loss.name, "outputs": loss.outputs, "label_dtype": loss.label_dtype,
        "normalization": {"name": encoding.name, "scale": encoding.scale, "offset": encoding.offset},
        "dataset": config.dataset, "classes": list(train.classes),
        "epochs_done": state["epoch"], "seed": config.seed,
        "config": dataclasses.asdict(config),
        "metrics": state["metrics"], "best_epoch": state["best_epoch"],
        "weights": {"last": "mnist.pdparams", "best": "best.pdparams", "optimizer": "mnist.pdopt"},
        "files": state["files"],
        "paddle_version": paddle.__version__,
        "history": state["history"],
    }


def save_epoch(out: Path, model, optimizer, config, loss, train, state: dict, improved: bool) -> None:
    """Weights, optimizer, history and plot, then mnist.json last: it records the others' hashes."""
    files = state["files"]
    files["mnist.pdparams"] = checkpoint.save_state(out / "mnist.pdparams", model.state_dict())
    files["mnist.pdopt"] = checkpoint.save_state(out / "mnist.pdopt", checkpoint.optimizer_state(model, optimizer))
    if improved:
        files["best.pdparams"] = checkpoint.save_state(out / "best.pdparams", model.state_dict())
    write_history(out / "history.csv", state["history"])
    plots.training_curves(state["history"], out / "curves.png", f"{config.model} / {loss.name} on {config.dataset}")
    checkpoint.save_json(out / checkpoint.METADATA, metadata(config, loss, train, state))


def resume_state(out: Path, config: Config, model, optimizer) -> dict:
    """Load the run in ``out`` after checking it is the same run and its files are intact."""
    meta = checkpoint.load_metadata(out)
    saved = meta["config"]
    changed = [f for f in RESUME_FIELDS if saved.get(f) != getattr(config, f)]
    if config.schedule != "constant" and saved.get("epochs") != config.epochs:
        changed.append("epochs (the LR schedule spans all epochs)")
    if changed:
        raise UserError(f"{out}: cannot resume: the saved run differs in {', '.join(changed)}")
    for name, digest in meta["files"].items():
        if checkpoint.sha256(out / name) != digest:
            raise UserError(f"{out / name}: does not match {checkpoint.METADATA} (an interrupted write?); cannot resume exactly")
    checkpoint.load_weights(model, out / "mnist.pdparams")
    checkpoint.load_optimizer_state(model, optimizer, out / "mnist.pdopt")
    return {"epoch": meta["epochs_done"], "history": meta["history"], "best_epoch": meta["best_epoch"],
            "metrics": meta["metrics"], "files": meta["files"], "best_weights": checkpoint.load_state(out / "best.pdparams")}


# --- the command -----------------------------------------------------------------

def snapshot(model: paddle.nn.Layer) -> dict:
    """A copy of the weights in memory: every rank keeps its own best, no file is read back."""
    return {name: tensor.numpy().copy() for name, tensor in model.state_dict().items()}


def run_epoch(trainable, model, loss, optimizer, scheduler, scaler, datasets, config: Config, epoch: int) -> dict:
    """Train one epoch, then score valid (and eval when tracked) with the plain model."""
    train, valid, evaluation = datasets
    try:
        row = {"epoch": epoch, **train_epoch(trainable, loss, optimizer, scheduler, train, config, epoch, scaler)}
    except TrainingDiverged as e:
        kept = f"epoch {epoch - 1} in {Path(config.out) / 'mnist.pdparams'}" if epoch > 1 else "none was written"
        raise TrainingDiverged(f"{e}; stopped, the last good checkpoint is untouched ({kept}); try a lower --lr") from None
    scores = evaluate(model, loss, valid)
    row.update(valid_loss=scores["loss"], valid_acc=scores["acc"])
    if config.track_eval:
        scores = evaluate(model, loss, evaluation)
        row.update(eval_loss=scores["loss"], eval_acc=scores["acc"])
    return row


def record(state: dict, row: dict) -> bool:
    """Add an epoch's row to the run's state; True when it is the best by valid accuracy so far."""
    state["history"].append(row)
    improved = not state["best_epoch"] or row["valid_acc"] > state["metrics"]["best_valid_acc"]
    if improved:
        state["best_epoch"] = row["epoch"]
        state["metrics"]["best_valid_acc"] = row["valid_acc"]
    state["epoch"] = row["epoch"]
    state["metrics"].update(valid_acc=row["valid_acc"], valid_loss=row["valid_loss"])
    return improved


def fit(config: Config) -> dict:
    """Train as ``config`` says, saving after every epoch; returns the final metadata."""
    device = select_device(config.device, config.amp)
    parallel.check_batch(config.batch_size)
    loss = losses.LOSSES[config.loss]
    datasets = load_splits(config, loss)
    train = datasets[0]
    paddle.seed(config.seed)
    np.random.seed(config.seed)
    model = models.build(config.model, loss.outputs)
    trainable = parallel.wrap(model)
    optimizer, scheduler = make_optimizer(config, model, math.ceil(len(train) / config.batch_size))
    scaler = paddle.amp.GradScaler() if config.amp else None
    out = Path(config.out)
    state = {"epoch": 0, "history": [], "best_epoch": 0, "metrics": {}, "files": {}}
    if config.resume:
        state = resume_state(out, config, model, optimizer)
    elif parallel.is_main():
        out.mkdir(parents=True, exist_ok=True)
    print(f"training {config.model} ({models.parameter_count(model):,} parameters) with {loss.name} on "
          f"{len(train):,} {config.dataset} images, {config.optimizer} lr {config.lr}, batch {config.batch_size}, "
          f"{config.epochs} epochs on {device}" + (f" x{parallel.world_size()} processes" if parallel.world_size() > 1 else "")
          + (f", resuming after epoch {state['epoch']}" if state["epoch"] else ""))
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        row = run_epoch(trainable, model, loss, optimizer, scheduler, scaler, datasets, config, epoch)
        improved = record(state, row)
        if improved:
            state["best_weights"] = snapshot(model)
        if parallel.is_main():
            save_epoch(out, model, optimizer, config, loss, train, state, improved)
        print(f"epoch {epoch}/{config.epochs}: train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}% | "
              f"valid loss {row['valid_loss']:.4f} acc {100 * row['valid_acc']:.2f}% | "
              f"{format_seconds(row['seconds'])} at {row['images_per_s']:,.0f} img/s", flush=True)
    return finish(out, model, loss, datasets[2], config, train, state)


def finish(out: Path, model, loss, evaluation: MnistDataset, config, train, state) -> dict:
    """Eval-split accuracy of the last and the best weights, recorded in mnist.json."""
    last = evaluate(model, loss, evaluation)
    model.set_state_dict(state["best_weights"])
    best = evaluate(model, loss, evaluation)
    state["metrics"].update(eval_acc_last=last["acc"], eval_acc=best["acc"], eval_loss=best["loss"],
                            confusion=confusion_matrix(evaluation.targets, best["digits"]).tolist())
    meta = metadata(config, loss, train, state)
    if parallel.is_main():
        checkpoint.save_json(out / checkpoint.METADATA, meta)
    print(f"eval accuracy: {100 * best['acc']:.2f}% (best valid epoch {state['best_epoch']}), "
          f"{100 * last['acc']:.2f}% (last epoch {state['epoch']}); saved to {out}/")
    return meta


@cli_entry("paddle-mnist train")
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.nproc < 1:
        raise UserError(f"--nproc must be at least 1, got {args.nproc}")
    config = resolve(args)
    if args.nproc > 1 and parallel.world_size() == 1:
        return parallel.launch(args.nproc, without_nproc(argv), Path(config.out) / "launch-logs")
    fit(config)
    return 0


def without_nproc(argv: list[str]) -> list[str]:
    """The same arguments minus ``--nproc N`` / ``--nproc=N``, for each launched process."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


if __name__ == "__main__":
    sys.exit(main())
