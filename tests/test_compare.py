"""The loss comparison on a tiny subset: every output file, and only the loss differs between runs."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from paddle_mnist import compare, train


@pytest.fixture
def recorded(monkeypatch):
    """Each run's initial weights and epoch-1 data order, captured as the trainer starts the epoch."""
    runs = []
    real_epoch, real_order = train.train_epoch, train.epoch_order

    def epoch(trainee, dataset, config, number):
        runs.append({"loss": config.loss, "init": {k: v.numpy().copy() for k, v in trainee.model.state_dict().items()}})
        return real_epoch(trainee, dataset, config, number)

    def order(seed, number, n):
        result = real_order(seed, number, n)
        runs[-1]["order"] = result
        return result
    monkeypatch.setattr(train, "train_epoch", epoch)
    monkeypatch.setattr(train, "epoch_order", order)
    return runs


def test_tiny_comparison(tmp_path, recorded, monkeypatch, capsys, data_file):
    out = tmp_path / "cmp"
    argv = ["--losses", "mse_onehot", "cross_entropy", "--epochs", "1", "--seeds", "0", "--data", str(data_file),
            "--limit-train", "200", "--lr", "0.05", "--batch-size", "50", "--out", str(out)]
    assert compare.main(argv) == 0

    names = {p.name for p in out.iterdir()}
    assert {"results.csv", "results.json", "summary.md", "accuracy.png", "loss.png",
            "confusion_mse_onehot.png", "confusion_cross_entropy.png"} <= names
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["loss"], r["epoch"]) for r in rows] == [("mse_onehot", "1"), ("cross_entropy", "1")]
    results = json.loads((out / "results.json").read_text())
    assert {r["loss"] for r in results["runs"]} == {"mse_onehot", "cross_entropy"}
    assert all(len(r["eval_acc"]) == 1 and np.array(r["confusion"]).sum() == 100 for r in results["runs"])
    summary = (out / "summary.md").read_text()
    assert "| cross_entropy |" in summary and "reaches the highest eval accuracy" in summary
    assert "reaches the highest eval accuracy" in capsys.readouterr().out

    first, second = recorded
    assert (first["loss"], second["loss"]) == ("mse_onehot", "cross_entropy")
    np.testing.assert_array_equal(first["order"], second["order"])
    for name, value in first["init"].items():  # same heads here too: both losses have 10 outputs
        np.testing.assert_array_equal(value, second["init"][name], err_msg=name)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must be reused, not retrained")
    monkeypatch.setattr(train, "fit", no_training)
    assert compare.main(argv) == 0
    monkeypatch.undo()
    assert compare.main(argv + ["--force"]) == 0


def test_regression_head_shares_the_other_layers_initial_weights(tmp_path, recorded, data_file):
    argv = ["--losses", "mse", "cross_entropy", "--epochs", "1", "--seeds", "3", "--data", str(data_file),
            "--limit-train", "100", "--lr", "0.001", "--batch-size", "50", "--out", str(tmp_path / "cmp")]
    assert compare.main(argv) == 0
    mse, ce = recorded
    for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
        np.testing.assert_array_equal(mse["init"][name], ce["init"][name], err_msg=name)
    assert mse["init"]["fc.weight"].shape == (980, 1) and ce["init"]["fc.weight"].shape == (980, 10)
