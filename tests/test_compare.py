"""The comparison on a tiny subset: every output file, and only the varied knob differs between runs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from paddle_mnist import compare, trainer


@pytest.fixture
def recorded(monkeypatch):
    """Each run's initial weights, epoch-1 data order and first batch, captured as the trainer starts the epoch."""
    runs = []
    real_epoch, real_order, real_step = trainer.train_epoch, trainer.epoch_order, trainer.train_step

    def epoch(trainee, dataset, config, number):
        runs.append({"loss": config.loss, "init": {k: v.numpy().copy() for k, v in trainee.model.state_dict().items()}})
        return real_epoch(trainee, dataset, config, number)

    def order(seed, number, n):
        result = real_order(seed, number, n)
        runs[-1]["order"] = result
        return result

    def step(trainee, x, y, *rest):
        runs[-1].setdefault("first_batch", (x.numpy().copy(), y.numpy().copy()))
        return real_step(trainee, x, y, *rest)

    monkeypatch.setattr(trainer, "train_epoch", epoch)
    monkeypatch.setattr(trainer, "epoch_order", order)
    monkeypatch.setattr(trainer, "train_step", step)
    return runs


def test_tiny_comparison(tmp_path, recorded, monkeypatch, capsys, data_file):
    out = tmp_path / "cmp"
    argv = [
        "--losses",
        "mse_onehot",
        "cross_entropy",
        "--epochs",
        "1",
        "--seeds",
        "0",
        "--data",
        str(data_file),
        "--limit-train",
        "200",
        "--lr",
        "0.05",
        "--batch-size",
        "50",
        "--out",
        str(out),
    ]
    assert compare.main(argv) == 0

    names = {p.name for p in out.iterdir()}
    assert {
        "results.csv",
        "results.json",
        "summary.md",
        "accuracy.png",
        "loss.png",
        "confusion_mse_onehot.png",
        "confusion_cross_entropy.png",
        "misread_mse_onehot.png",
        "misread_cross_entropy.png",
    } <= names
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["loss"], r["epoch"]) for r in rows] == [("mse_onehot", "1"), ("cross_entropy", "1")]
    results = json.loads((out / "results.json").read_text())
    assert results["knob"] == "loss" and {r["value"] for r in results["runs"]} == {"mse_onehot", "cross_entropy"}
    assert all(len(r["eval_acc"]) == 1 and np.array(r["confusion"]).sum() == 100 for r in results["runs"])
    for r in results["runs"]:  # the grid shows exactly the digits the confusion matrix counts as misread
        confusion = np.array(r["confusion"])
        wrong = compare.misread(out / "runs" / f"{r['value']}-seed{r['seed']}", str(data_file))
        assert len(wrong) == confusion.sum() - np.trace(confusion)
        assert all(confusion[true, read] > 0 and true != read for _, true, read in wrong)
    summary = (out / "summary.md").read_text()
    assert "| cross_entropy |" in summary and "reaches the highest eval accuracy" in summary
    assert summary.startswith("Varied: **loss** (mse_onehot, cross_entropy). The same for every run: model cnn,")
    assert "reaches the highest eval accuracy" in capsys.readouterr().out

    first, second = recorded
    assert (first["loss"], second["loss"]) == ("mse_onehot", "cross_entropy")
    np.testing.assert_array_equal(first["order"], second["order"])
    for name, value in first["init"].items():  # same heads here too: both losses have 10 outputs
        np.testing.assert_array_equal(value, second["init"][name], err_msg=name)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must be reused, not retrained")

    monkeypatch.setattr(trainer, "fit", no_training)
    assert compare.main(argv) == 0
    monkeypatch.undo()
    assert compare.main(argv + ["--force"]) == 0


def test_regression_head_shares_the_other_layers_initial_weights(tmp_path, recorded, data_file):
    argv = [
        "--losses",
        "mse",
        "cross_entropy",
        "--epochs",
        "1",
        "--seeds",
        "3",
        "--data",
        str(data_file),
        "--limit-train",
        "100",
        "--lr",
        "0.001",
        "--batch-size",
        "50",
        "--out",
        str(tmp_path / "cmp"),
    ]
    assert compare.main(argv) == 0
    mse, ce = recorded
    for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
        np.testing.assert_array_equal(mse["init"][name], ce["init"][name], err_msg=name)
    assert mse["init"]["fc.weight"].shape == (980, 1) and ce["init"]["fc.weight"].shape == (980, 10)


def test_an_interrupted_run_survives_a_failed_resume(tmp_path, data_file, monkeypatch):
    """An interrupted run whose resume fails for another reason (here: the data is gone) is left as it is;
    only a run of other settings is trained afresh over."""
    from paddle_mnist import rundir
    from paddle_mnist.config import Config
    from paddle_mnist.errors import UserError

    config = Config(data=str(data_file), model="mlp", batch_size=50, epochs=2, out=str(tmp_path / "run"))
    from fixtures import interrupt_at

    with monkeypatch.context() as patch:
        interrupt_at(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            compare.train_or_reuse(config, force=False)
    saved = (tmp_path / "run" / rundir.METADATA).read_bytes()
    from dataclasses import replace

    with pytest.raises(UserError, match="nowhere.json.gz"):
        compare.train_or_reuse(replace(config, data=str(tmp_path / "nowhere.json.gz")), force=False)
    assert (tmp_path / "run" / rundir.METADATA).read_bytes() == saved, "the interrupted run is still there"
    info, reused = compare.train_or_reuse(config, force=False)  # resumed, not retrained
    assert (info.epochs_done, reused) == (2, False) and [row.epoch for row in info.history] == [1, 2]
    other, _ = compare.train_or_reuse(replace(config, lr=0.05), force=False)  # other settings: afresh
    assert other.config["lr"] == 0.05 and other.epochs_done == 2


def tiny(data_file, out, *flags):
    """A comparison of one seed, one epoch on 100 images, of mlp unless the network is what varies."""
    network = [] if "model" in flags else ["--model", "mlp"]
    return [
        *flags,
        *network,
        *("--epochs", "1", "--seeds", "0", "--data", str(data_file), "--limit-train", "100"),
        *("--batch-size", "50", "--out", str(out)),
    ]


def test_varying_the_learning_rate_changes_nothing_else(tmp_path, recorded, data_file):
    """Runs that differ in a knob start from the same weights and see the same first batch; the tables and
    files are named by the knob and its values."""
    out = tmp_path / "cmp"
    assert compare.main(tiny(data_file, out, "--vary", "lr", "0.05", "0.2", "0.05")) == 0  # a repeat is dropped
    first, second = recorded
    np.testing.assert_array_equal(first["order"], second["order"])
    for a, b in zip(first["first_batch"], second["first_batch"]):
        np.testing.assert_array_equal(a, b)
    assert first["init"].keys() == second["init"].keys()
    for name, value in first["init"].items():
        np.testing.assert_array_equal(value, second["init"][name], err_msg=name)

    assert sorted(p.name for p in (out / "runs").iterdir()) == ["0.05-seed0", "0.2-seed0"]
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["lr"] for r in rows] == ["0.05", "0.2"]
    assert {"confusion_0.05.png", "misread_0.2.png", "accuracy.png", "loss.png"} <= {p.name for p in out.iterdir()}
    summary = (out / "summary.md").read_text()
    assert summary.startswith("Varied: **lr** (0.05, 0.2). The same for every run: model mlp, loss cross_entropy, ")
    assert "| lr | eval accuracy (%) mean ± std |" in summary and "| 0.2 |" in summary
    assert "optimizer sgd" in summary.splitlines()[0] and " lr " not in summary.splitlines()[0]


def test_varying_the_network_shares_the_layers_the_networks_share(tmp_path, recorded, data_file):
    """mlp1's one hidden layer has the shape of mlp's first: both start from the same weights there."""
    assert compare.main(tiny(data_file, tmp_path / "cmp", "--vary", "model", "mlp", "mlp1")) == 0
    mlp, mlp1 = recorded
    for name in ("body.0.weight", "body.0.bias"):
        np.testing.assert_array_equal(mlp["init"][name], mlp1["init"][name], err_msg=name)
    assert mlp["init"]["body.2.weight"].shape == (256, 128) and mlp1["init"]["body.2.weight"].shape == (256, 10)
    np.testing.assert_array_equal(mlp["first_batch"][0], mlp1["first_batch"][0])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--vary", "lr", "fast"], "--vary lr: expected a number, got 'fast'"),
        (["--vary", "momentum", "0.9"], "--vary: unknown knob 'momentum': choose loss, optimizer, lr, "),
        (["--vary", "batch-size"], "--vary batch-size: give the values to compare"),
        (["--vary", "augment", "maybe"], "--vary augment: expected on or off, got 'maybe'"),
        (["--vary", "lr", "0.1", "0.1000001"], "--vary lr: two values print as the same name (0.1, 0.1)"),
        (["--lr", "0.1", "--vary", "lr", "0.1", "0.2"], "--lr sets lr, which --vary lr varies: give its values once"),
        (["--vary", "activation", "sigmoid", "tanh", "--model", "cnn"], "--activation applies to the feed-forward"),
        (
            ["--vary", "optimizer", "sgd", "lbfgs"],
            "--vary optimizer: expected one of sgd, momentum, nesterov, adagrad, adam",
        ),
    ],
)
def test_a_bad_variation_is_one_line_before_anything_trains(tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.setattr(trainer, "fit", lambda config: pytest.fail("nothing may train"))
    assert compare.main([*flags, "--out", str(tmp_path / "cmp")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("paddle-mnist compare: error: ") and message in err and err.count("\n") == 1


def test_losses_and_vary_are_one_choice(capsys):
    with pytest.raises(SystemExit):
        compare.build_parser().parse_args(["--losses", "mse", "--vary", "lr", "0.1"])
    assert "not allowed with argument" in capsys.readouterr().err
