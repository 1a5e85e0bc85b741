"""Run every hostile or broken input of issues 10, 22 and 30 against a version of the package and tabulate the outcome.

    python scripts/bench_hostile.py                          # this checkout
    python scripts/bench_hostile.py --pythonpath ../old      # another checkout (git worktree add ../old REV)

Each case runs in its own process under an address-space limit (``--limit-mb``, default 3072) and a
time limit (``--timeout``, default 60 s): exit code, the last line of stderr, peak RSS and seconds.
Prints a Markdown table.  The tests (tests/test_hostile.py, test_crash.py) check the same cases.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from paddle_mnist.testing import hostile, inference_attacks, onnx_attacks
from paddle_mnist.testing.data_files import json_payload, learnable_splits, write_json

TINY_MLP_ONE_EPOCH = "--model mlp --epochs 1 --batch-size 50 --lr 0.05".split()  # the model every case starts from


class Bench:
    def __init__(self, work: Path, env: dict, limit_mb: int, timeout: float):
        self.work, self.env, self.limit_mb, self.timeout = work, env, limit_mb, timeout
        self.data = write_json(work / "learnable.json.gz", json_payload(learnable_splits()))
        self.model = work / "model"
        self.cli("train", "--data", self.data, *TINY_MLP_ONE_EPOCH, "--out", self.model, check=True)
        self.picture = work / "digit.png"
        import numpy as np
        from PIL import Image

        pixels = np.zeros((28, 28), np.uint8)
        pixels[6:22, 12:16] = 255
        Image.fromarray(pixels).save(self.picture)

    def cli(self, *args, check=False, env=None, timeout=None):
        outcome = hostile.run_limited(
            ["-m", "paddle_mnist", *map(str, args)],
            limit_mb=self.limit_mb,
            timeout=timeout or self.timeout,
            env={**self.env, **(env or {})},
        )
        if check and outcome.returncode != 0:
            raise SystemExit(f"setup failed: {outcome.stderr[-2000:]}")
        return outcome

    def model_copy(self, name: str) -> Path:
        target = self.work / name
        shutil.copytree(self.model, target, symlinks=True)
        return target

    def plant(self, name: str, data: bytes | None = None, meta_change: dict | None = None, kind: str = "") -> Path:
        """A copy of the model dir whose best weights are ``data`` (hash recorded) or a FIFO, or whose metadata
        has ``meta_change`` applied."""
        model = self.model_copy(name)
        meta = json.loads((model / "mnist.json").read_text())
        best = model / meta["weights"]["best"]
        if data is not None or kind:
            best.unlink()
        if data is not None:
            best.write_bytes(data)
            meta["files"][best.name] = hashlib.sha256(data).hexdigest()
        if kind == "fifo":
            os.mkfifo(best)
        meta.update(meta_change or {})
        (model / "mnist.json").write_text(json.dumps(meta))
        return model

    def predict(self, model: Path, *extra):
        return self.cli("predict", self.picture, "--model-dir", model, *extra)


def cases(b: Bench):
    """(name, callable returning an Outcome), in the order of the issue."""
    w = b.work
    show = lambda path, **kw: b.cli("data", "show", "--data", path, "--out", w / "g.png", **kw)  # noqa: E731
    yield "valid JSON, 63,693 blank images (180 KB gzip)", lambda: show(hostile.blank_images_json(w / "blank.json.gz"))
    yield "gzip of 960 MB whitespace", lambda: show(hostile.gzip_members(w / "ws1.json.gz", b" " * (64 << 20), 15))
    yield "gzip of 5 GB whitespace", lambda: show(hostile.gzip_members(w / "ws5.json.gz", b" " * (64 << 20), 80))
    yield "raw IDX announcing 2^31 images", lambda: show(hostile.idx_claiming_billions(w / "idx"))
    yield "JSON nested 200,000 deep", lambda: show(hostile.deep_nesting_json(w / "deep.json.gz"))
    yield "JSON with a 5,000-digit number", lambda: show(hostile.huge_number_json(w / "num.json.gz"))
    yield (
        "JSON with an empty train split (train)",
        lambda: b.cli("train", "--data", empty_train(w / "empty.json.gz"), "--out", w / "o-empty", "--epochs", "1"),
    )
    yield "FIFO planted at the cache path", lambda: cache_fifo(b)
    yield ".pdparams: 9-byte memo index bomb", lambda: b.predict(b.plant("m1", hostile.MEMO_BOMB))
    yield ".pdparams: numpy.ndarray((1<<30,))", lambda: b.predict(b.plant("m2", hostile.NDARRAY_BOMB))
    yield ".pdparams: zero-stride array (V0 dtype)", lambda: b.predict(b.plant("m3", zero_stride_weights(b)))
    yield ".pdparams: tuple key nested 200,000 deep", lambda: b.predict(b.plant("m4", hostile.DEEP_TUPLE_KEY))
    yield ".pdparams: NaN weights", lambda: b.predict(b.plant("m5", nan_weights(b)))
    yield ".pdparams: float64 weights", lambda: b.predict(b.plant("m6", float64_weights(b)))
    yield ".pdparams: paddle.save(protocol=2) (legitimate)", lambda: b.predict(b.plant("m7", protocol2_weights(b)))
    yield "best weights are a FIFO", lambda: b.predict(b.plant("m8", kind="fifo"))
    yield "mnist.json: outputs 1000000", lambda: b.predict(b.plant("m9", meta_change={"outputs": 1_000_000}))
    yield (
        "mnist.json: weights at /dev/zero",
        lambda: b.predict(
            b.plant(
                "m10", meta_change={"weights": {"last": "/dev/zero", "best": "/dev/zero", "optimizer": "/dev/zero"}}
            )
        ),
    )
    yield "mnist.json: unknown loss", lambda: b.predict(b.plant("m11", meta_change={"loss": "hinge"}))
    yield "--resume, a listed file is /dev/zero", lambda: resume_dev_zero(b)
    yield "--resume after best weights deleted", lambda: resume_without_best(b)
    yield "predict: one LAB TIFF among good images", lambda: lab_batch(b)
    yield "two trainers on one --out (second)", lambda: two_trainers(b)
    yield (
        "train into a finished run, no --resume",
        lambda: b.cli("train", "--data", b.data, *TINY_MLP_ONE_EPOCH, "--seed", "9", "--out", b.model_copy("again")),
    )
    yield "--out is a file", lambda: b.cli("train", "--data", b.data, "--epochs", "1", "--out", b.data)
    yield "--seed -1", lambda: b.cli("train", "--data", b.data, "--seed", "-1", "--out", w / "o-seed")
    yield "export --out under a file", lambda: b.cli("export", "--model-dir", b.model_copy("e1"), "--out", b.data / "x")
    yield "corrupt exported model (--engine inference)", lambda: corrupt_export(b)
    yield "file name not UTF-8 (train)", lambda: non_utf8(b)
    yield "mirror sending forever", lambda: mirror(b, "endless")
    yield "mirror dripping a byte every 0.2 s", lambda: mirror(b, "drip")
    # issue 22
    for name, change in OPTIMIZER_STATES.items():
        yield f"--resume (Adam, one-cycle), .pdopt {name}", lambda change=change: resume_adam(b, change)
    huge = {"epochs_done": "9" * 5000}
    yield "mnist.json: 5,000-digit epochs_done (predict)", lambda: b.predict(huge_meta(b, "h1"))
    yield "mnist.json: 5,000-digit epochs_done (export)", lambda: b.cli("export", "--model-dir", huge_meta(b, "h2"))
    yield (
        "mnist.json: 5,000-digit epochs_done (train --resume)",
        lambda: b.cli(*hostile.train_command(b.data, huge_meta(b, "h3"), "--resume")[2:]),
    )
    del huge
    yield ".pdparams: a 5,000-digit integer key (2 KB)", lambda: b.predict(b.plant("k1", big_int_key()))
    yield ".pdparams: 10 MB of MARK", lambda: b.predict(b.plant("c1", b"\x80\x02" + b"(" * (10 << 20)))
    yield ".pdparams: 50 MB of MARK", lambda: b.predict(b.plant("c2", b"\x80\x02" + b"(" * (50 << 20)))
    yield ".pdparams: 10 MB of EMPTY_DICT", lambda: b.predict(b.plant("c3", b"\x80\x02" + b"}" * (10 << 20)))
    yield "the data through a symlink of another name, warm cache", lambda: cache_alias(b)
    for kind in ("a directory", "a FIFO", "/dev/zero", "a socket"):
        yield f"predict {kind}", lambda kind=kind: predict_special(b, kind)
    yield "predict a file name with a newline (stdout lines)", lambda: newline_name(b)
    yield "predict a float TIFF with one inf pixel", lambda: inf_tiff(b)
    # issue 30
    for name, damage in UNREADABLE.items():
        for resume in ((), ("--resume",)):
            label = f"train{' --resume' if resume else ''} over a run whose mnist.json holds {name}"
            yield label, lambda damage=damage, resume=resume: unreadable_run(b, damage, resume)
    picture = lambda path: b.cli("predict", path, "--model-dir", b.model)  # noqa: E731
    yield "predict a progressive 39-megapixel JPEG of 1,000 scans", lambda: picture(many_scans(w / "scans.jpg"))
    yield "predict a one-strip deflate 16-bit TIFF of 39 megapixels", lambda: picture(one_strip_tiff(w / "strip.tif"))
    for name, build in onnx_attacks.ATTACKS.items():
        yield f"predict --engine onnx, an export with {name}", lambda build=build: planted_export(b, build)
    for name in [*inference_attacks.ATTACKS, inference_attacks.NAN_WEIGHTS]:
        if name != "a convolution padded by 3,000":  # the mlp every case starts from has no convolution
            yield f"predict --engine inference, an export with {name}", lambda name=name: crafted_program(b, name)


def empty_train(path: Path) -> Path:
    payload = json_payload(learnable_splits())
    payload[0] = [[], []]
    return write_json(path, payload)


def cache_fifo(b: Bench):
    cache = b.work / "fifo-cache"
    cache.mkdir()
    digest = hashlib.sha256(b.data.read_bytes()).digest()
    for version in (1, 2):  # the cache key formats of earlier layouts (with the file's name)
        key = hashlib.sha256(f"v{version}".encode() + os.fsencode(b.data.name) + b"\0" + digest).hexdigest()
        os.mkfifo(cache / f"splits-{key[:32]}.npz")
    key = hashlib.sha256(b"v3:1" + digest).hexdigest()  # and today's: the content alone
    os.mkfifo(cache / f"splits-{key[:32]}.npz")
    return b.cli("data", "show", "--data", b.data, "--out", b.work / "g.png", env={"PADDLE_MNIST_CACHE": str(cache)})


def state_of(b: Bench) -> dict:
    import pickle

    return pickle.loads((b.model / "best.pdparams").read_bytes())


def nan_weights(b: Bench) -> bytes:
    import pickle

    import numpy as np

    state = state_of(b)
    state["body.0.weight"] = np.full_like(state["body.0.weight"], np.nan)
    return pickle.dumps(state, protocol=4)


def zero_stride_weights(b: Bench) -> bytes:
    """The real state with one weight replaced by an array of its shape and a 0-byte dtype (0 bytes of data)."""
    import pickle

    import numpy as np

    state = state_of(b)
    state["body.0.weight"] = np.empty(state["body.0.weight"].shape, dtype="V0")
    return pickle.dumps(state, protocol=4)


def float64_weights(b: Bench) -> bytes:
    import pickle

    state = state_of(b)
    state["body.0.weight"] = state["body.0.weight"].astype("float64")
    return pickle.dumps(state, protocol=4)


def protocol2_weights(b: Bench) -> bytes:
    import pickle

    return pickle.dumps(state_of(b), protocol=2)


def resume_dev_zero(b: Bench):
    model = b.model_copy("r1")
    meta = json.loads((model / "mnist.json").read_text())
    last = model / meta["weights"]["last"]
    last.unlink()
    os.symlink("/dev/zero", last)
    return b.cli(*hostile.train_command(b.data, model, "--resume")[2:])


def resume_without_best(b: Bench):
    model = b.model_copy("r2")
    meta = json.loads((model / "mnist.json").read_text())
    for name in {meta["weights"]["best"], "best.pdparams"}:
        (model / name).unlink(missing_ok=True)
    return b.cli(*hostile.train_command(b.data, model, "--resume")[2:])


def lab_batch(b: Bench):
    from PIL import Image

    lab = b.work / "lab.tif"
    Image.new("RGB", (40, 40), (200, 200, 200)).convert("LAB").save(lab)
    return b.cli("predict", b.picture, lab, b.picture, "--model-dir", b.model)


def two_trainers(b: Bench):
    out = b.work / "two"
    args = ["train", "--data", b.data, "--model", "mlp", "--epochs", "30", "--batch-size", "50", "--out", out]
    first = subprocess.Popen(
        [sys.executable, "-m", "paddle_mnist", *map(str, args)],
        env={**os.environ, **b.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "mnist.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return b.cli(*args[:-2], "--epochs", "1", "--out", out)
    finally:
        first.kill()
        first.wait()


def corrupt_export(b: Bench):
    model = b.model_copy("e2")
    (model / "inference").mkdir(exist_ok=True)  # train ends with an ONNX export there
    (model / "inference" / "mnist.json").write_text("garbage")
    (model / "inference" / "mnist.pdiparams").write_bytes(b"x")
    return b.predict(model, "--engine", "inference")


def non_utf8(b: Bench):
    odd = b.work / os.fsdecode(b"d\xffata.json.gz")
    shutil.copy(b.data, odd)
    return b.cli("train", "--data", odd, "--model", "linear", "--epochs", "1", "--out", b.work / "o-utf8")


OPTIMIZER_STATES = {
    "{} (hash matching)": lambda state: {},
    "9-byte memo-index pickle": None,
    "LR_Scheduler.last_epoch 'x'": hostile.scheduler(last_epoch="x"),
    "LR_Scheduler.last_epoch 10**9": hostile.scheduler(last_epoch=10**9),
    "a moment of the wrong shape": lambda state: {
        **state,
        "body.0.weight_moment1_0": __import__("numpy").zeros(3, "f4"),
    },
    "a moment missing": hostile.without("body.0.weight_moment1_0"),
}
ADAM = hostile.ADAM


def resume_adam(b: Bench, change):
    """A finished Adam run whose optimizer state is replaced (its hash recorded), resumed."""
    from paddle_mnist import checkpoint  # this checkout's, which writes the same files as any

    out = b.work / f"adam-{len(list(b.work.glob('adam-*')))}"
    b.cli("train", "--data", b.data, "--out", out, *ADAM, check=True)
    meta = json.loads((out / "mnist.json").read_text())
    path = out / meta["weights"]["optimizer"]
    data = hostile.MEMO_BOMB if change is None else checkpoint.save_state_bytes(change(checkpoint.load_state(path)))
    path.unlink()
    path.write_bytes(data)
    meta["files"][path.name] = hashlib.sha256(data).hexdigest()
    (out / "mnist.json").write_text(json.dumps(meta))
    return b.cli("train", "--data", b.data, "--out", out, *ADAM, "--resume")


def huge_meta(b: Bench, name: str) -> Path:
    model = b.model_copy(name)
    meta = model / "mnist.json"
    text = meta.read_text()
    done = json.loads(text)["epochs_done"]
    meta.write_text(text.replace(f'"epochs_done": {done}', '"epochs_done": ' + "9" * 5000))
    return model


def big_int_key() -> bytes:
    import pickle

    import numpy as np

    return pickle.dumps({10**5000: np.zeros(1, np.float32)}, protocol=2)


def cache_alias(b: Bench):
    """The real data (if ../shared/data has it) loaded once, then through a symlink of another name: the
    second load's seconds, and how many cache files there are after it (in the last line)."""
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.json.gz"
    source = real if real.exists() else b.data
    cache = b.work / "alias-cache"
    alias = b.work / "another-name.json.gz"
    alias.symlink_to(source)
    env = {"PADDLE_MNIST_CACHE": str(cache)}
    b.cli("data", "show", "--data", source, "--out", b.work / "g.png", env=env, check=True)
    code = (
        "import sys, pathlib; from paddle_mnist.data import splits; splits.load(sys.argv[1]); "
        "print(len(list(pathlib.Path(sys.argv[2]).glob('splits-*.npz'))), 'cache file(s)', file=sys.stderr)"
    )
    return hostile.run_limited(
        ["-c", code, str(alias), str(cache)], limit_mb=b.limit_mb, timeout=b.timeout, env={**b.env, **env}
    )


def predict_special(b: Bench, kind: str):
    import socket

    path = {
        "a directory": b.work / "a-dir",
        "a FIFO": b.work / "a-fifo",
        "/dev/zero": Path("/dev/zero"),
        "a socket": b.work / "a-socket",
    }[kind]
    listener = None
    if kind == "a directory":
        path.mkdir(exist_ok=True)
    elif kind == "a FIFO" and not path.exists():
        os.mkfifo(path)
    elif kind == "a socket":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(path))
    try:
        return b.cli("predict", path, "--model-dir", b.model)
    finally:
        if listener:
            listener.close()


def newline_name(b: Bench):
    """The last line is how many lines stdout had for one image (1 is right)."""
    forged = b.work / "x.png: 7 (p=1.000) top-1: 7 1.000\nreal.png"
    shutil.copy(b.picture, forged)
    outcome = b.cli("predict", forged, "--model-dir", b.model)
    outcome.stderr += f"\n{len(outcome.stdout.splitlines())} stdout line(s) for one image"
    return outcome


def inf_tiff(b: Bench):
    import numpy as np
    from PIL import Image

    values = np.full((40, 40), 1.0, np.float32)
    values[10:30, 18:22] = 0.0
    values[0, 0] = np.inf
    path = b.work / "float.tiff"
    Image.fromarray(values, mode="F").save(path)
    return b.cli("predict", path, "--model-dir", b.model)


class _Mirror(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        drip = "drip" in self.path
        try:
            for _ in range(600 if drip else 100_000):  # bounded: at most 2 minutes, or 6.5 GB
                self.wfile.write(b"\0" if drip else b"\0" * (1 << 16))
                if drip:
                    self.wfile.flush()
                    time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass


def mirror(b: Bench, mode: str):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    server.daemon_threads, server.block_on_close = True, False
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{mode}/"
        env = {
            "PADDLE_MNIST_MIRRORS": url,
            "PADDLE_MNIST_CACHE": str(b.work / f"dl-{mode}"),
            "PADDLE_MNIST_OFFLINE": "",
            "PADDLE_MNIST_DATA": "",
            "HOME": str(b.work / "home"),
        }
        return b.cli("data", "show", "--out", b.work / "g.png", env=env)
    finally:
        server.shutdown()
        server.server_close()


UNREADABLE = {
    "a newer format": lambda text: text.replace('"format": 3', '"format": 4', 1),
    "a 5,000-digit integer in its history": lambda text: text.replace('"epoch": 1', '"epoch": 1' + "0" * 5000, 1),
    "1e400 in its history": lambda text: text.replace('"train_loss": ', '"train_loss": 1e400, "x": ', 1),
}


def unreadable_run(b: Bench, damage, resume: tuple):
    """``train`` into a copy of the run whose metadata no longer validates; the line says which of its weight
    and optimizer files are still there afterwards."""
    run = b.model_copy(f"unreadable-{len(list(b.work.glob('unreadable-*')))}")
    (run / "mnist.json").write_text(damage((run / "mnist.json").read_text()))
    versioned = sorted(p.name for p in run.iterdir() if p.name.startswith(("epoch-", "best-")))
    outcome = b.cli("train", "--data", b.data, *TINY_MLP_ONE_EPOCH, "--out", run, *resume)
    kept = sum((run / name).exists() for name in versioned)
    lines = outcome.stderr.rstrip().splitlines() or [""]
    outcome.stderr = "\n".join(lines[:-1] + [f"[{kept} of {len(versioned)} set files left] {lines[-1]}"])
    return outcome


def many_scans(path: Path) -> Path:
    """A progressive 39-megapixel JPEG whose second scan is repeated 1,000 times."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (7200, 5400), 200).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    first = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)
    end = data.index(b"\xff\xda", first + 2)
    path.write_bytes(data[:end] + data[first:end] * 1000 + data[end:])
    return path


def one_strip_tiff(path: Path) -> Path:
    import numpy as np
    from PIL import Image

    pixels = np.full((5400, 7200), 200 * 257, np.uint16)
    Image.fromarray(pixels).save(path, "TIFF", compression="tiff_adobe_deflate", strip_size=1 << 40)
    return path


def planted_export(b: Bench, build):
    run = b.model_copy(f"export-{len(list(b.work.glob('export-*')))}")
    onnx_attacks.plant(run, build())
    return b.predict(run, "--engine", "onnx")


def crafted_program(b: Bench, attack: str):
    run = b.model_copy(f"program-{len(list(b.work.glob('program-*')))}")
    b.cli("export", "--model-dir", run, check=True)
    inference_attacks.craft(run / "inference" / "mnist", attack)
    return b.predict(run, "--engine", "inference")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pythonpath", default=None, help="checkout to test instead of this one (default: this one)")
    parser.add_argument("--limit-mb", type=int, default=3072, help="RLIMIT_AS per case in MB (default: 3072)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds before a case is killed (default: 60)")
    parser.add_argument("--only", default=None, help="run the cases whose name contains this (default: all)")
    args = parser.parse_args()
    env = {"PYTHONPATH": str(Path(args.pythonpath).resolve())} if args.pythonpath else {}
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        work = Path(tmp)
        os.chdir(work)  # python -c puts the working directory first on sys.path: inside a checkout, it would win
        env.update(PADDLE_MNIST_CACHE=str(work / "cache"), PADDLE_MNIST_OFFLINE="1")
        bench = Bench(work, env, args.limit_mb, args.timeout)
        print("| case | exit | last line of stderr | peak RSS (MB) | seconds |\n| --- | --- | --- | --- | --- |")
        for name, run in cases(bench):
            if args.only and args.only not in name:
                continue
            outcome = run()
            line = outcome.last_line.replace(str(work), "…").replace("|", "\\|")
            line = line if len(line) <= 110 else line[:107] + "..."
            code = "killed (time limit)" if outcome.returncode == -9 else outcome.returncode
            print(f"| {name} | {code} | {line} | {outcome.peak_rss_mb:,.0f} | {outcome.seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
