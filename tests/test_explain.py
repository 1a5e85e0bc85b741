"""What the network looked at: the maps lie on the digit, and ``predict --explain`` draws them."""

from __future__ import annotations

import numpy as np
import pytest

from paddle_mnist import explain, models, rundir
from paddle_mnist.predictor import on_paddle

from fixtures import run_python


def dilated(mask: np.ndarray) -> np.ndarray:
    """``mask`` [N,H,W] grown by one pixel in every direction (a 3x3 maximum)."""
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    h, w = mask.shape[1:]
    return np.max([padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=0)


def test_the_saliency_of_a_digit_lies_mostly_on_its_ink(trained_dir, shared_eval):
    """On the eval split's first 100 digits, the saliency maps' mass lies on the ink dilated by one pixel,
    an area of about 30 % of the picture, well over that share (the `fast` model: 44 %; the session's,
    trained briefly: 47 %): the map points at the strokes.  Not half of it: a model trained with outliers
    also looks at where strokes are missing, which tells a digit from a letter."""
    model = on_paddle(rundir.open_run(trained_dir)).network
    images, ink = shared_eval.images[:100], shared_eval.pixels[:100] > 0
    read = explain.top_two(model, images)[:, 0]
    maps = explain.explain(model, images, read)
    saliency = np.stack([m.saliency for m in maps])
    mask = dilated(ink)
    inside = (saliency * mask).sum() / saliency.sum()
    assert inside > 1.4 * mask.mean(), (inside, mask.mean())
    assert [m.digit for m in maps] == list(read)
    for m in maps:
        assert m.saliency.shape == m.grad_cam.shape == (28, 28)
        assert m.saliency.max() == pytest.approx(1) and m.saliency.min() >= 0
        assert 0 <= m.grad_cam.min() and m.grad_cam.max() <= 1


def test_a_network_without_convolutions_has_saliency_but_no_grad_cam():
    model = models.build("mlp", 10)
    batch = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    maps = explain.explain(model, batch, np.array([1, 2, 3]))
    assert [m.grad_cam for m in maps] == [None, None, None]
    assert all(m.saliency.shape == (28, 28) for m in maps)


def run_predict(*args):
    return run_python("-m", "paddle_mnist.predict", *args)


def test_predict_explain_draws_the_figure_and_refuses_what_has_no_gradients(trained_dir, tmp_path):
    from PIL import Image

    pixels = np.zeros((28, 28), np.uint8)
    pixels[5:23, 13:16] = 255
    picture = tmp_path / "one.png"
    Image.fromarray(pixels).save(picture)
    out = tmp_path / "why.png"
    result = run_predict(picture, picture, "--model-dir", trained_dir, "--explain", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"paddle-mnist predict: wrote {out} (2 explained)" in result.stderr.splitlines()
    assert len(result.stdout.splitlines()) == 2 and Image.open(out).size[1] > Image.open(out).size[0] / 3
    for flags, reason in (
        (
            ["--engine", "onnx"],
            "--explain needs gradients, which the onnx export has not: leave --engine at auto or dynamic",
        ),
        (["--model-dir", trained_dir], "--explain explains one model, not a committee: give one --model-dir"),
    ):
        refused = run_predict(picture, "--model-dir", trained_dir, *flags, "--explain", tmp_path / "no.png")
        assert (refused.returncode, refused.stdout) == (1, ""), refused.stderr
        assert refused.stderr.strip().splitlines()[-1] == f"paddle-mnist predict: error: {reason}"
        assert not (tmp_path / "no.png").exists()


def test_the_figure_explains_the_digit_read_then_the_runner_up(trained_dir, shared_eval, tmp_path, monkeypatch):
    """``predict --explain``'s rows: the first pair of maps is of the digit the predictor reads, the second of
    its runner-up, each the maps ``explain`` gives for that digit."""
    predictor = on_paddle(rundir.open_run(trained_dir))
    drawn = []
    monkeypatch.setattr(explain, "write_figure", lambda out, sources, inputs, rows, classes: drawn.extend(rows))
    images = [(shared_eval.pixels[i]).astype(np.uint8) for i in range(4)]
    explain.write_for(predictor.network, predictor, predictor.predict(images), tmp_path / "why.png")
    for image, (read, runner_up) in zip(images, drawn):
        result = predictor.predict(image)
        assert (read.digit, runner_up.digit) == (result.digit, result.topk[1][0])
        [expected] = explain.explain(predictor.network, predictor.model_input(image)[None], np.array([result.digit]))
        np.testing.assert_allclose(read.grad_cam, expected.grad_cam, atol=1e-6)
