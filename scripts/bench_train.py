"""Training throughput of the tutorial's network, images/s, each variant in a fresh process.

    python scripts/bench_train.py [--data ../shared/data/mnist.json.gz] [--images 6000]

Variants:
  tutorial_loop      the tutorial's code: per-sample __getitem__ on Python lists, paddle.io.DataLoader,
                     stock nn.Conv2D, stock environment
  trainer            paddle_mnist.trainer.train_epoch as shipped (in-memory batches by index,
                     the reshaped bias add, MKL_DEBUG_CPU_TYPE=5)
  trainer_stock_mkl  the trainer without MKL_DEBUG_CPU_TYPE=5
  trainer_stock_conv the trainer with paddle's own nn.Conv2D bias add
  trainer_onednn     the trainer with FLAGS_use_mkldnn=True
  trainer_onednn_all the trainer with FLAGS_use_onednn=1 (paddle 3.x's name), every op that has a oneDNN kernel
  trainer_onednn_conv  FLAGS_use_onednn=1 with FLAGS_tracer_onednn_ops_on=conv2d,conv2d_grad: oneDNN for
                     convolution only, the rest native (per-op control, paddle PR #27482)
  trainer_to_static  the trainer with the model under paddle.jit.to_static
  torch              the same network and loop in PyTorch, when torch is importable (never a dependency)
  quick              the ``quick`` preset's network, optimizer and batch (convnet, Adam, batch 64) in the trainer
  quick_torch        the same network, optimizer and batch in PyTorch

Prints one JSON object: images/s per variant (or the error that stopped it).

    python scripts/bench_train.py --shapes

instead times the ``quick`` preset's network (``convnet``, Adam) in one process at batch sizes
32..256 and at wider channel counts, images/s: which shapes suit the GEMM calls paddle makes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = (
    "tutorial_loop",
    "trainer",
    "trainer_stock_mkl",
    "trainer_stock_conv",
    "trainer_onednn",
    "trainer_onednn_all",
    "trainer_onednn_conv",
    "trainer_to_static",
    "torch",
    "quick",
    "quick_torch",
)
ONEDNN_ENV = {
    "trainer_onednn_all": {"FLAGS_use_onednn": "1"},
    "trainer_onednn_conv": {"FLAGS_use_onednn": "1", "FLAGS_tracer_onednn_ops_on": "conv2d,conv2d_grad"},
}
# (report key, variant, the variant it is compared with), printed when both ran
RATIOS = (
    ("trainer_vs_tutorial", "trainer", "tutorial_loop"),
    ("trainer_vs_torch", "trainer", "torch"),
    ("quick_vs_torch", "quick", "quick_torch"),
)
BATCH, WARMUP_BATCHES = 100, 5


def tutorial_loop(data: str, images: int) -> float:
    """The tutorial's Dataset and loop, fed the same images as Python lists."""
    import numpy as np
    import paddle
    import paddle.nn.functional as F

    from paddle_mnist.data import splits

    split = splits.load(data).splits["train"]
    imgs = (split.pixels[:images] / 256).reshape(images, 784).tolist()
    labels = split.class_ids[:images].tolist()

    class TutorialDataset(paddle.io.Dataset):
        def __getitem__(self, i):
            return (np.reshape(imgs[i], [1, 28, 28]).astype("float32"), np.reshape(labels[i], [1]).astype("int64"))

        def __len__(self):
            return len(labels)

    model = stock_tutorial_net()
    opt = paddle.optimizer.SGD(0.01, parameters=model.parameters())
    loader = paddle.io.DataLoader(TutorialDataset(), batch_size=BATCH, shuffle=True, drop_last=True)
    start, seen = None, 0
    for i, (x, y) in enumerate(loader()):
        if i == WARMUP_BATCHES:
            start, seen = time.perf_counter(), 0
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
        seen += len(y)
    return seen / (time.perf_counter() - start)


def stock_tutorial_net():
    import paddle.nn as nn

    from paddle_mnist import models

    models.ReshapedBiasConv2D = nn.Conv2D  # only this benchmark process
    return models.TutorialCNN(10)


def trainer(data: str, images: int, variant: str) -> float:
    import paddle

    from paddle_mnist import losses, models
    from paddle_mnist.config import Config
    from paddle_mnist.data import MnistDataset

    if variant == "trainer_onednn":
        paddle.set_flags({"FLAGS_use_mkldnn": True})
    model = stock_tutorial_net() if variant == "trainer_stock_conv" else models.TutorialCNN(10)
    if variant == "trainer_to_static":
        model = paddle.jit.to_static(model)
    config = Config(data=data, epochs=1)
    optimizer = paddle.optimizer.SGD(0.01, parameters=model.parameters())
    trainee = trainer.Trainee(model, model, losses.LOSSES["cross_entropy"], optimizer, None, None, -(-images // BATCH))
    warm = MnistDataset("train", data, limit=WARMUP_BATCHES * BATCH)
    trainer.train_epoch(trainee, warm, config, 1)
    timed = MnistDataset("train", data, limit=images)
    return trainer.train_epoch(trainee, timed, config, 1)["images_per_s"]


def quick_trainer(data: str, images: int) -> float:
    """The ``quick`` preset as ``train.fit`` builds it, timed like ``trainer``."""
    from paddle_mnist.config import Config
    from paddle_mnist.data import MnistDataset

    config = Config.from_preset("quick", data=data)
    trainee = trainer.build_trainee(config, images + WARMUP_BATCHES * config.batch_size)  # the schedule's steps
    trainer.train_epoch(trainee, MnistDataset("train", data, limit=WARMUP_BATCHES * config.batch_size), config, 1)
    return trainer.train_epoch(trainee, MnistDataset("train", data, limit=images), config, 1)["images_per_s"]


def torch_tutorial_net():
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 20, 5, 1, 2),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(20, 20, 5, 1, 2),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(980, 10),
    )


def torch_convnet():
    """paddle_mnist's ``convnet``: two 5x5 conv-BN-ReLU-pool stages (16, 32), a 128 layer with dropout."""
    import torch.nn as nn

    def stage(cin, cout):
        return [nn.Conv2d(cin, cout, 5, 1, 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2, 2)]

    return nn.Sequential(
        *stage(1, 16),
        *stage(16, 32),
        nn.Flatten(),
        nn.Linear(32 * 49, 128),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(128, 10),
    )


def torch_loop(data: str, images: int, quick: bool = False) -> float:
    """The tutorial network with SGD at batch 100, or (``quick``) the quick preset's convnet with Adam at batch 64."""
    import torch
    import torch.nn.functional as F

    from paddle_mnist.data import splits

    split = splits.load(data).splits["train"]
    x_all = torch.from_numpy(split.pixels[:images].reshape(-1, 1, 28, 28) / 256).float()
    y_all = torch.from_numpy(split.class_ids[:images].astype("int64"))
    model = torch_convnet() if quick else torch_tutorial_net()
    opt, batch = (
        (torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.7, 0.9)), 64)
        if quick
        else (torch.optim.SGD(model.parameters(), lr=0.01), BATCH)
    )
    model.train()
    order = torch.randperm(images)
    start, seen = None, 0
    for i, first in enumerate(range(0, images - batch + 1, batch)):
        if i == WARMUP_BATCHES:
            start, seen = time.perf_counter(), 0
        idx = order[first : first + batch]
        loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(idx)
    return seen / (time.perf_counter() - start)


def shapes(data: str, images: int) -> dict:
    """The quick network's training speed per batch size (16/32 channels) and per width (batch 64)."""
    import paddle

    from paddle_mnist import losses, models
    from paddle_mnist.config import Config
    from paddle_mnist.data import MnistDataset

    dataset = MnistDataset("train", data, limit=images)

    def speed(widths, batch):
        model = models.ConvNet(10, widths=widths)
        optimizer = paddle.optimizer.Adam(0.001, parameters=model.parameters())
        trainee = trainer.Trainee(
            model, model, losses.LOSSES["cross_entropy"], optimizer, None, None, -(-images // batch)
        )
        config = Config(data=data, epochs=1, batch_size=batch, model="convnet")
        trainer.train_epoch(trainee, MnistDataset("train", data, limit=WARMUP_BATCHES * batch), config, 1)
        return round(trainer.train_epoch(trainee, dataset, config, 1)["images_per_s"])

    return {
        "batch (16/32 channels)": {b: speed((16, 32), b) for b in (32, 64, 128, 256)},
        "channels (batch 64)": {f"{a}/{b}": speed((a, b), 64) for a, b in ((8, 16), (16, 32), (24, 48), (32, 64))},
    }


def run_variant(variant: str, data: str, images: int) -> float:
    if variant == "tutorial_loop":
        return tutorial_loop(data, images)
    if variant in ("torch", "quick_torch"):
        return torch_loop(data, images, quick=variant == "quick_torch")
    if variant == "quick":
        return quick_trainer(data, images)
    return trainer(data, images, variant)


def child_env(variant: str) -> dict:
    env = dict(os.environ)
    if variant in ("tutorial_loop", "trainer_stock_mkl"):
        env["MKL_DEBUG_CPU_TYPE"] = ""  # present but empty: paddle_mnist leaves it, MKL ignores it
    env.update(ONEDNN_ENV.get(variant, {}))  # paddle reads FLAGS_* from the environment at import
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data",
        default=str(Path(__file__).resolve().parents[2] / "shared/data/mnist.json.gz"),
        help="the data file (default: ../shared/data/mnist.json.gz)",
    )
    parser.add_argument(
        "--images", type=int, default=6000, help="images timed per variant, after warm-up (default: 6000)"
    )
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="which to run (default: all)"
    )
    parser.add_argument("--shapes", action="store_true", help="time the quick network's batch sizes and widths instead")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shapes:
        print(json.dumps(shapes(args.data, args.images)))
        return
    if args.child:
        print(json.dumps(run_variant(args.child, args.data, args.images)))
        return
    report = {"images": args.images, "batch": BATCH, "cpus": os.cpu_count(), "images_per_s": {}}
    for variant in args.variants:
        result = subprocess.run(
            [sys.executable, __file__, "--child", variant, "--data", args.data, "--images", str(args.images)],
            capture_output=True,
            text=True,
            env=child_env(variant),
        )
        if result.returncode == 0:
            report["images_per_s"][variant] = round(json.loads(result.stdout.strip().splitlines()[-1]))
        else:
            report["images_per_s"][variant] = "failed: " + (result.stderr.strip().splitlines() or ["?"])[-1][:200]
    rates = report["images_per_s"]
    for name, ours, reference in RATIOS:
        if isinstance(rates.get(ours), int) and isinstance(rates.get(reference), int):
            report[name] = round(rates[ours] / rates[reference], 2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
