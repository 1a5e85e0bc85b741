"""The networks, all ``paddle.nn.Layer`` taking float32 [N,1,28,28] and returning [N, head_size].

``head_size`` is set by the loss (10 logits, or 1 for the tutorial's regression).
``TutorialCNN`` (registered as ``cnn``) is the tutorial's ``MNIST`` network exactly; the others are the course's
related chapters (softmax regression, its feed-forward networks, LeNet, residual and Inception blocks).
"""

from __future__ import annotations

from paddle_mnist._paddle import paddle

nn = paddle.nn
F = paddle.nn.functional


class ReshapedBiasConv2D(nn.Conv2D):
    """``nn.Conv2D`` that adds its bias as [N, C, H*W] + [C, 1]: 7x faster on paddle's CPU kernels.

    The stock [N,C,H,W] + [1,C,1,1] broadcast, with its gradient, took 23 ms a
    batch on the tutorial net against 3.3 ms for this form (scripts/bench_train.py).
    Parameter names, shapes, initial values and results are those of ``nn.Conv2D``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias_attr=None if bias else False)
        self.stride, self.padding = stride, padding

    def forward(self, x):
        out = F.conv2d(x, self.weight, None, self.stride, self.padding)
        if self.bias is None:
            return out
        n, c, h, w = out.shape
        return (out.reshape([n, c, h * w]) + self.bias.reshape([c, 1])).reshape([n, c, h, w])


class TutorialCNN(nn.Layer):
    """The tutorial: two conv(5x5, pad 2)-ReLU-maxpool(2) stages of 20 channels, then Linear(980 → head_size)."""

    def __init__(self, head_size: int = 10):
        super().__init__()
        self.conv1 = ReshapedBiasConv2D(1, 20, kernel_size=5, stride=1, padding=2)
        self.max_pool1 = nn.MaxPool2D(kernel_size=2, stride=2)
        self.conv2 = ReshapedBiasConv2D(20, 20, kernel_size=5, stride=1, padding=2)
        self.max_pool2 = nn.MaxPool2D(kernel_size=2, stride=2)
        self.fc = nn.Linear(980, head_size)

    def forward(self, x):
        x = self.max_pool1(F.relu(self.conv1(x)))
        x = self.max_pool2(F.relu(self.conv2(x)))
        return self.fc(paddle.reshape(x, [x.shape[0], 980]))


class Linear(nn.Layer):
    """Softmax regression: one affine map of the 784 pixels."""

    def __init__(self, head_size: int = 10):
        super().__init__()
        self.fc = nn.Linear(784, head_size)

    def forward(self, x):
        return self.fc(paddle.flatten(x, 1))


ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class MLP(nn.Layer):
    """Hidden layers (256, 128 by default), each followed by ``activation``, between the pixels and the head."""

    def __init__(self, head_size: int = 10, hidden: tuple[int, ...] = (256, 128), activation: str = "relu"):
        super().__init__()
        widths = (784, *hidden)
        layers = []
        for fan_in, fan_out in zip(widths, widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), ACTIVATIONS[activation]()]
        self.body = nn.Sequential(*layers, nn.Linear(widths[-1], head_size))

    def forward(self, x):
        return self.body(paddle.flatten(x, 1))


class SingleLayerMLP(MLP):
    """The course code's "single-layer feed-forward network": one hidden layer, of 256 units (assumed).

    The course's ``nets/fnn.py``, which has its widths, is not in the copy of the repository that could be
    searched; 256 is ``mlp``'s first layer, so the two share it when ``compare --vary model`` runs both."""

    def __init__(self, head_size: int = 10, activation: str = "relu"):
        super().__init__(head_size, hidden=(256,), activation=activation)


class CourseMLP(MLP):
    """The course's network chapter: two hidden layers of 10 sigmoid units (784 → 10 → 10 → head)."""

    def __init__(self, head_size: int = 10, activation: str = "sigmoid"):
        super().__init__(head_size, hidden=(10, 10), activation=activation)


class ConvClassifier(nn.Layer):
    """Base of the plain conv nets: ``features`` (conv layers), flattened, then the fully connected ``head``."""

    def forward(self, x):
        return self.head(paddle.flatten(self.features(x), 1))


def dropout_head(fan_in: int, hidden: int, head_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(fan_in, hidden), nn.ReLU(), nn.Dropout(0.3), nn.Linear(hidden, head_size))


class LeNet(ConvClassifier):
    """LeNet-5 with ReLU and max pooling: 6 and 16 channels, then 120-84 fully connected."""

    def __init__(self, head_size: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            ReshapedBiasConv2D(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2D(2, 2),
            ReshapedBiasConv2D(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2D(2, 2),
        )
        self.head = nn.Sequential(
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, head_size)
        )


class ConvNet(ConvClassifier):
    """Two 5x5 conv-BN-ReLU-maxpool stages (16, 32 channels), a 128 hidden layer with dropout."""

    def __init__(self, head_size: int = 10, widths: tuple[int, int] = (16, 32), hidden: int = 128):
        super().__init__()
        a, b = widths
        self.features = nn.Sequential(
            conv_bn(1, a, 5), nn.ReLU(), nn.MaxPool2D(2, 2), conv_bn(a, b, 5), nn.ReLU(), nn.MaxPool2D(2, 2)
        )
        self.head = dropout_head(b * 49, hidden, head_size)


class VGG(ConvClassifier):
    """Two stages of double 3x3 conv-BN-ReLU then maxpool (16, 32 channels), a 128 hidden layer with dropout."""

    def __init__(self, head_size: int = 10, widths: tuple[int, int] = (16, 32), hidden: int = 128):
        super().__init__()
        a, b = widths
        self.features = nn.Sequential(
            conv_bn(1, a, 3),
            nn.ReLU(),
            conv_bn(a, a, 3),
            nn.ReLU(),
            nn.MaxPool2D(2, 2),
            conv_bn(a, b, 3),
            nn.ReLU(),
            conv_bn(b, b, 3),
            nn.ReLU(),
            nn.MaxPool2D(2, 2),
        )
        self.head = dropout_head(b * 49, hidden, head_size)


class WideVGG(VGG):
    """The vgg network half again as wide: 24 and 48 channels, a 192-unit hidden layer (the best preset's)."""

    def __init__(self, head_size: int = 10):
        super().__init__(head_size, widths=(24, 48), hidden=192)


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        ReshapedBiasConv2D(cin, cout, kernel, stride, padding=kernel // 2, bias=False), nn.BatchNorm2D(cout)
    )


class ResidualBlock(nn.Layer):
    """Two 3x3 conv-BN layers plus a shortcut: identity, or a strided 1x1 conv-BN when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride)
        self.conv2 = conv_bn(cout, cout, 3)
        self.shortcut = conv_bn(cin, cout, 1, stride) if (cin, stride) != (cout, 1) else nn.Identity()

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))


class ResNet(nn.Layer):
    """A small residual network: a 3x3 stem, blocks at 28, 14 and 7 pixels, global average pooling."""

    def __init__(self, head_size: int = 10, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        a, b, c = widths
        self.stem = nn.Sequential(conv_bn(1, a, 3), nn.ReLU())
        self.blocks = nn.Sequential(ResidualBlock(a, a), ResidualBlock(a, b, 2), ResidualBlock(b, c, 2))
        self.fc = nn.Linear(c, head_size)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(paddle.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InceptionBlock(nn.Layer):
    """Four branches concatenated on channels: 1x1; 1x1→5x5; 1x1→3x3→3x3; 3x3 avg-pool→1x1."""

    def __init__(self, cin: int, branch: int):
        super().__init__()
        relu = nn.ReLU
        self.b1 = nn.Sequential(conv_bn(cin, branch, 1), relu())
        self.b2 = nn.Sequential(conv_bn(cin, branch, 1), relu(), conv_bn(branch, branch, 5), relu())
        self.b3 = nn.Sequential(
            conv_bn(cin, branch, 1), relu(), conv_bn(branch, branch, 3), relu(), conv_bn(branch, branch, 3), relu()
        )
        self.b4 = nn.Sequential(nn.AvgPool2D(3, 1, padding=1, exclusive=False), conv_bn(cin, branch, 1), relu())

    def forward(self, x):
        return paddle.concat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], axis=1)


class Inception(nn.Layer):
    """A stem, two Inception blocks with max pooling between, global average pooling."""

    def __init__(self, head_size: int = 10):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(1, 32, 3), nn.ReLU())
        self.block1 = InceptionBlock(32, 16)
        self.block2 = InceptionBlock(64, 32)
        self.fc = nn.Linear(128, head_size)

    def forward(self, x):
        x = F.max_pool2d(self.block1(self.stem(x)), 2, 2)
        x = F.max_pool2d(self.block2(x), 2, 2)
        return self.fc(paddle.flatten(F.adaptive_avg_pool2d(x, 1), 1))


MODELS = {
    "linear": Linear,
    "course_mlp": CourseMLP,
    "mlp1": SingleLayerMLP,
    "mlp": MLP,
    "cnn": TutorialCNN,
    "lenet": LeNet,
    "convnet": ConvNet,
    "vgg": VGG,
    "vgg_wide": WideVGG,
    "resnet": ResNet,
    "inception": Inception,
}


FEED_FORWARD = {"course_mlp": "sigmoid", "mlp1": "relu", "mlp": "relu"}  # their hidden activation by default


def build(name: str, head_size: int, activation: str | None = None) -> nn.Layer:
    """The network ``name``; ``activation`` (feed-forward networks only) replaces its hidden activation."""
    return MODELS[name](head_size=head_size, **({"activation": activation} if activation else {}))


def parameter_count(model: nn.Layer) -> int:
    return sum(int(p.size) for p in model.parameters())


HEADS = (10, 1)  # the losses' head sizes: 10 classes, or the tutorial's 1-output regression


def layout(model: nn.Layer) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer names with their shapes: what a state dict of ``model`` holds."""
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def identify(shapes: dict[str, tuple[int, ...]]) -> list[tuple[str, int]]:
    """The (registry name, head size) pairs whose networks have exactly these names and shapes.

    Builds each network once per head size to read its layout: a few milliseconds each.
    """
    return [(name, head_size) for name in MODELS for head_size in HEADS if layout(build(name, head_size)) == shapes]
