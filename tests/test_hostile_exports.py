"""A run directory's ONNX export is not trusted for its matching record: each crafted export of issue 30's
case 5 is refused in one line, within bounded memory and time, before or as it first runs; under ``auto``
paddle answers instead, saying why."""

from __future__ import annotations

import shutil

import pytest

from paddle_mnist.testing import inference_attacks, onnx_attacks
from paddle_mnist.testing.hostile import run_limited

from conftest import require_module

require_module("onnx")
require_module("onnxruntime")

FALLBACK_CHECKED = {"a Loop of 2^62 trips", "the image concatenated 2^30 times"}  # refused unrun, refused running
WHY = {
    "a Loop of 2^62 trips": "holds operators no network here exports to: Loop",
    "ConstantOfShape of 2.2 GB": "holds operators no network here exports to: ConstantOfShape, ReduceSum",
    "the image concatenated 2^30 times": "the model failed to run (over the 512 MB a forward pass may take)",
    "a [N,3,32,32] input": "takes image float [N,3,32,32], not one float32 [N,1,28,28] batch of images",
    "a rank-1 output": "gives out float [N], not one float32 [N,10] for this run",
    "1,000 classes": "gives out float [N,1000], not one float32 [N,10] for this run",
    "NaN outputs": "the model gave [1, 10] outputs, not all finite",
}


@pytest.mark.parametrize("attack", list(onnx_attacks.ATTACKS))
def test_a_crafted_export_with_a_matching_record_is_refused(attack, tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    model_file = onnx_attacks.plant(run, onnx_attacks.ATTACKS[attack]())
    picture = tmp_path / "seven.png"
    from paddle_mnist.testing.served import drawn_seven

    picture.write_bytes(drawn_seven())
    refused = run_limited(["-m", "paddle_mnist", "predict", str(picture), "--model-dir", str(run), "--engine", "onnx"])
    assert refused.returncode == 1 and refused.stdout == "", refused.stderr[-2000:]
    assert refused.stderr.strip().splitlines() == [f"paddle-mnist predict: error: {model_file}: {WHY[attack]}"]
    assert refused.peak_rss_mb < 900 and refused.seconds < 60, (refused.peak_rss_mb, refused.seconds)
    if attack not in FALLBACK_CHECKED:  # auto's fallback is one path, whatever failed: paddle's import is slow
        return
    fallen_back = run_limited(["-m", "paddle_mnist", "predict", str(picture), "--model-dir", str(run), "--json"])
    assert fallen_back.returncode == 0, fallen_back.stderr[-2000:]
    assert f"paddle-mnist predict: {model_file}: {WHY[attack]}; paddle answers" in fallen_back.stderr
    assert '"engine": "dynamic"' in fallen_back.stdout


def test_the_watchdog_stops_a_forward_pass_past_its_deadline_and_no_other():
    import time
    from types import SimpleNamespace

    from paddle_mnist.onnx_check import Watchdog

    dog = Watchdog(seconds=0.2, every=0.05)
    slow, quick = SimpleNamespace(terminate=False), SimpleNamespace(terminate=False)
    with dog.watching(quick):
        pass
    with dog.watching(slow):
        time.sleep(0.5)
    time.sleep(0.2)
    assert (slow.terminate, quick.terminate) == (True, False)


# --- Paddle Inference: the program is read before paddle loads it ------------------------------------

PROGRAM_WHY = {
    "a while loop": "holds an operator no network here exports to: 1.while",
    "a constant of 2.3 GB": "a constant of [24000, 24000]",
    "a convolution padded by 3,000": "a window of 5 with padding 3000, stride 1, dilation 1",
    "a tensor squared in the batch": "a tensor grows faster than the batch ([784, 784] for one image)",
    "a [N,3,32,32] input": "takes float32 [-1, 3, 32, 32], not one float32 [N,1,28,28] batch of images",
    "1,000 classes": "gives [1, 1000] for one image, not [1, 10] for this run",
}


@pytest.fixture(scope="module")
def cnn_program(tmp_path_factory):
    """The tutorial's network (untrained) as paddle.jit.save writes it: convolutions, poolings, a reshape."""
    from paddle_mnist import models
    from paddle_mnist._paddle import paddle

    prefix = tmp_path_factory.mktemp("program") / "mnist"
    model = models.build("cnn", 10)
    model.eval()
    paddle.jit.save(model, str(prefix), input_spec=[paddle.static.InputSpec([None, 1, 28, 28], "float32", "image")])
    return prefix


def test_every_network_here_passes_the_program_check_with_the_shapes_paddle_declares(tmp_path):
    """The check works shapes out as paddle's kernels do: for each network and head, its shapes for a batch
    of three are the ones paddle.jit.save declares (-1 for the batch)."""
    import json

    from paddle_mnist import inference_check, models
    from paddle_mnist._paddle import paddle

    networks = [(name, None) for name in models.MODELS] + [("mlp", "sigmoid"), ("mlp", "tanh")]
    for name, activation in networks:
        for head in models.HEADS:
            model = models.build(name, head, activation)
            model.eval()
            prefix = tmp_path / f"{name}-{activation}-{head}"
            paddle.jit.save(model, str(prefix), input_spec=[paddle.static.InputSpec([None, 1, 28, 28], "float32")])
            inference_check.read_checked(prefix, head)
            program = json.loads(prefix.with_suffix(".json").read_text())["program"]
            ops = [op for region in program["regions"] for block in region["blocks"] for op in block["ops"]]
            worked = inference_check._Interpreter(prefix, 3).run(ops).values
            for op in ops:
                if op["#"] == "1.batch_norm_":  # its statistics' outputs are declared as paddle keeps them
                    continue
                for out in op["O"] if isinstance(op["O"], list) else [op["O"]]:
                    if out["TT"]["#"] == "0.t_dtensor":
                        declared = tuple(3 if d == -1 else d for d in out["TT"]["D"][1])
                        assert worked[out["%"]].shape == declared, (name, head, op["#"])


@pytest.mark.parametrize("attack", list(PROGRAM_WHY))
def test_a_crafted_program_is_refused_before_paddle_loads_it(attack, cnn_program, tmp_path):
    from paddle_mnist import inference_check
    from paddle_mnist.errors import ExportError

    prefix = tmp_path / "mnist"
    for suffix in (".json", ".pdiparams"):
        shutil.copy(f"{cnn_program}{suffix}", f"{prefix}{suffix}")
    inference_check.read_checked(prefix, 10)  # as written, it passes
    inference_attacks.craft(prefix, attack)
    with pytest.raises(ExportError) as refused:
        inference_check.read_checked(prefix, 10)
    assert str(refused.value) == f"{prefix}.json: {PROGRAM_WHY[attack]}"


@pytest.mark.parametrize(
    "attack, why",
    [
        ("a [N,3,32,32] input", PROGRAM_WHY["a [N,3,32,32] input"]),
        (inference_attacks.NAN_WEIGHTS, "the model gave [1, 10] outputs, not all finite"),  # checked as it runs
    ],
)
def test_predict_on_a_crafted_paddle_inference_export_says_why_in_one_line(attack, why, tiny_run, tmp_path):
    from paddle_mnist import export
    from paddle_mnist.testing.served import drawn_seven

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    prefix = run / "inference" / "mnist"
    export.export(run, prefix, fmt="paddle")
    inference_attacks.craft(prefix, attack)
    picture = tmp_path / "seven.png"
    picture.write_bytes(drawn_seven())
    argv = ["-m", "paddle_mnist", "predict", str(picture), "--model-dir", str(run), "--engine", "inference"]
    refused = run_limited(argv)
    assert refused.returncode == 1 and refused.stdout == "", refused.stderr[-2000:]
    assert refused.stderr.strip().splitlines() == [f"paddle-mnist predict: error: {prefix}.json: {why}"]
