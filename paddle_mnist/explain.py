"""What the network looked at: saliency and Grad-CAM maps of a prediction, computed with paddle's gradients.

- **Saliency** (Simonyan et al. 2014) as SmoothGrad (Smilkov et al. 2017): |d logit_c / d pixel|
  averaged over 16 copies of the input with Gaussian noise (sigma 0.1), the pixels whose change
  would move the class score most.  The plain gradient of the `fast` model put 50 % of its mass on
  the first 100 eval digits' ink dilated by one pixel (30 % of the picture); the averaged one 52 %,
  with less speckle on the background.
- **Grad-CAM** (Selvaraju et al. 2017): the last convolution's feature maps weighted by the mean
  gradient of the class score over each map, kept where positive and scaled up to 28x28: where the
  evidence for the class sits, coarser but less noisy. Networks without a convolution
  (``linear``, ``mlp``) have no Grad-CAM map.

Both are maps of the paddle model (``predict --explain`` uses it whatever engine would answer),
each normalised to [0, 1].  InterpretDL, the library made for this in paddle 2, does not run on
paddle 3: these are the two methods, written for the registry's networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paddle_mnist._paddle import paddle


@dataclass(frozen=True)
class Explanation:
    """The maps of one image for one class: [28,28] each in [0, 1]; ``grad_cam`` None without a convolution."""

    digit: int
    saliency: np.ndarray
    grad_cam: np.ndarray | None


def explain(model: paddle.nn.Layer, batch: np.ndarray, classes: np.ndarray) -> list[Explanation]:
    """The saliency and Grad-CAM maps of ``batch`` [N,1,28,28] for ``classes`` [N] (one class per image)."""
    model.eval()
    captured = []
    hooks = [
        layer.register_forward_post_hook(lambda _layer, _inputs, output: captured.append(output))
        for layer in model.sublayers()
        if isinstance(layer, paddle.nn.Conv2D)
    ]
    try:
        logits = model(paddle.to_tensor(batch.astype(np.float32)))
    finally:
        for hook in hooks:
            hook.remove()
    index = paddle.to_tensor(classes.astype(np.int64)[:, None])
    cams = [None] * len(batch)
    if captured:  # the last convolution to run: the finest evidence the head reads
        gradients = paddle.grad(paddle.take_along_axis(logits, index, axis=1).sum(), captured[-1])[0]
        cams = grad_cam(captured[-1], gradients, batch.shape[-2:])
    saliency = normalised(np.abs(smooth_gradient(model, batch, index)))
    return [Explanation(int(c), s, g) for c, s, g in zip(classes, saliency, cams)]


SMOOTH_SAMPLES, SMOOTH_SIGMA = 16, 0.1


def smooth_gradient(model: paddle.nn.Layer, batch: np.ndarray, index: paddle.Tensor) -> np.ndarray:
    """[N,H,W]: the gradient of each image's class logit, averaged over noisy copies (a fixed seed, so an
    explanation is the same every time)."""
    rng = np.random.default_rng(0)
    total = np.zeros(batch.shape, np.float64)
    for _ in range(SMOOTH_SAMPLES):
        noisy = (batch + rng.normal(0, SMOOTH_SIGMA, batch.shape)).astype(np.float32)
        x = paddle.to_tensor(noisy, stop_gradient=False)
        chosen = paddle.take_along_axis(model(x), index, axis=1).sum()
        total += paddle.grad(chosen, x)[0].numpy()
    return (total / SMOOTH_SAMPLES)[:, 0]


def grad_cam(activations: paddle.Tensor, gradients: paddle.Tensor, size: tuple[int, int]) -> np.ndarray:
    weights = gradients.mean(axis=[2, 3], keepdim=True)
    cam = paddle.nn.functional.relu((weights * activations).sum(axis=1, keepdim=True))
    cam = paddle.nn.functional.interpolate(cam, size=list(size), mode="bilinear", align_corners=False)
    return normalised(cam.numpy()[:, 0])


def normalised(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] by its own maximum (an all-zero map stays zero)."""
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def top_two(model: paddle.nn.Layer, batch: np.ndarray) -> np.ndarray:
    """[N,2]: each image's predicted class and its runner-up, by the model's outputs."""
    with paddle.no_grad():
        model.eval()
        outputs = model(paddle.to_tensor(batch.astype(np.float32))).numpy()
    return np.argsort(-outputs, axis=1, kind="stable")[:, :2]


def heat_map(image: np.ndarray, explanation: np.ndarray) -> np.ndarray:
    """uint8 RGB [H,W,3]: the grey model input with the map over it in red, for the page and the figure."""
    grey = np.clip(image, 0, 1)[..., None] * 0.6
    red = np.zeros_like(grey.repeat(3, axis=-1))
    red[..., 0] = explanation
    red[..., 1] = explanation * 0.25
    return np.rint(255 * np.clip(grey + red * 0.8, 0, 1)).astype(np.uint8)


def displayed(images: np.ndarray) -> np.ndarray:
    """Model inputs [N,H,W] in any pixel encoding, each scaled to 0..1 for showing."""
    shown = images - images.min(axis=(1, 2), keepdims=True)
    return shown / np.maximum(shown.max(axis=(1, 2), keepdims=True), 1e-12)


def heat_map_of(model: paddle.nn.Layer, batch: np.ndarray, digit: int) -> np.ndarray:
    """RGB [28,28,3]: Grad-CAM of ``digit`` (saliency for a network without a convolution) over the one
    model input in ``batch`` [1,1,28,28], the input shown as 0..1 whatever its pixel encoding."""
    [maps] = explain(model, batch, np.array([digit]))
    return heat_map(displayed(batch[:, 0])[0], maps.grad_cam if maps.grad_cam is not None else maps.saliency)


MAX_ROWS = 32  # digits in one --explain figure: one row each


def write_for(model: paddle.nn.Layer, predictor, results: list, out: Path) -> int:
    """``predict --explain``: the figure of the digits of ``results`` (``Prediction``s ``predictor`` made, each
    digit with its model input), the first ``MAX_ROWS``, explained on ``model``, the paddle network of the
    same weights, for the digit read and the runner-up.  Returns how many digits it explains."""
    digits = [(label, digit.model_input) for result in results for label, digit in _labelled(result)][:MAX_ROWS]
    sources = [label for label, _ in digits]
    inputs = np.stack([model_input for _, model_input in digits])
    top = top_two(model, inputs)
    read, runner_up = (explain(model, inputs, top[:, k]) for k in (0, 1))
    write_figure(
        out, sources, displayed(inputs[:, 0]), [list(pair) for pair in zip(read, runner_up)], predictor.classes
    )
    return len(digits)


def _labelled(result) -> list:
    """A picture's digits, each with its row's label: the picture's name (and, for a number, the box)."""
    name = Path(result.source).name
    if len(result.digits) == 1:
        return [(name, result.digits[0])]
    return [(f"{name} at {list(digit.box)}", digit) for digit in result.digits]


def write_figure(out: Path, sources: list[str], inputs: np.ndarray, rows: list[list[Explanation]], classes) -> None:
    """One row per image: the model input, then saliency and Grad-CAM for the digit read and the runner-up."""
    from paddle_mnist.plots import save_figure, subplots

    titles = ["model input", "saliency", "Grad-CAM", "saliency", "Grad-CAM"]
    fig, axes = subplots(len(rows), 5, figsize=(10, 2.5 * len(rows)), squeeze=False)
    for row, (source, image, pair) in enumerate(zip(sources, inputs, rows)):
        panels = [(image, titles[0] + f"\n{source[-40:]}")]
        for explanation, which in zip(pair, ("read", "runner-up")):
            label = f"{which}: {classes[explanation.digit]}"
            panels.append((explanation.saliency, f"{titles[1]}, {label}"))
            panels.append((explanation.grad_cam, f"{titles[2]}, {label}"))
        for ax, (picture, title) in zip(axes[row], panels):
            ax.axis("off")
            if picture is None:
                ax.set_title("Grad-CAM: no convolution", fontsize=7)
                continue
            ax.imshow(picture, cmap="gray" if picture is image else "inferno", vmin=0, vmax=1)
            ax.set_title(title, fontsize=7)
    fig.tight_layout()
    save_figure(fig, out)
