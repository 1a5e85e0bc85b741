"""A run directory's ONNX export is not trusted for its matching record: each crafted export of issue 30's
case 5 is refused in one line, within bounded memory and time, before or as it first runs; under ``auto``
paddle answers instead, saying why."""

from __future__ import annotations

import shutil

import pytest

from paddle_mnist.testing import onnx_attacks
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
