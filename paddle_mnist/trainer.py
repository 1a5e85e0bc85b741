"""The trainer: ``fit(config)`` trains a network on MNIST as a ``config.Config`` says, saving every epoch.

The defaults are the tutorial's recipe (``config.Config``).  The whole split
lives in memory and batches are taken by index, so no per-sample Python runs
in the loop.  Every random choice (initial weights, data order, augmentation)
is a function of ``--seed`` and the epoch number, which is what lets
``--resume`` continue exactly where an interrupted run stopped.  What is saved,
and how, belongs to ``rundir``; the command (``paddle-mnist train``) is ``train``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from paddle_mnist import calibration, checkpoint, losses, models, notdigits, parallel, rundir, touching
from paddle_mnist._paddle import paddle
from paddle_mnist.augment import apply_affine, apply_distortion, draw_affine, draw_distortion
from paddle_mnist.config import Config
from paddle_mnist.data import MnistDataset, load_datasets
from paddle_mnist.errors import UserError
from paddle_mnist.progress import Progress, format_seconds
from paddle_mnist.runinfo import EpochRow, RunInfo, RunState

EVAL_BATCH = 1000
OUTLIER_POOL = 10_000  # non-digits made for --outliers (~45 s); each epoch shows as many as half its digits
OUTLIER_WEIGHT = 0.5  # their loss's weight against the digits' (Hendrycks et al. 2019 use 0.5)
CUT_DIGITS = 0.2  # digits cut out of touching numbers under --cut-digits, as a share of the train split's


class TrainingDiverged(UserError):
    pass


@dataclass
class Trainee:
    """Everything a training step touches."""

    model: paddle.nn.Layer  # the network: evaluated and saved
    trainable: paddle.nn.Layer  # the same network, wrapped in DataParallel under the launcher
    loss: losses.Loss
    optimizer: paddle.optimizer.Optimizer
    scheduler: paddle.optimizer.lr.LRScheduler | None
    scaler: paddle.amp.GradScaler | None
    steps_per_epoch: int  # optimizer steps in one epoch (global batches)
    outliers: np.ndarray | None = None  # float32 [N,1,28,28] non-digits, scaled as the data (--outliers)


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
        optimizer = paddle.optimizer.Adam(
            lr, beta1=config.beta1, beta2=config.beta2, parameters=params, weight_decay=decay
        )
    elif config.optimizer == "adagrad":
        optimizer = paddle.optimizer.Adagrad(lr, parameters=params, weight_decay=decay)
    elif config.optimizer in ("momentum", "nesterov"):
        nesterov = config.optimizer == "nesterov"
        optimizer = paddle.optimizer.Momentum(
            lr, momentum=0.9, use_nesterov=nesterov, parameters=params, weight_decay=decay
        )
    else:
        optimizer = paddle.optimizer.SGD(lr, parameters=params, weight_decay=decay)
    return optimizer, (lr if isinstance(lr, paddle.optimizer.lr.LRScheduler) else None)


def build_trainee(config: Config, train_size: int) -> Trainee:
    """The model (seeded by ``config.seed``), its optimizer and schedule, and the AMP scaler."""
    loss = replace(losses.LOSSES[config.loss], smoothing=config.label_smoothing)
    paddle.seed(config.seed)
    model = models.build(config.model, loss.head_size, config.activation)
    steps = math.ceil(train_size / config.batch_size)
    optimizer, scheduler = make_optimizer(config, model, steps)
    scaler = paddle.amp.GradScaler() if config.amp else None
    return Trainee(model, parallel.wrap(model), loss, optimizer, scheduler, scaler, steps)


def outlier_pool(config: Config, train: MnistDataset) -> np.ndarray | None:
    """Under ``--outliers``, the non-digits every batch is shown beside its digits, scaled as the data: made
    from the seed, so a resumed run trains on the very same."""
    if not config.outliers:
        return None
    pool = notdigits.training_pool(OUTLIER_POOL, config.seed, train.pixels)
    return train.encoding.to_floats(pool[:, None]).astype(np.float32)


# --- the loops -----------------------------------------------------------------


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled order of epoch ``epoch``: the same for a fresh and a resumed run."""
    return np.random.default_rng([seed, epoch]).permutation(n)


@dataclass(frozen=True)
class EpochTraining:
    """What one pass over the training split measured."""

    loss: float  # mean over the split
    acc: float
    seconds: float
    images_per_s: float


@dataclass(frozen=True)
class Scores:
    """A model's mean loss and accuracy on a whole split, and its digit for each image."""

    loss: float
    acc: float
    digits: np.ndarray
    outputs: np.ndarray  # the model's raw outputs, for the calibration


def train_epoch(trainee: Trainee, dataset: MnistDataset, config: Config, epoch: int) -> EpochTraining:
    """One pass over ``dataset`` in this epoch's order; returns mean loss, accuracy and speed.

    Under data parallelism each rank takes its rows of every global batch; the
    loss is summed over ranks every step, so all ranks see the same numbers and
    stop together on a NaN.
    """
    trainee.trainable.train()
    paddle.seed(config.seed * 100_003 + epoch)  # dropout and friends, if a model has them
    augment_rng = np.random.default_rng([config.seed, epoch, 1])
    images, labels, class_ids = dataset.images, dataset.labels, dataset.class_ids
    order = epoch_order(config.seed, epoch, len(class_ids))
    if trainee.outliers is not None:
        outlier_order = np.random.default_rng([config.seed, epoch, 2]).permutation(len(trainee.outliers))
    batches = range(0, len(order), config.batch_size)
    progress = Progress(f"epoch {epoch}/{config.epochs}", len(batches), enabled=parallel.is_main())
    background = dataset.encoding.background
    total_loss, correct = 0.0, 0
    for step, first in enumerate(batches, 1):
        batch = order[first : first + config.batch_size]
        rows = parallel.shard(np.arange(len(batch)))
        index = batch[rows]
        x = augmented(paddle.to_tensor(images[index]), len(batch), rows, config, augment_rng, background)
        outliers = None
        if trainee.outliers is not None:  # half as many non-digits, the pool's next ones in this epoch's order
            taken = np.take(outlier_order, np.arange(first // 2, first // 2 + len(batch) // 2), mode="wrap")
            mine = parallel.shard(np.arange(len(taken)))
            outliers = paddle.to_tensor(trainee.outliers[taken[mine]])
            outliers = augmented(outliers, len(taken), mine, config, augment_rng, background)
        value, outputs = train_step(trainee, x, paddle.to_tensor(labels[index]), len(batch), outliers)
        if not math.isfinite(value):
            progress.finish()
            raise TrainingDiverged(f"loss became {value} at epoch {epoch}, batch {step}")
        total_loss += value * len(batch)
        correct += int((trainee.loss.digits(outputs) == class_ids[index]).sum())
        rate = (first + len(batch)) / max(progress.elapsed, 1e-9)
        progress.update(step, f"[{step:>{len(str(len(batches)))}}/{len(batches)}] loss {value:.4f} {rate:,.0f} img/s")
    progress.finish()
    n = len(order)
    correct, seconds = parallel.all_sum([correct, progress.elapsed])
    seconds /= parallel.world_size()
    return EpochTraining(total_loss / n, correct / n, seconds, n / seconds)


def augmented(x: paddle.Tensor, n: int, rows: np.ndarray, config: Config, rng, background: float) -> paddle.Tensor:
    """This rank's ``rows`` of a global batch of ``n`` images, augmented as the recipe says (draws for all
    ``n``, so every rank draws the same)."""
    if config.distort:
        theta, noise, pen = draw_distortion(rng, n)
        return apply_distortion(x, theta[rows], noise[rows], pen[rows], background)
    if config.augment:
        return apply_affine(x, draw_affine(rng, n)[rows], background)
    return x


def train_step(
    trainee: Trainee, x: paddle.Tensor, y: paddle.Tensor, global_batch: int, outliers: paddle.Tensor | None = None
) -> tuple[float, np.ndarray]:
    """Forward, backward and one optimizer step; (the global batch's mean loss on its digits, this rank's
    outputs for them).  ``outliers``, non-digits, go through the same forward pass (BatchNorm sees both)
    and add ``OUTLIER_WEIGHT`` times their cross-entropy to the uniform distribution (Hendrycks et al. 2019).

    A non-finite loss is returned before any update, so the weights stay those of the last good step.
    """
    inputs = x if outliers is None else paddle.concat([x, outliers])
    with paddle.amp.auto_cast(enable=trainee.scaler is not None), warnings.catch_warnings():
        # BatchNorm says on every training forward that it tracks global statistics: news to no one here
        warnings.filterwarnings(
            "ignore", message="When training, we now always track global mean", category=UserWarning
        )
        everything = trainee.trainable(inputs).astype("float32")
    outputs = everything[: len(x)]
    loss = digits_loss = trainee.loss(outputs, y)
    if outliers is not None:
        uniform = -paddle.nn.functional.log_softmax(everything[len(x) :], axis=1).mean()
        loss = digits_loss + OUTLIER_WEIGHT * uniform
    value, total = (v / global_batch for v in parallel.all_sum([float(digits_loss) * len(x), float(loss) * len(x)]))
    if not (math.isfinite(value) and math.isfinite(total)):  # every rank sees the same sums: all stop together
        return (total if math.isfinite(value) else value), outputs.numpy()  # the sum that is not finite
    if trainee.scaler is not None:
        trainee.scaler.scale(loss).backward()
        trainee.scaler.step(trainee.optimizer)
        trainee.scaler.update()
    else:
        loss.backward()
        trainee.optimizer.step()
    trainee.optimizer.clear_grad()
    if trainee.scheduler is not None:
        trainee.scheduler.step()
    return value, outputs.numpy()


@paddle.no_grad()
def predict_outputs(model, images: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Raw model outputs for float32 images [N,1,28,28], in eval mode."""
    model.eval()
    return np.concatenate(
        [model(paddle.to_tensor(images[i : i + batch_size])).numpy() for i in range(0, len(images), batch_size)]
    )


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int = 10) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(truth.astype(np.int64) * classes + predicted, minlength=classes * classes).reshape(
        classes, classes
    )


def evaluate(model, loss_fn, dataset: MnistDataset) -> Scores:
    """Mean loss and accuracy on a whole split, plus the predicted digits (for confusion matrices)."""
    outputs = predict_outputs(model, dataset.images)
    loss = float(loss_fn(paddle.to_tensor(outputs), paddle.to_tensor(dataset.labels)))
    digits = loss_fn.digits(outputs)
    return Scores(loss, float((digits == dataset.class_ids).mean()), digits, outputs)


def run_epoch(trainee: Trainee, datasets: dict[str, MnistDataset], config: Config, epoch: int) -> EpochRow:
    """Train one epoch, then score valid (and eval when tracked) with the plain model."""
    try:
        trained = train_epoch(trainee, datasets["train"], config, epoch)
    except TrainingDiverged as e:
        kept = f"epoch {epoch - 1} in {Path(config.out) / rundir.LAST_WEIGHTS}" if epoch > 1 else "none was written"
        raise TrainingDiverged(
            f"{e}; stopped, the last good checkpoint is untouched ({kept}); try a lower --lr"
        ) from None
    valid = evaluate(trainee.model, trainee.loss, datasets["valid"])
    tracked = evaluate(trainee.model, trainee.loss, datasets["eval"]) if config.track_eval else None
    return EpochRow(
        epoch=epoch,
        train_loss=trained.loss,
        train_acc=trained.acc,
        valid_loss=valid.loss,
        valid_acc=valid.acc,
        seconds=trained.seconds,
        images_per_s=trained.images_per_s,
        eval_loss=tracked.loss if tracked else None,
        eval_acc=tracked.acc if tracked else None,
    )


def snapshot(model: paddle.nn.Layer) -> dict:
    """A copy of the weights in memory: every rank keeps its own best, no file is read back."""
    return {name: tensor.numpy().copy() for name, tensor in model.state_dict().items()}


# --- the whole run ---------------------------------------------------------------


def fit(config: Config) -> RunInfo:
    """Train as ``config`` says, saving after every epoch; returns the final metadata."""
    config = with_running_processes(config)
    device = select_device(config.device, config.amp)
    parallel.check_batch(config.batch_size)
    with rundir.RunWriter(Path(config.out), enabled=parallel.is_main()) as writer:
        if not config.resume:
            writer.check_fresh(config.overwrite)
        data, datasets = load_training_data(config)
        trainee = replace(
            build_trainee(config, len(datasets["train"])), outliers=outlier_pool(config, datasets["train"])
        )
        state = resume(trainee, config) if config.resume else RunState()
        announce(config, data, datasets["train"], trainee, device, state)
        for epoch in range(state.epoch + 1, config.epochs + 1):
            row = run_epoch(trainee, datasets, config, epoch)
            improved = state.record(row, by_valid=not config.train_on_valid)
            if improved:
                state.best_state = snapshot(trainee.model)
            writer.save_epoch(trainee.model, trainee.optimizer, RunInfo.describe(config, data, state), state, improved)
            print(
                f"epoch {epoch}/{config.epochs}: train loss {row.train_loss:.4f} acc {100 * row.train_acc:.2f}% | "
                f"valid loss {row.valid_loss:.4f} acc {100 * row.valid_acc:.2f}% | "
                f"{format_seconds(row.seconds)} at {row.images_per_s:,.0f} img/s",
                flush=True,
            )
        finish(trainee, datasets, state, fit_calibration=not config.train_on_valid)
        info = RunInfo.describe(config, data, state)
        writer.save_final(info)
    print(f"eval accuracy: {accuracy_summary(config, state)}; saved to {config.out}/")
    return info


def resume(trainee: Trainee, config: Config) -> RunState:
    """Continue the run saved in ``config.out``: its weights and checked optimizer state into ``trainee``."""
    resumed = rundir.resume(Path(config.out), config)
    checkpoint.fit_state(trainee.model, resumed.weights, Path(config.out) / rundir.LAST_WEIGHTS)
    checkpoint.set_optimizer_state(
        trainee.model,
        trainee.optimizer,
        resumed.optimizer,
        resumed.optimizer_file,
        scheduler=trainee.scheduler,
        steps_done=resumed.state.epoch * trainee.steps_per_epoch,
    )
    return resumed.state


def accuracy_summary(config: Config, state: RunState) -> str:
    """Eval accuracy of the best-validation and the last weights; one figure when valid was trained on."""
    last = f"{100 * state.metrics.eval_acc_last:.2f}% (last epoch {state.epoch})"
    if config.train_on_valid:
        return f"{last}, the kept one: valid was trained on"
    return f"{100 * state.metrics.eval_acc:.2f}% (best valid epoch {state.best_epoch}), {last}"


def load_training_data(config: Config):
    """(the data, its three datasets) with the loss's label dtype; every split must hold images.  Under
    ``--cut-digits`` the train split also holds ``CUT_DIGITS`` as many digits cut out of touching numbers."""
    data, datasets = load_datasets(
        config.data,
        dataset=config.dataset,
        label_dtype=losses.LOSSES[config.loss].label_dtype,
        limit_train=config.limit_train,
        train_on_valid=config.train_on_valid,
    )
    for name, dataset in datasets.items():
        if not len(dataset):
            raise UserError(f"{data.source}: the {name} split holds no images; training needs all three")
    if config.cut_digits:  # made from the seed, so a resumed run trains on the very same
        train = datasets["train"]
        made = touching.cut_digits(train.pixels, train.class_ids, round(CUT_DIGITS * len(train)), config.seed)
        datasets["train"] = train.extended(*made)
    return data, datasets


def with_running_processes(config: Config) -> Config:
    """``config`` with the number of processes really running: one started by Paddle's launcher without
    ``--nproc`` takes the launcher's count; any other mismatch is refused, since the count is part of
    the recipe (BatchNorm) and ``mnist.json`` must say how the run was made."""
    running = parallel.world_size()
    if config.nproc == running:
        return config
    if config.nproc == 1:
        return replace(config, nproc=running)
    raise UserError(
        f"the recipe trains on {config.nproc} data-parallel processes but {running} run here: "
        f"start it with paddle-mnist train --nproc {config.nproc}, or ask for --nproc {running}"
    )


def announce(config: Config, data, train: MnistDataset, trainee: Trainee, device: str, state: RunState) -> None:
    print(f"trained on {data.source} (found via {data.origin})")
    smoothing = f" (label smoothing {config.label_smoothing:g})" if config.label_smoothing else ""
    print(
        f"training {config.model} ({models.parameter_count(trainee.model):,} parameters) with {trainee.loss.name}{smoothing} on "
        f"{len(train):,} {config.dataset} images ({train.mode}), {config.optimizer} lr {config.lr}, "
        f"batch {config.batch_size}, {config.epochs} epochs on {device}"
        + (f" x{config.nproc} processes" if config.nproc > 1 else "")
        + (f", resuming after epoch {state.epoch}" if state.epoch else "")
    )


def finish(trainee: Trainee, datasets: dict[str, MnistDataset], state: RunState, fit_calibration: bool) -> None:
    """Eval-split accuracy of the last and the best weights, into ``state.metrics``; scored once when the
    best epoch is the last (always under ``--train-on-valid``).  Then, with the best weights, the
    temperature and the "not a digit" threshold fitted on the valid split (``calibration``), and the eval
    split's calibration error before and after; not when valid was trained on (no held-out digits)."""
    evaluation = datasets["eval"]
    last = best = evaluate(trainee.model, trainee.loss, evaluation)
    if state.best_epoch != state.epoch:
        trainee.model.set_state_dict(state.best_state)
        best = evaluate(trainee.model, trainee.loss, evaluation)
    state.metrics = replace(
        state.metrics,
        eval_acc_last=last.acc,
        eval_acc=best.acc,
        eval_loss=best.loss,
        confusion=confusion_matrix(evaluation.class_ids, best.digits).tolist(),
    )
    if fit_calibration:
        valid = evaluate(trainee.model, trainee.loss, datasets["valid"])
        state.calibration = calibration.fit(trainee.loss.logits(valid.outputs), datasets["valid"].class_ids)
        logits = trainee.loss.logits(best.outputs)
        state.metrics.ece = calibration.ece(calibration.softmax(logits), evaluation.class_ids)
        state.metrics.ece_calibrated = calibration.ece(state.calibration.probabilities(logits), evaluation.class_ids)
