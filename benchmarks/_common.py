"""Shared plumbing of the benchmarks: data, thread counts, child processes, statistics.

Each measurement runs in a fresh child process (``python <script> --child '<json>'``)
so that the peak resident memory of one framework (``ru_maxrss`` of the child) is
not mixed with the other's, and neither inherits the other's caches or threads.
The parent alternates the two frameworks, so slow phases of a busy machine hit both.
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

REFERENCE_DATA = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist


def default_data_dir() -> str | None:
    """``$LENET_DATA_DIR``, else the Fashion-MNIST files of the Debian package if installed."""
    if os.environ.get("LENET_DATA_DIR"):
        return os.environ["LENET_DATA_DIR"]
    return str(REFERENCE_DATA) if REFERENCE_DATA.is_dir() else None


def load_split(data_dir: str, split: str, limit: int | None):
    """uint8 images (N, 28, 28) and int64 labels of one split, the first ``limit`` of them."""
    from lenet_core.mnist import load_mnist
    images, labels = load_mnist(split, root=data_dir, download=False, quiet=True)
    if limit:
        images, labels = images[:limit], labels[:limit]
    return np.ascontiguousarray(images), labels.astype(np.int64)


def stage_split(data_dir: str, split: str, limit: int | None, workdir: str) -> str:
    """Decode the split once in the parent and save it as a plain .npz for the children.

    Decompressing the gzip files briefly needs about three times the data's size; done
    here, that spike does not count towards the children's peak memory.
    """
    images, labels = load_split(data_dir, split, limit)
    path = os.path.join(workdir, f"{split}.npz")
    np.savez(path, images=images, labels=labels)
    return path


def load_staged(path: str):
    with np.load(path) as f:
        return f["images"], f["labels"]


class BatchMaker:
    """uint8 28x28 images -> float32 (B, 1, 32, 32) in [0, 1] with a 2-pixel zero border.

    The data set stays uint8 (47 MB for 60,000 images instead of 246 MB as float32
    32x32), and each batch is scaled and padded into a reused buffer; both
    frameworks get their batches from here, so the cost is the same for both.
    """

    def __init__(self, images):
        self.images = images
        self.buffers = {}

    def __call__(self, idx):
        b = len(idx)
        buf = self.buffers.get(b)
        if buf is None:
            buf = self.buffers[b] = np.zeros((b, 1, 32, 32), dtype=np.float32)
        np.multiply(self.images[idx], np.float32(1 / 255), out=buf[:, 0, 2:30, 2:30])
        return buf


def blas_threads() -> tuple[int, str]:
    """Threads NumPy's BLAS will use, and how that was found out."""
    try:
        from threadpoolctl import threadpool_info
        for info in threadpool_info():
            if info.get("user_api") == "blas":
                return int(info["num_threads"]), f"threadpoolctl ({info.get('internal_api')})"
    except ImportError:
        pass
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var):
            return int(os.environ[var]), f"${var}"
    return os.cpu_count() or 1, "os.cpu_count() (install threadpoolctl to detect)"


def set_threads(framework: str, threads: int) -> None:
    """Use ``threads`` threads for NumPy's BLAS (lenet_core) or for PyTorch's intra-op pool."""
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
        return
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads, user_api="blas")
    except ImportError:  # the environment variables were set before NumPy started (see run_child)
        pass


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB: ``VmHWM`` on Linux, the
    high-water mark of this program's own address space (``ru_maxrss`` survives ``fork`` +
    ``exec``, so a child would report at least its parent's size); see
    ``lenet_core.parallel.process_stats``, which lenet_core's workers report with too."""
    from lenet_core.parallel import process_stats
    return process_stats()["peak_rss_mb"]


def worker_stats(framework: str) -> list[dict]:
    """Peak memory and CPU seconds of lenet_core's worker processes (none for PyTorch,
    whose threads live in its own process and are counted there)."""
    if framework != "lenet_core":
        return []
    from lenet_core.parallel import DataParallel
    return DataParallel.worker_stats()


def torch_installed() -> bool:
    """Whether PyTorch can be imported, without importing it (the parent stays small)."""
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def cpu_seconds() -> float:
    """User plus system CPU seconds of this process so far."""
    from lenet_core.parallel import process_stats
    return process_stats()["cpu_seconds"]


class SyntheticLoad:
    """``with SyntheticLoad(n, duty):`` keeps ``n`` other processes busy meanwhile, each spinning
    for ``duty`` of every 20 ms and sleeping the rest: a host shared with other programs, the
    same for both frameworks. ``n = 0`` does nothing."""

    SPIN = ("import sys, time\nduty = float(sys.argv[1])\nwhile True:\n    t = time.perf_counter()\n"
            "    while time.perf_counter() - t < 0.02 * duty: pass\n    time.sleep(0.02 * (1 - duty))\n")

    def __init__(self, n: int = 0, duty: float = 1.0):
        self.n, self.duty, self.procs = n, duty, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", self.SPIN, str(self.duty)]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


def run_child(script: str, job: dict, threads: int, load: SyntheticLoad | None = None) -> dict:
    """Run ``script --child job`` in a fresh interpreter (under ``load``, if given); return the
    JSON it prints last."""
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    with load or SyntheticLoad(0):
        proc = subprocess.run([sys.executable, script, "--child", json.dumps(job)], env=env,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({job}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarize(values):
    """(median, min, max) of a list of numbers."""
    return statistics.median(values), min(values), max(values)


def geomean(values):
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def machine_description(threads: int, how: str) -> list[str]:
    """Lines describing the machine and the software, for the report."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [f"machine: {cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
             f"python {platform.python_version()}, numpy {np.__version__}"]
    try:
        from threadpoolctl import threadpool_info
        blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if blas:
            lines[-1] += f" ({blas[0].get('internal_api')} {blas[0].get('version')}, {blas[0].get('architecture')})"
    except ImportError:
        pass
    if torch_installed():
        from importlib.metadata import version
        lines[-1] += f", torch {version('torch')}"
    else:
        lines[-1] += ", torch not installed"
    lines.append(f"threads: {threads} for both (NumPy BLAS via {how}; torch.set_num_threads({threads}))")
    if hasattr(os, "getloadavg"):  # (a synthetic load, if any, is described by the caller)
        lines.append("load average at start (1/5/15 min): " + " / ".join(f"{v:.1f}" for v in os.getloadavg()))
    return lines
