"""The loss switch: one name decides the head size, the label dtype, the loss and how outputs become a digit.

- ``cross_entropy``: 10 logits, int64 labels; digit = argmax, probabilities = softmax.  With
  ``smoothing`` ε the target is 1 - ε + ε/10 for the label and ε/10 for the other digits
  (Szegedy et al. 2016), which keeps the network from driving its logits apart without end.
- ``mse``: the tutorial's regression, 1 output, float32 labels, ``F.square_error_cost``;
  digit = the output rounded and clipped to 0..9.
- ``mse_onehot``: 10 outputs through softmax, squared error against the one-hot label:
  the same head as cross-entropy, so only the loss differs (the fair comparison).
- ``softmax_twice``: the course code's cross-entropy (awesome-DeepLearning ``junior_class`` chapter 2: its
  networks end in ``nn.Softmax`` and its trainer calls ``F.cross_entropy``, which applies softmax again).
  The squashed logits lie in [0, 1], so the loss can fall only from 2.46 to 1.46 and its gradients are
  small: what the course's table measured.  Here the network outputs logits and the loss squashes them,
  so predicting, calibrating and exporting see the same head as cross-entropy's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from paddle_mnist._paddle import paddle


@dataclass(frozen=True)
class Loss:
    name: str
    head_size: int  # outputs per image: 10 class scores, or 1 for the regression
    label_dtype: str
    summary: str
    smoothing: float = 0.0  # label smoothing, cross_entropy only (Config.label_smoothing)

    def __call__(self, outputs: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
        """Mean loss of a batch; ``labels`` is [N,1] in ``label_dtype``.  Paddle is imported here, not with the
        module: a prediction that runs in onnxruntime uses ``scores`` and ``digits`` only."""
        from paddle_mnist._paddle import paddle

        F = paddle.nn.functional
        if self.name == "cross_entropy" and not self.smoothing:
            return F.cross_entropy(outputs, labels)
        if self.name == "mse":
            return paddle.mean(F.square_error_cost(outputs, labels))
        if self.name == "softmax_twice":
            return F.cross_entropy(F.softmax(outputs), labels)
        onehot = F.one_hot(labels.squeeze(-1), 10)
        if self.name == "cross_entropy":
            # paddle 3.3's own label_smoothing has no kernel for int64 labels on CPU: a soft target instead
            return F.cross_entropy(outputs, onehot * (1 - self.smoothing) + self.smoothing / 10, soft_label=True)
        return paddle.mean(paddle.sum(F.square_error_cost(F.softmax(outputs), onehot), axis=-1))

    def logits(self, outputs: np.ndarray) -> np.ndarray:
        """[N,10] class logits: the outputs themselves, or for the regression head -2 (raw - k)^2, a
        closeness score, not a calibrated one: the model never saw classes."""
        if self.head_size == 1:
            return -2.0 * (outputs.reshape(-1, 1) - np.arange(10)) ** 2
        return outputs

    def scores(self, outputs: np.ndarray) -> np.ndarray:
        """[N,10] class scores summing to 1: the softmax of ``logits``."""
        logits = self.logits(outputs)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def digits(self, outputs: np.ndarray) -> np.ndarray:
        """Predicted class per row: argmax, or the regression value rounded into 0..9."""
        if self.head_size == 1:
            return np.clip(np.rint(outputs.reshape(-1)), 0, 9).astype(np.int64)
        return outputs.argmax(axis=1)


LOSSES = {
    loss.name: loss
    for loss in (
        Loss("cross_entropy", 10, "int64", "10 logits, softmax cross-entropy (the default)"),
        Loss("mse", 1, "float32", "the tutorial's regression: 1 output, squared error to the digit's value"),
        Loss("mse_onehot", 10, "int64", "10 outputs, softmax, squared error to the one-hot label"),
        Loss("softmax_twice", 10, "int64", "the course code's: cross-entropy of the softmax of the softmax"),
    )
}
