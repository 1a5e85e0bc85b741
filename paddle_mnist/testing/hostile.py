"""Running a command under an address-space limit and measuring it: for the hostile-input tests
and ``scripts/bench_hostile.py``, so a regression fails the test instead of exhausting the machine."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

LIMIT_MB = 2048  # a paddle process needs ~0.8 GB of address space; every attack here asked for far more


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float
    seconds: float

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


# Sets the limit, runs ``-m MODULE ...`` or ``-c CODE ...``, and writes its own peak RSS at exit.  The peak is
# read from /proc (VmHWM of the process after exec): wait4's ru_maxrss would also count the RSS the child
# shared with the (large) test process between fork and exec.
_WRAPPER = """
import atexit, resource, runpy, sys
limit_mb, report, mode, target, *rest = sys.argv[1:]
if int(limit_mb):
    resource.setrlimit(resource.RLIMIT_AS, (int(limit_mb) << 20, int(limit_mb) << 20))
def peak():
    with open("/proc/self/status") as status, open(report, "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM")).split()[1])
atexit.register(peak)
if mode == "-m":
    sys.argv = [target, *rest]
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    sys.argv = ["-c", *rest]
    exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
"""


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return int(next(line for line in status if line.startswith("VmHWM")).split()[1])
    except (OSError, StopIteration, ValueError):
        return 0


def run_limited(
    args: list[str],
    limit_mb: int | None = LIMIT_MB,
    timeout: float = 180,
    env: dict | None = None,
    python: str = sys.executable,
) -> Outcome:
    """``python -m MODULE ...`` or ``python -c CODE ...`` under RLIMIT_AS: exit code, output, peak RSS, seconds.

    A command still running after ``timeout`` seconds is killed (exit code -9).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as report:
        start = time.monotonic()
        proc = subprocess.Popen(
            [python, "-c", _WRAPPER, str(limit_mb or 0), report.name, *args],
            stdout=out,
            stderr=err,
            env={**os.environ, **(env or {})},
        )
        peak_kb = 0
        while proc.poll() is None:
            peak_kb = max(peak_kb, _hwm_kb(proc.pid))
            if time.monotonic() - start > timeout:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.01)
        seconds = time.monotonic() - start
        reported = report.read().strip()
        peak_kb = max(peak_kb, int(reported) if reported.isdigit() else 0)
        out.seek(0)
        err.seek(0)
        return Outcome(
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            peak_kb / 1024,
            seconds,
        )


# --- the recipes the hostile cases train (tests/test_hostile.py and scripts/bench_hostile.py) ------

TINY_MLP = "--model mlp --epochs 2 --batch-size 50 --lr 0.05".split()  # conftest's tiny_model_dir, resumed
ADAM = "--model mlp --optimizer adam --schedule onecycle --lr 0.003 --batch-size 50 --epochs 2".split()


def train_command(data, out, *flags) -> list[str]:
    """``-m paddle_mnist train`` of ``TINY_MLP`` on ``data`` into ``out``, for ``run_limited``."""
    return ["-m", "paddle_mnist", "train", *TINY_MLP, "--data", str(data), "--out", str(out), *map(str, flags)]


def without(key):
    """An optimizer-state change: ``key`` removed."""
    return lambda state: {k: v for k, v in state.items() if k != key}


def scheduler(**fields):
    """An optimizer-state change: the scheduler's ``fields`` replaced."""
    return lambda state: {**state, "LR_Scheduler": {**state["LR_Scheduler"], **fields}}


# --- crafted files: each the smallest form of an attack that broke an earlier version ----------


def gzip_members(path, chunk: bytes, repeat: int):
    """A gzip file that decompresses to ``chunk * repeat``: one compressed member, repeated (RFC 1952 allows it)."""
    import gzip

    member = gzip.compress(chunk, compresslevel=9, mtime=0)
    with open(path, "wb") as f:
        for _ in range(repeat):
            f.write(member)
    return path


def blank_images_json(path, per_split: int = 21_231):
    """Valid tutorial JSON of ``per_split`` blank images per split (~200 MB of text in a ~180 KB gzip)."""
    import gzip

    image = b"[" + b",".join([b"0.0"] * 784) + b"]"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(b"[")
        for split in range(3):
            f.write(b"[[")
            for i in range(per_split):
                f.write(image if i == 0 else b"," + image)
            f.write(b"],[" + b",".join([b"0"] * per_split) + b"]]" + (b"," if split < 2 else b""))
        f.write(b"]")
    return path


def deep_nesting_json(path, depth: int = 200_000):
    import gzip

    path.write_bytes(gzip.compress(b"[" * depth + b"]" * depth))
    return path


def huge_number_json(path, digits: int = 5_000):
    import gzip

    path.write_bytes(gzip.compress(b"[[[[" + b"7" * digits + b"]],[0]],[[],[]],[[],[]]]"))
    return path


def idx_claiming_billions(directory):
    """Four IDX files whose train-images header announces 2**31-1 images in a 16-byte file."""
    import struct

    directory.mkdir(parents=True, exist_ok=True)
    names = {
        "train-images-idx3-ubyte": struct.pack(">iiii", 2051, 2**31 - 1, 28, 28),
        "train-labels-idx1-ubyte": struct.pack(">ii", 2049, 0),
        "t10k-images-idx3-ubyte": struct.pack(">iiii", 2051, 0, 28, 28),
        "t10k-labels-idx1-ubyte": struct.pack(">ii", 2049, 0),
    }
    for name, data in names.items():
        (directory / name).write_bytes(data)
    return directory


MEMO_BOMB = b"\x80\x02}r\xff\xff\xff\x7f."  # 9 bytes: memo index 2**31-1
NDARRAY_BOMB = b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x00@\x85\x85R."  # numpy.ndarray((1 << 30,))
ZERO_STRIDE = (
    b"\x80\x02}X\r\x00\x00\x00body.0.weight"  # {"body.0.weight": a [2**40] array
    b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"  # of a 0-byte dtype}
    b"(K\x01\x8a\x06\x00\x00\x00\x00\x00\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00V0\x89\x88\x87R"
    b"\x89C\x00tbs."
)
DEEP_TUPLE_KEY = b"\x80\x02})" + b"\x85" * 200_000 + b"K\x01s."  # {((((...)))): 1}, 200,000 deep
