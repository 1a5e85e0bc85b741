"""Class names of the data sets: importable without the data-loading stack (the predictor needs them)."""

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CLASSES = {"mnist": MNIST_CLASSES, "fashion-mnist": FASHION_CLASSES}
