"""Every test runs in a temp working dir with a private cache and downloads off.

Integration tests use the real files in ../shared/data; outside CI they are
skipped when those files are absent, in CI (CI=true) their absence fails.
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


def require(path: Path) -> Path:
    """``path``, or a skip (a failure in CI, which provides it)."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI provides it (../shared/data, Debian's dataset-fashion-mnist)")
        pytest.skip(f"{path} not present")
    return path


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
def trained_dir(tmp_path_factory, shared_cache) -> Path:
    """A convnet trained briefly on 10,000 real MNIST images (~97-98 %), once per session."""
    from paddle_mnist import train

    data = require(SHARED / "mnist.json.gz")
    out = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PADDLE_MNIST_CACHE", str(shared_cache))
        train.fit(Config(data=str(data), model="convnet", optimizer="adam", lr=0.003, batch_size=128,
                         epochs=2, schedule="onecycle", limit_train=10_000, out=str(out)))
    return out


@pytest.fixture
def tiny_model_dir(tmp_path, data_file):
    """A quick mlp on the learnable synthetic set: enough to exercise the predictor's plumbing."""
    from paddle_mnist import train

    def make(loss="cross_entropy"):
        out = tmp_path / f"model-{loss}"
        train.fit(Config(data=str(data_file), model="mlp", loss=loss, lr=0.05 if loss != "mse" else 0.001,
                         batch_size=50, epochs=1, out=str(out)))
        return out
    return make


@pytest.fixture
def data_file(tmp_path) -> Path:
    """The learnable synthetic set (300 / 100 / 100 images) in the tutorial's format."""
    from fixtures import json_payload, learnable_splits, write_json
    return write_json(tmp_path / "learnable.json.gz", json_payload(learnable_splits()))
