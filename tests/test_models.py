"""Every network takes [N,1,28,28] and returns [N, head], for each loss's head."""

from __future__ import annotations

import dataclasses

import numpy as np
import paddle
import pytest

from paddle_mnist import losses, models


@pytest.mark.parametrize("loss", sorted(losses.LOSSES))
@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_output_shape_follows_the_loss(name, loss):
    head = losses.LOSSES[loss].head_size
    model = models.build(name, head)
    model.eval()
    out = model(paddle.rand([3, 1, 28, 28]))
    assert out.shape == [3, head]


def test_tutorial_network_is_exactly_the_tutorials():
    model = models.build("cnn", 10)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {
        "conv1.weight": [20, 1, 5, 5],
        "conv1.bias": [20],
        "conv2.weight": [20, 20, 5, 5],
        "conv2.bias": [20],
        "fc.weight": [980, 10],
        "fc.bias": [10],
    }
    assert models.build("cnn", 1).fc.weight.shape == [980, 1]


def test_reshaped_bias_conv_matches_paddles_conv():
    paddle.seed(1)
    ours = models.ReshapedBiasConv2D(3, 5, 3, stride=2, padding=1)
    paddle.seed(1)
    stock = paddle.nn.Conv2D(3, 5, 3, stride=2, padding=1)
    for name, value in stock.state_dict().items():  # the same initial weights, under the same names
        np.testing.assert_array_equal(ours.state_dict()[name].numpy(), value.numpy(), err_msg=name)
    ours.bias.set_value(paddle.rand([5]))  # a non-zero bias: each path must add it exactly once
    stock.set_state_dict(ours.state_dict())
    x = paddle.rand([2, 3, 9, 9])
    for layer in (ours, stock):
        layer(x).square().sum().backward()
    np.testing.assert_allclose(ours(x).numpy(), stock(x).numpy(), rtol=1e-5, atol=1e-6)
    for name in ("weight", "bias"):
        np.testing.assert_allclose(
            getattr(ours, name).grad.numpy(), getattr(stock, name).grad.numpy(), rtol=1e-5, atol=1e-5, err_msg=name
        )


def test_loss_switch_sets_head_label_dtype_and_prediction():
    ce, mse, onehot = (losses.LOSSES[n] for n in ("cross_entropy", "mse", "mse_onehot"))
    assert (ce.head_size, ce.label_dtype) == (10, "int64")
    assert (mse.head_size, mse.label_dtype) == (1, "float32")
    assert (onehot.head_size, onehot.label_dtype) == (10, "int64")
    assert mse.digits(np.array([[3.4], [-2.0], [12.0]])).tolist() == [3, 0, 9]
    scores = mse.scores(np.array([[3.4]]))
    assert scores.argmax() == 3 and abs(scores.sum() - 1) < 1e-9
    logits = np.array([[0.0, 5.0, 1.0, 0, 0, 0, 0, 0, 0, 0]])
    assert ce.digits(logits).tolist() == [1] and abs(ce.scores(logits).sum() - 1) < 1e-9
    labels = paddle.to_tensor([[1]], dtype="int64")
    assert float(ce(paddle.to_tensor(logits, dtype="float32"), labels)) < float(
        ce(paddle.to_tensor(-logits, dtype="float32"), labels)
    )
    perfect = paddle.to_tensor([[0.0] + [50.0] + [0.0] * 8])
    assert float(onehot(perfect, labels)) < 1e-6
    assert float(mse(paddle.to_tensor([[1.0]]), paddle.to_tensor([[1.0]]))) == 0.0


def test_label_smoothing_is_cross_entropy_against_the_smoothed_target():
    logits = 5 * np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)  # confident, so smoothing shows
    labels = np.array([[1], [2], [3], [9]])
    smoothed = dataclasses.replace(losses.LOSSES["cross_entropy"], smoothing=0.1)
    target = np.full((4, 10), 0.01)
    target[np.arange(4), labels[:, 0]] = 0.91
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -(target * log_p).sum(axis=1).mean()
    got = float(smoothed(paddle.to_tensor(logits), paddle.to_tensor(labels, dtype="int64")))
    assert abs(got - expected) < 1e-5
    plain = float(losses.LOSSES["cross_entropy"](paddle.to_tensor(logits), paddle.to_tensor(labels, dtype="int64")))
    assert abs(plain - expected) > 0.01, "smoothing must change the loss"


def test_the_recipe_names_the_networks_the_registry_builds():
    """config.MODEL_NAMES lets a recipe or a run's metadata be checked without paddle; it must be the registry."""
    from paddle_mnist import config

    assert config.MODEL_NAMES == tuple(models.MODELS)
