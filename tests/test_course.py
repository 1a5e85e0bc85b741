"""What Paddle's MNIST course needs beyond the tutorial: its networks, activations, Adagrad, its loss, and the
options reaching the trainer and the predictor."""

from __future__ import annotations

import json

import numpy as np
import pytest

from paddle_mnist import checkpoint, config, losses, models
from paddle_mnist.config import Config
from paddle_mnist.errors import UserError
from paddle_mnist.predictor import Predictor

from fixtures import train_cli


def layer_types(model) -> list[str]:
    return [type(layer).__name__ for layer in model.sublayers()]


def test_the_feed_forward_table_is_the_registry_s():
    """config names the networks whose activation can be chosen without importing paddle; models builds them."""
    assert config.FEED_FORWARD == tuple(models.FEED_FORWARD)
    assert set(config.ACTIVATIONS) == set(models.ACTIVATIONS)


@pytest.mark.parametrize("name", config.FEED_FORWARD)
def test_a_feed_forward_network_takes_every_activation_and_keeps_its_own_by_default(name):
    own = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh"}
    assert own[models.FEED_FORWARD[name]] in layer_types(models.build(name, 10))
    for activation, layer in own.items():
        types = layer_types(models.build(name, 10, activation))
        assert layer in types and not set(own.values()) - {layer} & set(types), (name, activation)


def test_the_course_networks_have_the_course_widths():
    def shapes(name):
        return [tuple(p.shape) for p in models.build(name, 1).parameters() if len(p.shape) == 2]

    assert shapes("course_mlp") == [(784, 10), (10, 10), (10, 1)]  # the network chapter's 784 -> 10 -> 10 -> 1
    assert shapes("mlp1") == [(784, 256), (256, 1)]
    assert shapes("linear") == [(784, 1)]  # the minimal version: one Linear as regression, with --loss mse


def test_an_activation_is_refused_where_no_network_takes_one():
    with pytest.raises(
        UserError, match=r"--activation applies to the feed-forward networks \(course_mlp, mlp1, mlp\), not cnn"
    ):
        Config(model="cnn", activation="sigmoid")
    with pytest.raises(UserError, match="unknown activation 'swish'"):
        Config(model="mlp", activation="swish")


def test_softmax_twice_is_cross_entropy_of_the_softmax():
    import paddle

    outputs = paddle.to_tensor(np.random.default_rng(0).normal(size=(6, 10)) * 5, dtype="float32")
    labels = paddle.to_tensor(np.arange(6).reshape(-1, 1), dtype="int64")
    twice = float(losses.LOSSES["softmax_twice"](outputs, labels))
    probabilities = paddle.nn.functional.softmax(outputs)
    assert twice == pytest.approx(float(paddle.nn.functional.cross_entropy(probabilities, labels)), rel=1e-6)
    # squashed logits in [0, 1]: the loss of any output lies between these, however wrong or right
    assert np.log(9 + np.e) - 1 <= twice <= np.log(9 + np.e)


def test_the_course_options_reach_the_trainer_and_the_predictor(data_file, tmp_path):
    out = tmp_path / "run"
    flags = ["--model", "mlp1", "--activation", "tanh", "--optimizer", "adagrad", "--loss", "softmax_twice"]
    info = train_cli("--data", data_file, "--out", out, "--epochs", "1", "--batch-size", "50", "--lr", "0.1", *flags)
    assert (info.model, info.activation, info.loss) == ("mlp1", "tanh", "softmax_twice")
    assert (info.config["optimizer"], info.config["activation"]) == ("adagrad", "tanh")
    optimizer_state = checkpoint.load_state(out / "mnist.pdopt")
    assert any(key.endswith("_moment_0") for key in optimizer_state), "Adagrad's sums are what was saved"

    predictor = Predictor.from_dir(out, engine="dynamic")
    assert "Tanh" in layer_types(predictor.network) and "ReLU" not in layer_types(predictor.network)
    stroke = np.zeros((28, 28), np.float32)
    stroke[5:23, 12:16] = 1  # a 1
    read = predictor.predict(stroke)
    assert read.error is None and (read.digit if read.reason is None else read.closest) in range(10)
    from paddle_mnist import export

    export.after_training(out)  # as train's main ends
    exported = Predictor.from_dir(out, engine="onnx")  # Tanh passes the ONNX graph check: the same answer
    assert exported.summary.engine == "onnx" and exported.predict(stroke).raw == pytest.approx(read.raw, abs=1e-5)

    meta = json.loads((out / "mnist.json").read_text())  # an activation the metadata may not name: one line
    meta["config"]["activation"] = "swish"
    (out / "mnist.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"mnist.json: 'config' must be an activation of relu, sigmoid, tanh"):
        Predictor.from_dir(out, engine="dynamic")


def test_the_course_deployment_chapter_s_flat_input_spec_works_with_a_network_here(tmp_path):
    """docs/course.md's recipe for the course's own loader: the network behind a reshape, saved by
    paddle.jit.save with an InputSpec of [None, 784], answers as the network does on the same pixels."""
    import paddle

    network = models.build("course_mlp", 10)
    network.eval()
    flat = paddle.nn.Sequential(paddle.nn.Unflatten(1, [1, 28, 28]), network)
    paddle.jit.save(flat, str(tmp_path / "mnist"), input_spec=[paddle.static.InputSpec([None, 784], "float32")])
    loaded = paddle.jit.load(str(tmp_path / "mnist"))
    pixels = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    expected = network(paddle.to_tensor(pixels.reshape(3, 1, 28, 28))).numpy()
    np.testing.assert_allclose(loaded(paddle.to_tensor(pixels)).numpy(), expected, atol=1e-6)
