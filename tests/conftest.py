"""Every test runs in a temp working dir with a private cache and downloads off.

Integration tests use the real files in ../shared/data, optional modules (the serve and ONNX extras)
and Debian programs (Chromium); outside CI a test skips when what it needs is absent, under CI
(CI=true or 1) that absence fails it: one helper, ``missing``, for data, modules and programs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from paddle_mnist.config import Config

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    for name in ("PADDLE_MNIST_DATA", "PADDLE_MNIST_FASHION_DATA", "PADDLE_MNIST_MIRRORS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PADDLE_MNIST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PADDLE_MNIST_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def in_ci() -> bool:
    """CI sets CI=true (``.ci/run`` exports it too); only "true" and "1" count, so CI=false is a laptop."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def missing(what: str, how: str):
    """Skip a test whose ``what`` is absent; under CI, which provides everything (``how``), fail it."""
    if in_ci():
        pytest.fail(f"{what} is missing: CI provides it ({how})")
    pytest.skip(f"{what} is not available ({how})", allow_module_level=True)


def require(path: Path) -> Path:
    """``path``, or a skip (a failure in CI, which provides it)."""
    if not path.exists():
        missing(str(path), "../shared/data, Debian's dataset-fashion-mnist")
    return path


def require_module(name: str):
    """The module ``name``, or a skip (a failure in CI, whose test extra installs it)."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        missing(f"the module {name} ({e})", "pip install -e '.[test]'")


def require_programs(*paths: Path) -> None:
    """Each program, or a skip (a failure in CI, which installs them with apt)."""
    absent = [str(p) for p in paths if not Path(p).exists()]
    if absent:
        missing(" and ".join(absent), "Debian packages that .ci/run installs")


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One cache dir for the whole session, so the real JSON is parsed once."""
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture
def shared_json(shared_cache, monkeypatch) -> Path:
    monkeypatch.setenv("PADDLE_MNIST_CACHE", str(shared_cache))
    return require(SHARED / "mnist.json.gz")


@pytest.fixture
def shared_idx(shared_cache, monkeypatch) -> Path:
    monkeypatch.setenv("PADDLE_MNIST_CACHE", str(shared_cache))
    return require(SHARED / "mnist-idx")


@pytest.fixture
def debian_fashion() -> Path:
    from paddle_mnist.data import locate

    return require(locate.DEBIAN_FASHION_DIR)


@pytest.fixture(scope="session")
def shared_eval(shared_cache):
    """The real eval split, read through the session's cache: a fixture or test of any scope that needs it
    parses the 339 MB of JSON at most once a session (each cold parse costs ~10 s and 600 MB)."""
    from paddle_mnist.data import MnistDataset

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PADDLE_MNIST_CACHE", str(shared_cache))
        return MnistDataset("eval", require(SHARED / "mnist.json.gz"))


@pytest.fixture(autouse=True)
def no_curves(request, monkeypatch):
    """Every save renders curves.png (~500 figures in a run of the suite); tests that do not look at it skip the
    drawing: mark a test ``@pytest.mark.curves`` to keep it.  Trainers in subprocesses still draw."""
    if "curves" not in request.keywords:
        from paddle_mnist import plots

        monkeypatch.setattr(plots, "training_curves", lambda history, path, title: None)


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, shared_cache) -> Path:
    """The `fast` recipe (augmented, with outlier exposure and cut digits) trained briefly: 2 epochs on 10,000 real
    MNIST images (~97 %) and 2,000 digits cut out of touching ones, beside 3,000 non-digits (not the recipe's
    10,000: 9 s to make, not 30), once per session; on quick's convnet rather than the recipe's vgg, which would
    cost the suite 1.6x the multiply-adds for the same plumbing."""
    from paddle_mnist import train, trainer

    data = require(SHARED / "mnist.json.gz")
    out = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PADDLE_MNIST_CACHE", str(shared_cache))
        mp.setattr(trainer, "OUTLIER_POOL", 3000)
        train.fit(
            Config.from_preset("fast", model="convnet", data=str(data), epochs=2, limit_train=10_000, out=str(out))
        )
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One quick mlp on the learnable synthetic set per test module, for tests that copy it before changing it."""
    from paddle_mnist import trainer
    from paddle_mnist.testing.data_files import json_payload, learnable_splits, write_json

    work = tmp_path_factory.mktemp("tiny-run")
    data = write_json(work / "learnable.json.gz", json_payload(learnable_splits()))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PADDLE_MNIST_CACHE", str(work / "cache"))
        mp.setenv("PADDLE_MNIST_OFFLINE", "1")
        trainer.fit(Config(data=str(data), model="mlp", lr=0.05, batch_size=50, epochs=1, out=str(work / "run")))
    return work / "run"


@pytest.fixture
def tiny_model_dir(tmp_path, data_file):
    """A quick mlp on the learnable synthetic set: enough to exercise the predictor's plumbing."""
    from paddle_mnist import train

    def make(loss="cross_entropy"):
        out = tmp_path / f"model-{loss}"
        train.fit(
            Config(
                data=str(data_file),
                model="mlp",
                loss=loss,
                lr=0.05 if loss != "mse" else 0.001,
                batch_size=50,
                epochs=1,
                out=str(out),
            )
        )
        return out

    return make


@pytest.fixture
def data_file(tmp_path) -> Path:
    """The learnable synthetic set (300 / 100 / 100 images) in the tutorial's format."""
    from paddle_mnist.testing.data_files import json_payload, learnable_splits, write_json

    return write_json(tmp_path / "learnable.json.gz", json_payload(learnable_splits()))
