"""Data parallelism on the CPU: every batch split over one process per core.

Why. NumPy runs every elementwise operation, every copy and every pooling step on one
core; only the matrix products use BLAS's threads, and in LeNet-5 the one-core
operations are most of a training step. Threads do not help: between its NumPy calls
each thread needs Python's global interpreter lock, so two threads mostly take turns.
Processes share no lock.

How, for a batch on ``P`` processes (this one and ``P - 1`` workers):

1. the batch is cut into ``P`` contiguous shards of nearly equal size (:meth:`DataParallel.plan`;
   the cut depends only on the batch size and ``P``);
2. the weights and the batch are copied into memory that every worker has mapped;
3. every process takes a shard nobody has taken yet, runs :func:`shard_step` on it --
   forward, loss and backward of those images alone, a task that needs nothing from any
   earlier one -- and takes another, until none is left. A worker that is late, because
   something else runs on its core, finds its shard already done by another process;
4. the shards' gradients are added up in shard order. The loss of a batch is the mean of
   its images' losses, so the gradient of the batch is the sum of the shards' gradients
   when each shard's loss is weighted by ``n_shard / N``.

Every process computes with one BLAS thread. Which process computed a shard changes none
of its bits, and the sum is always taken in the same order, so the same seed, data and
number of processes give bit-identical weights; against one process only the rounding
differs. :meth:`DataParallel.infer` splits the same way and returns the outputs.

The pieces, all from the standard library: the workers are plain ``python`` subprocesses
connected by :mod:`multiprocessing.connection`, started on first use and kept for the
session (not :mod:`multiprocessing`'s or :mod:`concurrent.futures`' pools: outside Linux's
``fork`` their workers start by re-running the caller's main script, which breaks every
script without an ``if __name__ == "__main__":`` guard). The shards not yet taken are
tokens in a pipe that every process reads: the operating system gives each token to one
reader. The shared memory is :mod:`mmap` of a file whose name is deleted at once; the
workers get it as an open file descriptor.

How many processes: ``LENET_PROCESSES`` if set, else the number of threads NumPy's BLAS
would use (so ``OPENBLAS_NUM_THREADS=1`` also means one process), at most 4; one on
Windows, whose processes cannot share the pipe this way.
"""
from __future__ import annotations

import atexit
import contextlib
import mmap
import os
import pickle
import resource
import secrets
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
import warnings
from multiprocessing.connection import Client, Listener, wait
from multiprocessing.reduction import recv_handle, send_handle

import numpy as np

from .fast import engine_of, to_fast
from .fast import tanh as fast_tanh
from .fast.threads import blas_threads, one_blas_thread
from .layers import Dropout
from .losses import SoftmaxCrossEntropy
from .network import Sequential

__all__ = ["DataParallel", "WorkerDied", "shard_step", "default_processes", "blas_threads", "shutdown_workers",
           "process_stats", "MIN_SHARD"]

MIN_SHARD = 8               # fewer images than this per shard, and sending them costs more than it saves
MAX_DEFAULT_PROCESSES = 4   # more only on request: LeNet-5's batches are small, shards get few


def shard_step(model, x, y, batch_size: int) -> tuple[float, int]:
    """Forward, loss and backward of one shard ``(x, y)`` of a batch of ``batch_size`` images.

    Leaves in the model's ``grads`` the shard's share of the batch's gradient (its mean
    loss weighted by ``len(x) / batch_size``) and returns the loss summed over the shard's
    images and the number it classified correctly. The shards' sums add up to the batch's.
    """
    loss_fn = SoftmaxCrossEntropy()
    logits = model.forward(x)
    loss = loss_fn.forward(logits, y)
    dlogits = loss_fn.backward() * logits.dtype.type(len(x) / batch_size)
    model.backward(dlogits, input_grad=False)          # nobody needs dL/d(images)
    return loss * len(x), int((logits.argmax(axis=1) == y).sum())


# ---------------------------------------------------------------------------
# How many processes, and what they cost
# ---------------------------------------------------------------------------

def default_processes() -> int:
    """``LENET_PROCESSES`` if set, else BLAS's thread count (at most ``MAX_DEFAULT_PROCESSES``)."""
    value = os.environ.get("LENET_PROCESSES", "").strip()
    if value:
        try:
            count = int(value)
        except ValueError:
            raise ValueError(f"LENET_PROCESSES must be a whole number of processes, got {value!r}") from None
        if count < 1:
            raise ValueError(f"LENET_PROCESSES must be at least 1, got {count}")
        return count
    return 1 if os.name == "nt" else min(blas_threads() or 1, MAX_DEFAULT_PROCESSES)


def process_stats() -> dict:
    """``{"peak_rss_mb", "cpu_seconds"}`` of this process: peak resident memory in MB (VmHWM on
    Linux, which unlike ru_maxrss does not count the parent's memory before ``exec``) and CPU
    seconds, user plus system. The workers report theirs with it, and so do the benchmarks."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
    try:
        with open("/proc/self/status") as fh:
            peak = next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        pass
    return {"peak_rss_mb": peak, "cpu_seconds": usage.ru_utime + usage.ru_stime}


# ---------------------------------------------------------------------------
# What the processes share: memory, and the shards not yet taken
# ---------------------------------------------------------------------------


class _SharedBlock:
    """Memory every process maps: a file in ``/dev/shm`` (or the temporary folder) whose name is
    deleted at once, so nothing is left behind even after a crash. Workers get its descriptor."""

    def __init__(self, nbytes: int, fd: int | None = None):
        self.nbytes = max(int(nbytes), 1)
        if fd is None:
            folder = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
            fd, path = tempfile.mkstemp(prefix="lenet-core-", dir=folder)
            os.unlink(path)
            os.ftruncate(fd, self.nbytes)
        self.fd = fd
        self.buffer = mmap.mmap(fd, self.nbytes)

    def array(self, offset: int, shape, dtype) -> np.ndarray:
        return np.ndarray(tuple(shape), dtype=dtype, buffer=self.buffer, offset=int(offset))

    def __del__(self):
        os.close(self.fd)


class _Tokens:
    """The shards not yet taken, as 4-byte tokens ``step << 8 | shard`` in a pipe that every
    process reads. Taking one is one ``read`` of 4 bytes, which the operating system gives to
    one reader only, so no two processes ever take the same shard."""

    def __init__(self, fds=None):
        self.r, self.w = os.pipe() if fds is None else fds
        os.set_blocking(self.r, False)

    def put(self, step: int, count: int) -> None:
        os.write(self.w, b"".join(struct.pack("<I", (step << 8 | k) & 0xFFFFFFFF) for k in range(count)))

    def take(self, step: int):
        """The next shard of batch ``step``, or None when none is left. (A worker still on an
        earlier batch may meet a token of a later one: it puts it back.)"""
        try:
            token = struct.unpack("<I", os.read(self.r, 4))[0]
        except BlockingIOError:
            return None
        if token >> 8 != step & 0xFFFFFF:
            os.write(self.w, struct.pack("<I", token))
            return None
        return token & 0xFF

    def drain(self):
        try:
            while os.read(self.r, 4096):
                pass
        except BlockingIOError:
            pass


# ---------------------------------------------------------------------------
# One shard, and the worker process
# ---------------------------------------------------------------------------


def _run_shard(job, k, model, weights, io):
    """Shard ``k`` of ``job`` with ``model``, here or in a worker (the same code, the same bits):
    the images come from ``io``; the outputs (inference) or the gradients (training) go to the
    shard's place in ``io`` or its slot in ``weights``."""
    sl, dtype = job["shards"][k], model.dtype
    x = io.array(sl.start * job["x_bytes"], (sl.stop - sl.start,) + job["x_shape"], dtype)
    if job["kind"] == "infer":
        out = model.infer(x)
        np.copyto(io.array(job["out_offset"] + sl.start * out[0].nbytes, out.shape, dtype), out)
        return None
    result = shard_step(model, x, job["labels"][sl], job["batch_size"])
    for i, name, shape, offset in job["layout"]:
        np.copyto(weights.array(offset + job["params_bytes"] * (k + 1), shape, dtype), model.layers[i].grads[name])
    return result


def _serve(conn, tokens: _Tokens):
    """Worker loop: every request gets one reply, ``("ok", value)`` or ``("error", exception, traceback)``.
    For a batch the value is ``(step, [(shard, result), ...])``: the shards this worker took."""
    one_blas_thread()                   # for the life of this process
    warnings.simplefilter("ignore")         # a diverging run's overflows are the caller's to report
    np.seterr(all="ignore")
    blocks, models = {}, {}                 # the shared memory; the networks built, by architecture
    while True:
        try:
            kind, job, new_blocks = conn.recv()
            for role, nbytes in new_blocks:     # their descriptors follow the message
                blocks[role] = _SharedBlock(nbytes, recv_handle(conn))
                if role == "weights":
                    models.clear()              # their parameters viewed the old block
        except (EOFError, OSError):             # the caller went away
            return
        if kind == "close":
            return
        try:
            if kind == "stats":
                reply = ("ok", process_stats())
            else:
                done = []
                while (k := tokens.take(job["step"])) is not None:
                    if job["architecture"] not in models:
                        models[job["architecture"]] = _build(job, blocks["weights"])
                    model = models[job["architecture"]]
                    for layer, training in zip(model.layers, job["modes"]):
                        layer.training = training
                    done.append((k, _run_shard(job, k, model, blocks["weights"], blocks["io"])))
                reply = ("ok", (job["step"], done))
        except Exception as exc:  # sent back and raised in the caller
            reply = ("error", exc, traceback.format_exc())
        try:
            conn.send(reply)
        except Exception as exc:  # e.g. an exception that cannot be pickled
            conn.send(("error", RuntimeError(str(exc)), traceback.format_exc()))


def _build(job, weights):
    """The job's network, its parameters viewing the shared weights."""
    config, dtype, engine = pickle.loads(job["architecture"])
    model = Sequential.from_config(config, np.dtype(dtype))
    model = to_fast(model) if engine == "fast" else model
    for i, name, shape, offset in job["layout"]:
        model.layers[i].params[name] = weights.array(offset, shape, dtype)
    return model


def _worker_main():
    """Entry point of a worker: read the address from stdin, connect back, serve. Ctrl-C (and
    Jupyter's "interrupt kernel", which signals the whole process group) is ignored here: the
    caller handles it and replaces its workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    boot = pickle.load(sys.stdin.buffer)
    _serve(Client(boot["address"], authkey=boot["authkey"]), _Tokens(boot["tokens"]))


_WORKER_BOOT = ("import pickle, sys; sys.path[:0] = pickle.load(sys.stdin.buffer); "
                "from lenet_core.parallel import _worker_main; _worker_main()")


class WorkerDied(RuntimeError):
    """A worker process ended in the middle of a batch (killed, out of memory)."""


class _Workers:
    """The worker processes and what they share, one set for every :class:`DataParallel`."""

    def __init__(self):
        self.lock = threading.RLock()        # one batch at a time
        self.running: list = []              # [(process, connection)]
        self.tokens = None                   # the shards not yet taken (made with the first worker)
        self.step = 0                        # batches handed out so far
        self.blocks: dict = {}               # role ("weights", "io") -> _SharedBlock
        self.mapped: dict = {}               # connection -> {role: block it has mapped}
        self.unanswered: dict = {}           # connection -> requests it has not replied to yet

    def get(self, count: int) -> list:
        """At least ``count`` live connections (call with the lock held)."""
        if any(process.poll() is not None for process, _ in self.running):
            self.kill()                      # one died (killed, out of memory): start afresh
        if self.tokens is None:
            self.tokens = _Tokens()
        while len(self.running) < count:
            process, conn = self._start(len(self.running) + 1)
            self.running.append((process, conn))
            self.mapped[conn], self.unanswered[conn] = {}, 0
        return [conn for _, conn in self.running[:count]]

    def _start(self, number: int, timeout: float = 60.0):
        authkey = secrets.token_bytes(32)
        tokens = (self.tokens.r, self.tokens.w)
        with Listener(authkey=authkey) as listener:
            # the workers compute tanh as this process does, so that no shard depends on where it ran
            env = dict(os.environ, LENET_TANH="rational" if fast_tanh.rational_pays() else "numpy")
            process = subprocess.Popen([sys.executable, "-c", _WORKER_BOOT], stdin=subprocess.PIPE, pass_fds=tokens,
                                       env=env)
            process.stdin.write(pickle.dumps([p for p in sys.path if p]))
            process.stdin.write(pickle.dumps({"address": listener.address, "authkey": authkey, "tokens": tokens}))
            process.stdin.close()
            accepted: list = []
            waiter = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
            waiter.start()
            waiter.join(timeout)
            if not accepted:
                process.kill()
                raise RuntimeError(f"lenet_core worker {number} did not start (exit code {process.poll()}); "
                                   "set LENET_PROCESSES=1 to compute in this process only.")
        return process, accepted[0]

    def block(self, role: str, nbytes: int) -> _SharedBlock:
        """The shared block for ``role``, grown (with room to spare) if it is smaller than ``nbytes``."""
        if role not in self.blocks or self.blocks[role].nbytes < nbytes:
            self.blocks[role] = _SharedBlock(2 * nbytes)
        return self.blocks[role]

    def send(self, conn, number: int, kind, job):
        """Send a request, followed by the descriptors of the blocks this worker has not mapped."""
        new = [role for role, block in self.blocks.items() if self.mapped[conn].get(role) is not block]
        _send(conn, number, (kind, job, [(role, self.blocks[role].nbytes) for role in new]))
        try:
            for role in new:
                send_handle(conn, self.blocks[role].fd, self.running[number - 1][0].pid)
                self.mapped[conn][role] = self.blocks[role]
        except OSError:
            raise _died(number) from None
        self.unanswered[conn] += 1

    def receive(self, conn, number: int):
        reply = _receive(conn, number)
        self.unanswered[conn] -= 1
        return reply

    def catch_up(self, block: bool = True):
        """Read the replies still owed for earlier batches (a slow worker's "I took nothing"):
        all of them, or (``block=False``) those that have arrived."""
        for number, (_, conn) in enumerate(self.running, start=1):
            while self.unanswered[conn] and (block or conn.poll()):
                self.receive(conn, number)

    def kill(self):
        for process, conn in self.running:
            process.kill()
            conn.close()
        for process, _ in self.running:
            process.wait()
        self.running, self.mapped, self.unanswered = [], {}, {}

    def close(self):
        with self.lock:
            for _, conn in self.running:
                try:
                    conn.send(("close", None, []))
                except (OSError, ValueError):
                    pass
            for process, _ in self.running:
                try:
                    process.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            self.kill()


def _died(number: int) -> WorkerDied:
    return WorkerDied(f"lenet_core worker {number} stopped unexpectedly, perhaps out of memory; nothing was "
                      "updated. Run again (a new worker starts), or set LENET_PROCESSES=1 to compute in this "
                      "process only.")


def _send(conn, number: int, message):
    try:
        conn.send(message)
    except (OSError, ValueError):
        raise _died(number) from None


def _receive(conn, number: int):
    """The reply of worker ``number``: its value, or its exception raised here."""
    try:
        status, *rest = conn.recv()
    except (EOFError, OSError):
        raise _died(number) from None
    if status == "ok":
        return rest[0]
    exc, text = rest
    raise exc from RuntimeError(f"in lenet_core worker {number}:\n{text}")


_workers = _Workers()
atexit.register(_workers.close)


def shutdown_workers():
    """Stop the worker processes (they start again when a batch next needs them)."""
    _workers.close()


# ---------------------------------------------------------------------------
# DataParallel
# ---------------------------------------------------------------------------


class DataParallel:
    """Run a :class:`~lenet_core.network.Sequential` on shards of each batch in several processes.

    ``DataParallel(model, processes=None)``; ``processes`` defaults to :func:`default_processes`.
    :meth:`train_step` leaves in the model's layers the gradients of the batch's mean softmax
    cross-entropy (up to float rounding), and :meth:`infer` returns the model's outputs.
    Everything runs in this process when there is one process, a batch too small to split,
    an active :class:`~lenet_core.layers.Dropout` in training (its random masks must come
    from one stream to stay reproducible), or a layer the workers cannot rebuild (a class of
    the reader's own).

    ``with DataParallel(model) as parallel:`` keeps this process's BLAS on one thread for the
    whole block (``fit`` does this); outside a ``with`` each call switches it and back.
    """

    def __init__(self, model, processes: int | None = None):
        if not isinstance(model, Sequential):
            raise TypeError(f"DataParallel runs a lenet_core Sequential, not {type(model).__name__}")
        processes = default_processes() if processes is None else int(processes)
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.model, self.processes, self.engine = model, processes, engine_of(model)
        self._limits: list = []

    def __enter__(self):
        self._limits.append(one_blas_thread() if self.processes > 1 else None)
        return self

    def __exit__(self, *exc):
        limit = self._limits.pop()
        if limit is not None:
            limit.restore_original_limits()

    def plan(self, n: int):
        """How a batch of ``n`` images is split: contiguous, nearly equal slices of ``range(n)``,
        one per process; None when it runs in this process alone."""
        if self.processes < 2 or self.engine is None:
            return None
        if self.model.training and any(isinstance(layer, Dropout) and layer.p > 0 for layer in self.model.layers):
            return None
        count = min(self.processes, n // MIN_SHARD)
        if count < 2:
            return None
        bounds = [n * t // count for t in range(count + 1)]
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    def train_step(self, x, y) -> tuple[float, int]:
        """Forward, loss and backward of the batch ``(x, y)``, split over the processes: leaves
        the batch's gradients in the model's layers and returns ``(mean loss, number correct)``."""
        x, y = np.asarray(x), np.asarray(y)
        shards = self._plan(x) if len(x) == len(y) else None
        with self._one_blas_thread():
            if shards is None:
                loss, correct = shard_step(self.model, x, y, len(x))
                return loss / len(x), correct
            with _workers.lock:
                results, grads, _ = self._run("train", x, y, shards)
                for i, name, shape, offset in self._layout:     # the shards' gradients, in shard order
                    total = grads[0](i, name, offset, shape).copy()
                    for shard_grads in grads[1:]:
                        total += shard_grads(i, name, offset, shape)
                    self.model.layers[i].grads[name] = total
        return sum(r[0] for r in results) / len(x), sum(r[1] for r in results)

    def infer(self, x) -> np.ndarray:
        """The model's outputs for ``x`` (``model.infer``: no backward may follow), split over the
        processes. Put the model in eval mode first (``evaluate`` and ``predict`` do)."""
        x = np.asarray(x)
        shards = self._plan(x)
        with self._one_blas_thread():
            if shards is None:
                return self.model.infer(x)
            with _workers.lock:
                job = self._run("infer", x, None, shards)[2]
                out_shape = self.model.output_shape(x.shape)
                return _workers.blocks["io"].array(job["out_offset"], out_shape, self.model.dtype).copy()

    # -- the machinery -------------------------------------------------------
    def _one_blas_thread(self):
        return one_blas_thread() if self.processes > 1 and not self._limits else contextlib.nullcontext()

    def _plan(self, x):
        """The shards for ``x``, or None when it runs here (among others when it does not fit the
        model: its layers then say what is wrong)."""
        shards = self.plan(len(x)) if x.ndim >= 2 else None
        try:
            return shards and self.model.output_shape(x.shape) and shards
        except Exception:
            return None

    def _run(self, kind, x, y, shards):
        """Every shard computed by whichever process takes it first (see the module docstring).
        Returns each shard's result, a function per shard that reads its gradients
        (``grads(layer index, name, offset, shape)``), and the job."""
        conns = _workers.get(min(self.processes, len(shards)) - 1)
        numbers = {conn: number for number, conn in enumerate(conns, start=1)}
        results, grads = [None] * len(shards), [None] * len(shards)
        try:
            _workers.catch_up(block=False)
            job = self._new_job(kind, x, y, shards)
            _workers.tokens.drain()
            _workers.tokens.put(job["step"], len(shards))
            for conn, number in numbers.items():
                _workers.send(conn, number, kind, job)
            weights, io = _workers.blocks["weights"], _workers.blocks["io"]
            while (k := _workers.tokens.take(job["step"])) is not None:     # this process's shards
                results[k] = _run_shard(job, k, self.model, weights, io)
                grads[k] = self._copy_of_grads()
            while any(g is None for g in grads):                         # the shards the workers took
                for conn in wait([c for c in conns if _workers.unanswered[c]]):
                    step, done = _workers.receive(conn, numbers[conn])
                    for k, result in done if step == job["step"] else ():
                        results[k], grads[k] = result, self._slot_reader(k)
        except BaseException:
            _workers.kill()              # replies may still be on their way: start afresh next time
            raise
        return results, grads, job

    def _copy_of_grads(self):
        copies = [{name: g.copy() for name, g in layer.grads.items()} for layer in self.model.layers]
        return lambda i, name, offset, shape: copies[i][name]

    def _slot_reader(self, k):
        weights, slot, dtype = _workers.blocks["weights"], self._params_bytes * (k + 1), self.model.dtype
        return lambda i, name, offset, shape: weights.array(offset + slot, shape, dtype)

    def _new_job(self, kind, x, y, shards) -> dict:
        """Copy the current weights and the batch into shared memory, and describe the task. The
        weights block holds the parameters, then a slot of gradients per shard; the input block
        the images, then room for the outputs."""
        model, dtype = self.model, self.model.dtype
        layout, nbytes = [], 0
        for i, layer in enumerate(model.layers):
            for name, p in layer.params.items():
                layout.append((i, name, p.shape, nbytes))
                nbytes += p.size * dtype.itemsize
        self._layout, self._params_bytes = layout, nbytes
        weights = _workers.block("weights", nbytes * (len(shards) + 1))
        for i, name, shape, offset in layout:               # the weights as they are now
            np.copyto(weights.array(offset, shape, dtype), model.layers[i].params[name])
        x_bytes = int(np.prod(x.shape[1:])) * dtype.itemsize
        out_bytes = int(np.prod(model.output_shape(x.shape)[1:])) * dtype.itemsize
        np.copyto(_workers.block("io", len(x) * (x_bytes + out_bytes)).array(0, x.shape, dtype), x)
        _workers.step += 1
        return {"kind": kind, "step": _workers.step, "shards": shards, "labels": y, "batch_size": len(x),
                "architecture": pickle.dumps((model.get_config(), dtype.str, self.engine)), "layout": layout,
                "params_bytes": nbytes, "modes": [layer.training for layer in model.layers],
                "x_bytes": x_bytes, "x_shape": x.shape[1:], "out_offset": len(x) * x_bytes}

    @staticmethod
    def worker_stats() -> list[dict]:
        """``{"peak_rss_mb", "cpu_seconds"}`` of each running worker process (for the benchmarks)."""
        with _workers.lock:
            _workers.catch_up()
            for number, (_, conn) in enumerate(_workers.running, start=1):
                _workers.send(conn, number, "stats", None)
            return [_workers.receive(conn, number) for number, (_, conn) in enumerate(_workers.running, start=1)]

    def __repr__(self):
        return f"DataParallel({self.model.name}, processes={self.processes})"
