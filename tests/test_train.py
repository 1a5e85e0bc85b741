"""The trainer on a tiny learnable data set: outputs, resume equivalence, the NaN guard, atomic saves."""

from __future__ import annotations

import csv
import json
import os
import re

import numpy as np
import pytest

from paddle_mnist import checkpoint, models, rundir, train, trainer
from paddle_mnist.config import Config, recipe_of
from paddle_mnist.errors import UserError

from fixtures import interrupt_at, run_python, train_cli


def run(data_file, out, *flags):
    return train_cli("--data", data_file, "--out", out, "--model", "mlp", "--batch-size", "50", *flags)


@pytest.mark.curves
def test_tiny_run_learns_and_writes_every_file(data_file, tmp_path):
    meta = run(data_file, tmp_path / "out", "--epochs", "3", "--lr", "0.05")
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {
        "epoch-0003.pdparams",
        "epoch-0003.pdopt",
        "best-0003.pdparams",
        "mnist.pdparams",
        "mnist.pdopt",
        "best.pdparams",
        "mnist.json",
        "history.csv",
        "curves.png",
        ".lock",
    }
    for alias, committed in (("mnist.pdparams", "epoch-0003.pdparams"), ("best.pdparams", "best-0003.pdparams")):
        assert os.path.samefile(out / alias, out / committed), "the tutorial's names are the committed files"
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert meta.metrics.eval_acc > 0.9
    saved = json.loads((out / "mnist.json").read_text())
    assert (saved["model"], saved["loss"], saved["outputs"], saved["epochs_done"]) == ("mlp", "cross_entropy", 10, 3)
    assert saved["normalization"]["name"] == "pixel/256" and saved["classes"][7] == "7"
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert oct((out / "mnist.pdparams").stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_mse_switches_head_and_labels(data_file, tmp_path):
    meta = run(data_file, tmp_path / "out", "--loss", "mse", "--epochs", "1", "--lr", "0.001")
    assert (meta.head_size, meta.label_dtype) == (1, "float32")
    state = checkpoint.load_state(tmp_path / "out" / "mnist.pdparams")
    assert state["body.4.weight"].shape == (128, 1)


def weights(out):
    return checkpoint.load_state(out / "mnist.pdparams")


@pytest.mark.parametrize(
    "recipe",
    [
        ["--model", "cnn", "--optimizer", "sgd"],
        ["--optimizer", "momentum", "--schedule", "cosine", "--augment", "--weight-decay", "1e-4"],
        ["--optimizer", "adam", "--distort"],
        # BatchNorm (its running statistics are part of the weights), Adam's moments, a per-step schedule, both
        # augmentations: what every preset uses
        [
            "--model",
            "convnet",
            "--optimizer",
            "adam",
            "--schedule",
            "onecycle",
            "--augment",
            "--distort",
            "--lr",
            "0.003",
        ],
        # non-digits in every batch, augmented too: the pool and its order come from the seed
        ["--outliers", "--augment"],
        # the course's: Adagrad's sums, a chosen activation, L2 regularisation, the course code's loss
        [
            "--model",
            "mlp1",
            "--activation",
            "sigmoid",
            "--optimizer",
            "adagrad",
            "--weight-decay",
            "5e-4",
            "--loss",
            "softmax_twice",
        ],
    ],
    ids=[
        "cnn sgd",
        "mlp momentum cosine augment",
        "mlp adam distort",
        "convnet adam onecycle augment distort",
        "mlp outliers augment",
        "mlp1 sigmoid adagrad l2 softmax_twice",
    ],
)
def test_resume_after_interruption_matches_an_uninterrupted_run(data_file, tmp_path, monkeypatch, recipe):
    flags = ["--epochs", "3", "--lr", "0.02", "--seed", "7", *recipe]
    monkeypatch.setattr(trainer, "OUTLIER_POOL", 120)  # a small pool: made in 0.3 s, not 20
    run(data_file, tmp_path / "straight", *flags)

    with monkeypatch.context() as patch:
        interrupt_at(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            run(data_file, tmp_path / "resumed", *flags)
    assert json.loads((tmp_path / "resumed" / "mnist.json").read_text())["epochs_done"] == 1
    meta = run(data_file, tmp_path / "resumed", *flags, "--resume")

    for kind in ("mnist.pdparams", "mnist.pdopt"):  # weights with BatchNorm statistics, the optimizer's whole state
        straight, resumed = (checkpoint.load_state(tmp_path / run_dir / kind) for run_dir in ("straight", "resumed"))
        assert straight.keys() == resumed.keys()
        for name in straight:
            np.testing.assert_array_equal(straight[name], resumed[name], err_msg=f"{kind}: {name}")
    straight_history = json.loads((tmp_path / "straight" / "mnist.json").read_text())["history"]
    assert [row.epoch for row in meta.history] == [1, 2, 3]
    assert [
        {k: v for k, v in row.items() if k not in ("seconds", "images_per_s")}
        for row in map(rundir.EpochRow.to_json, meta.history)
    ] == [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in straight_history]


def test_resume_refuses_a_different_run(data_file, tmp_path):
    run(data_file, tmp_path / "out", "--epochs", "1")
    with pytest.raises(UserError, match="cannot resume: the saved run differs in lr"):
        run(data_file, tmp_path / "out", "--epochs", "2", "--lr", "0.5", "--resume")
    with pytest.raises(UserError, match="cannot resume: the saved run differs in label_smoothing"):
        run(data_file, tmp_path / "out", "--epochs", "2", "--label-smoothing", "0.1", "--resume")
    (tmp_path / "out" / "epoch-0001.pdopt").write_bytes(b"torn")
    with pytest.raises(UserError, match="epoch-0001.pdopt: does not match the hash its run's metadata records"):
        run(data_file, tmp_path / "out", "--epochs", "2", "--resume")


def test_training_on_valid_uses_both_splits_and_keeps_the_last_epoch(data_file, tmp_path, capsys):
    meta = run(data_file, tmp_path / "out", "--epochs", "2", "--lr", "0.05", "--train-on-valid")
    printed = capsys.readouterr().out
    assert (
        "on 400 mnist images (train+valid)" in printed
        and "(last epoch 2), the kept one: valid was trained on" in printed
    )
    assert meta.best_epoch == 2 and meta.config["train_on_valid"] is True
    with pytest.raises(UserError, match="cannot resume: the saved run differs in train_on_valid"):
        run(data_file, tmp_path / "out", "--epochs", "2", "--lr", "0.05", "--resume")


def test_best_epoch_is_the_last_when_valid_was_trained_on():
    by_valid, last = rundir.RunState(), rundir.RunState()
    for epoch, acc in enumerate([0.9, 0.95, 0.93], 1):
        row = rundir.EpochRow(epoch, 0.5, 0.8, 1 - acc, acc, 1.0, 100.0)
        by_valid.record(row)
        last.record(row, by_valid=False)
    assert (by_valid.best_epoch, last.best_epoch) == (2, 3)


@pytest.mark.parametrize("poison", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data_file, tmp_path, monkeypatch, capsys, poison):
    out = tmp_path / "out"
    run(data_file, out, "--epochs", "1")
    before = (out / "mnist.pdparams").read_bytes(), (out / "mnist.json").read_bytes()
    real_epoch = trainer.train_epoch

    def poisoned(trainee, *rest):
        loss = trainee.loss
        trainee.loss = lambda o, y: loss(o, y) * poison
        trainee.loss.digits = loss.digits
        return real_epoch(trainee, *rest)

    monkeypatch.setattr(trainer, "train_epoch", poisoned)
    capsys.readouterr()
    code = train.main(
        [
            "--data",
            str(data_file),
            "--out",
            str(out),
            "--model",
            "mlp",
            "--batch-size",
            "50",
            "--epochs",
            "2",
            "--resume",
        ]
    )
    assert code == 1
    assert capsys.readouterr().err == (
        f"paddle-mnist train: error: loss became {poison} at epoch 2, batch 1; stopped, the last good checkpoint is "
        f"untouched (epoch 1 in {out / 'mnist.pdparams'}); try a lower --lr\n"
    )
    assert ((out / "mnist.pdparams").read_bytes(), (out / "mnist.json").read_bytes()) == before


def test_failure_mid_write_leaves_the_old_file(tmp_path, monkeypatch):
    run = tmp_path / "run"  # a directory of its own: the first paddle import of a process writes under $HOME
    run.mkdir()
    target = run / "mnist.pdparams"
    checkpoint.save_state(target, {"w": np.ones(3, np.float32)})
    old = target.read_bytes()

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_state(target, {"w": np.zeros(300, np.float32)})
    assert target.read_bytes() == old
    assert [p.name for p in run.iterdir()] == ["mnist.pdparams"], "no temp file may be left behind"


def test_bad_flags_are_one_line_errors(data_file, capsys):
    with pytest.raises(SystemExit) as stop:
        train.main(["--data", str(data_file), "--epochs", "0"])
    assert stop.value.code == 2
    assert (
        capsys.readouterr().err.strip().splitlines()[-1]
        == "paddle-mnist train: error: argument --epochs: must be at least 1, got 0"
    )


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("epochs", 0, "epochs must be an integer of at least 1, got 0"),
        ("batch_size", 2.5, "batch_size must be an integer of at least 1, got 2.5"),
        ("seed", -1, "seed must be an integer in 0..4294967295, got -1"),
        ("lr", float("nan"), "lr must be a positive number, got nan"),
        ("model", "alexnet", "unknown model 'alexnet': choose linear, course_mlp, mlp1, mlp, cnn"),
        ("loss", "hinge", "unknown loss 'hinge'"),
        ("label_smoothing", 1.0, "label_smoothing must be a number in [0, 1), got 1.0"),
    ],
)
def test_config_validates_itself_for_the_python_api(field, value, message):
    with pytest.raises(UserError, match=re.escape(message)):
        Config(**{field: value})


def test_label_smoothing_needs_the_cross_entropy_loss_and_reaches_it():
    with pytest.raises(UserError, match="label smoothing applies to the cross_entropy loss, not mse"):
        Config(loss="mse", label_smoothing=0.1)
    trainee = trainer.build_trainee(Config(model="linear", label_smoothing=0.1), train_size=100)
    assert trainee.loss.smoothing == 0.1, "the recipe's smoothing must reach the training loss"


def test_presets_override_the_tutorial_defaults_and_flags_override_presets():
    assert Config.from_preset("tutorial") == Config()
    fast = Config.from_preset("fast", epochs=2)
    assert (fast.model, fast.optimizer, fast.epochs, fast.loss) == ("vgg", "adam", 2, "cross_entropy")
    assert fast.outliers and fast.augment and not Config.from_preset("fast", outliers=False).outliers


def test_parsing_flags_builds_no_network(monkeypatch):
    """The models table in --help constructs every network; an ordinary run must not pay for it."""
    from paddle_mnist import models

    monkeypatch.setattr(models, "parameter_count", lambda model: pytest.fail("a network was built for --help"))
    train.build_parser().parse_args(["--epochs", "1"])


def test_distortion_is_reproducible_and_keeps_the_background_blank():
    import paddle

    from paddle_mnist import augment

    pixels = np.zeros((4, 1, 28, 28), np.float32)
    pixels[:, :, 6:22, 12:16] = 1.0
    for background in (0.0, -1.0):  # pixel/256 and [-1,1] encodings
        images = paddle.to_tensor(pixels * (1 - background) + background)
        first = augment.apply_distortion(images, *augment.draw_distortion(np.random.default_rng(3), 4), background)
        again = augment.apply_distortion(images, *augment.draw_distortion(np.random.default_rng(3), 4), background)
        np.testing.assert_array_equal(first.numpy(), again.numpy())
        assert not np.allclose(first.numpy(), images.numpy()), "the digits are distorted"
        assert np.allclose(first.numpy()[:, :, :2, :2], background), "a shifted-in border is blank, not black"


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adagrad", "adam"])
@pytest.mark.parametrize("network", ["mlp", "convnet"])  # convnet: BatchNorm's statistics get no accumulators
def test_the_accumulator_table_is_what_paddle_saves(optimizer, network):
    """``checkpoint.ACCUMULATORS`` says what each optimizer keeps per parameter; after one step of each, paddle's
    own state has exactly those keys, shapes and dtypes (a paddle upgrade that renames them fails here)."""
    import paddle

    from paddle_mnist import checkpoint, models

    config = Config(model=network, optimizer=optimizer, schedule="onecycle", lr=0.01, epochs=2)
    model = models.build(network, 10)
    opt, scheduler = trainer.make_optimizer(config, model, 5)
    model(paddle.randn([2, 1, 28, 28])).mean().backward()
    opt.step()
    scheduler.step()
    state = checkpoint.optimizer_state(model, opt)
    saved = {k: v.numpy() for k, v in state.items() if k != checkpoint.SCHEDULER_KEY}
    checkpoint.check_optimizer_state(
        {**saved, "LR_Scheduler": state["LR_Scheduler"]}, model, opt, "x", scheduler=scheduler, steps_done=1
    )
    trainable = [p for p in model.parameters() if p.trainable]
    assert len(saved) == len(trainable) * len(checkpoint.ACCUMULATORS[type(opt).__name__])


def test_momentum_is_paddles_and_a_run_saved_before_nesterov_had_its_name_keeps_it(tiny_run, tmp_path):
    """``momentum`` is paddle's ``Momentum`` as the course uses it, ``nesterov`` the look-ahead one; a run whose
    ``mnist.json`` (format 2 or older) says ``momentum`` trained with Nesterov's, is read so, and resumes only
    as ``nesterov``."""
    model = models.build("mlp", 10)
    for name, look_ahead in (("momentum", False), ("nesterov", True)):
        opt, _ = trainer.make_optimizer(Config(model="mlp", optimizer=name), model, 5)
        assert type(opt).__name__ == "Momentum" and opt._use_nesterov is look_ahead, name
    meta = json.loads((tiny_run / rundir.METADATA).read_text())
    for version, read_as in ((2, "nesterov"), (3, "momentum")):
        run = tmp_path / f"format{version}"
        run.mkdir()
        saved = {**meta, "format": version, "config": {**meta["config"], "optimizer": "momentum"}}
        (run / rundir.METADATA).write_text(json.dumps(saved))
        info = rundir.read(run)
        assert info.config["optimizer"] == read_as, version
        for name in ("momentum", "nesterov"):
            changes = rundir.recipe_changes(info, Config(**{**recipe_of(info.config), "optimizer": name}))
            assert ("optimizer" in changes) is (name != read_as), (version, name, changes)


def test_only_importing_paddle_through_the_package_sets_mkls_variable():
    """``import paddle_mnist`` leaves the environment alone; paddle's import through the package sets
    ``MKL_DEBUG_CPU_TYPE=5`` when unset, and keeps a caller's value, even an empty one."""

    code = """import os, sys
import paddle_mnist, paddle_mnist.preprocess
print(os.environ.get("MKL_DEBUG_CPU_TYPE", "unset"), "paddle" in sys.modules)
from paddle_mnist._paddle import paddle
print(repr(os.environ.get("MKL_DEBUG_CPU_TYPE", "unset")))
"""
    env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    for given, expected in ((None, "'5'"), ("", "''"), ("2", "'2'")):
        run_env = env if given is None else {**env, "MKL_DEBUG_CPU_TYPE": given}
        result = run_python("-c", code, timeout=120, env=run_env)
        assert result.returncode == 0, result.stderr[-2000:]
        first, second = result.stdout.split("\n")[:2]
        assert first == f"{given if given is not None else 'unset'} False", (given, result.stdout)
        assert second == expected, (given, result.stdout)


def test_the_package_leaves_the_callers_matplotlib_and_warnings_alone(tmp_path):
    """Importing the package and training a run (which writes curves.png) in a fresh interpreter: the
    caller's matplotlib backend and warning filters are what they were (a notebook keeps its inline backend)."""

    from paddle_mnist.testing.data_files import json_payload, learnable_splits, write_json

    data = write_json(tmp_path / "learnable.json.gz", json_payload(learnable_splits()))
    code = f"""
import warnings, matplotlib
matplotlib.use("svg")
warnings.simplefilter("default")
before = (matplotlib.get_backend(), list(warnings.filters))
import paddle_mnist
from paddle_mnist import config, train
train.fit(config.Config(data={str(data)!r}, model="convnet", epochs=1, batch_size=100, out={str(tmp_path / "run")!r}))
after = (matplotlib.get_backend(), list(warnings.filters))
print(before == after, before[0], after[0], len(before[1]), len(after[1]))
"""
    result = run_python("-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-5:] == ["True", "svg", "svg", *result.stdout.split()[-2:]], result.stdout
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "track global mean" not in result.stderr and "ccache" not in result.stderr, result.stderr[-2000:]
