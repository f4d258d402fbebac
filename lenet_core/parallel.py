"""Data parallelism on the CPU: every batch split over one process per core.

Why. NumPy runs every elementwise operation, every copy and every pooling step on one
core; only the matrix products use BLAS's threads. In LeNet-5 those one-core operations
are most of a training step, so on a 2-core laptop one core idles much of the time.
Threads do not fix it: a step is a few hundred NumPy calls, many of them small, and
between calls each thread needs Python's global interpreter lock, so two threads mostly
take turns. Processes share no lock.

How, for a batch of ``N`` images on ``P`` processes (the caller and ``P - 1`` workers):

1. the batch is cut into ``P`` contiguous shards of nearly equal size (:meth:`DataParallel.plan`);
2. the caller copies the current weights into a block of shared memory that every worker
   has mapped, and each worker's images into another, then sends each worker one small
   message -- *run this shard* -- and runs shard 0 itself meanwhile;
3. every process runs forward, the loss and backward on its shard alone (:func:`shard_step`,
   a stateless task). The loss of a batch is the mean of its images' losses, so the
   gradient of the batch is the sum of the shards' gradients when each shard's loss is
   weighted by ``n_shard / N``. Each worker writes its gradients into its own slot of
   the shared block;
4. the caller adds the slots to its own gradients, in shard order.

Every process computes with one BLAS thread, one process per core: what a multi-GPU
trainer does with its devices, done with the cores of a laptop. Only the rounding
differs from one process (the order of the additions in ``dW``, and matrix products of
another width); the same number of processes, seed and data give bit-identical weights.
Inference (:meth:`DataParallel.infer`) splits the same way and returns the logits.

Workers are plain ``python`` subprocesses connected by :mod:`multiprocessing.connection`,
started on first use and kept for the session. Not :mod:`multiprocessing`'s or
:mod:`concurrent.futures`' pools: their workers start by re-running the caller's main
script (outside Linux's ``fork``), which breaks every script without an
``if __name__ == "__main__":`` guard. The shared blocks are files in ``/dev/shm`` (or
the temporary folder) mapped with :mod:`mmap`; each file's name is deleted as soon as
every process has mapped it, so nothing is left behind even when a process is killed.

How many processes: ``LENET_PROCESSES`` if set, else the number of threads NumPy's BLAS
would use (so ``OPENBLAS_NUM_THREADS=1`` also means one process), at most 4.
"""
from __future__ import annotations

import atexit
import mmap
import os
import pickle
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import warnings
from multiprocessing.connection import Client, Listener

import numpy as np
from threadpoolctl import ThreadpoolController

from .fast import engine_of, to_fast
from .layers import Dropout
from .losses import SoftmaxCrossEntropy
from .network import Sequential

__all__ = ["DataParallel", "shard_step", "default_processes", "blas_threads", "shutdown_workers",
           "process_stats", "MIN_SHARD"]

MIN_SHARD = 8               # fewer images than this per process, and sending them costs more than it saves
MAX_DEFAULT_PROCESSES = 4   # more only on request: LeNet-5's batches are small, shards get tiny


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
# BLAS threads and process statistics
# ---------------------------------------------------------------------------

_blas = None


def _blas_controller():
    """threadpoolctl's handle on the BLAS libraries loaded in this process (None if there are none)."""
    global _blas
    if _blas is None:
        selected = ThreadpoolController().select(user_api="blas")
        _blas = selected if selected.lib_controllers else False
    return _blas or None


def blas_threads() -> int | None:
    """How many threads NumPy's BLAS uses now (None if no BLAS library was found)."""
    controller = _blas_controller()
    return None if controller is None else max(lib.num_threads for lib in controller.lib_controllers)


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
    return min(blas_threads() or 1, MAX_DEFAULT_PROCESSES)


class _one_blas_thread:
    """Context manager: BLAS on one thread inside, as before outside."""

    def __enter__(self):
        controller = _blas_controller()
        self._limit = controller.limit(limits=1) if controller is not None else None
        return self

    def __exit__(self, *exc):
        if self._limit is not None:
            self._limit.__exit__(*exc)


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
# Shared memory: a file that every process maps
# ---------------------------------------------------------------------------


class _SharedBlock:
    """A block of memory shared with the workers: a file in ``/dev/shm`` (or the temporary
    folder) mapped into every process. Created by the caller (``path=None``), opened by a
    worker from its path; the caller deletes the name once the workers have mapped it, and
    the memory lives until the last mapping goes."""

    def __init__(self, nbytes: int, path: str | None = None):
        nbytes = max(int(nbytes), 1)
        if path is None:
            folder = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
            fd, path = tempfile.mkstemp(prefix="lenet-core-", dir=folder)
            os.ftruncate(fd, nbytes)
        else:
            fd = os.open(path, os.O_RDWR)
        try:
            self.buffer = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        self.path, self.nbytes = path, nbytes

    def array(self, offset: int, shape, dtype) -> np.ndarray:
        return np.ndarray(tuple(shape), dtype=dtype, buffer=self.buffer, offset=int(offset))

    def unlink(self):
        try:
            os.unlink(self.path)
        except OSError:   # already gone
            pass


# ---------------------------------------------------------------------------
# The worker process
# ---------------------------------------------------------------------------


class _WorkerState:
    """What a worker keeps between tasks: the networks it has built (by architecture) and the
    shared blocks it has mapped (by path). Nothing of a task depends on an earlier one."""

    def __init__(self):
        self.models: dict = {}
        self.blocks: dict = {}

    def block(self, path, nbytes):
        if path not in self.blocks:
            self.blocks[path] = _SharedBlock(nbytes, path)
            while len(self.blocks) > 8:           # forget the oldest: blocks of finished sessions
                self.blocks.pop(next(iter(self.blocks)))
        return self.blocks[path]

    def model(self, job):
        """The network of ``job`` (its parameters viewing the shared weights) and those weights."""
        key = (job["architecture"], job["weights"])
        if key not in self.models:
            config, dtype, engine = pickle.loads(job["architecture"])
            model = Sequential.from_config(config, np.dtype(dtype))
            model = to_fast(model) if engine == "fast" else model
            weights = self.block(*job["weights"])
            for i, name, shape, offset in job["layout"]:
                model.layers[i].params[name] = weights.array(offset, shape, dtype)
            self.models[key] = (model, weights)
            while len(self.models) > 4:
                self.models.pop(next(iter(self.models)))
        model, weights = self.models[key]
        for layer, training in zip(model.layers, job["modes"]):
            layer.training = training
        return model, weights


def _run_task(kind, job, state: _WorkerState):
    if kind == "stats":
        return process_stats()
    model, weights = state.model(job)
    io = state.block(*job["io"])
    x = io.array(job["x_offset"], job["x_shape"], model.dtype)
    if kind == "infer":
        logits = model.infer(x)
        np.copyto(io.array(job["out_offset"], logits.shape, model.dtype), logits)
        return None
    result = shard_step(model, x, job["labels"], job["batch_size"])
    for (i, name, shape, offset) in job["layout"]:
        np.copyto(weights.array(offset + job["grads_offset"], shape, model.dtype), model.layers[i].grads[name])
    return result


def _serve(conn):
    """Worker loop: every request gets one reply, ``("ok", value)`` or ``("error", exception, traceback)``."""
    controller = _blas_controller()
    if controller is not None:
        controller.limit(limits=1)          # for the life of this process
    warnings.simplefilter("ignore")         # a diverging run's overflows are the caller's to report
    np.seterr(all="ignore")
    state = _WorkerState()
    while True:
        try:
            kind, job = conn.recv()
        except (EOFError, OSError):         # the caller went away
            return
        if kind == "close":
            return
        try:
            reply = ("ok", _run_task(kind, job, state))
        except Exception as exc:  # sent back and raised in the caller
            reply = ("error", exc, traceback.format_exc())
        try:
            conn.send(reply)
        except Exception as exc:  # e.g. an exception that cannot be pickled
            conn.send(("error", RuntimeError(str(exc)), traceback.format_exc()))


def _worker_main():
    """Entry point of a worker: read the address from stdin, connect back, serve.

    Ctrl-C (and Jupyter's "interrupt kernel", which signals the whole process group) is
    ignored here: the caller handles it and replaces its workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    boot = pickle.load(sys.stdin.buffer)
    _serve(Client(boot["address"], authkey=boot["authkey"]))


_WORKER_BOOT = ("import pickle, sys; sys.path[:0] = pickle.load(sys.stdin.buffer); "
                "from lenet_core.parallel import _worker_main; _worker_main()")


class _Workers:
    """The worker processes, shared by every :class:`DataParallel` of this process."""

    def __init__(self):
        self.lock = threading.RLock()        # one exchange with the workers at a time
        self.running: list = []              # [(process, connection)]
        self.started = 0                     # workers started so far: blocks older than a worker are not mapped by it

    def get(self, count: int) -> list:
        """At least ``count`` live connections (with the lock held)."""
        if any(process.poll() is not None for process, _ in self.running):
            self.kill()                      # one died (killed, out of memory): start afresh
        while len(self.running) < count:
            self.running.append(self._start(len(self.running) + 1))
            self.started += 1
        return [conn for _, conn in self.running[:count]]

    @staticmethod
    def _start(number: int, timeout: float = 60.0):
        authkey = secrets.token_bytes(32)
        with Listener(authkey=authkey) as listener:
            process = subprocess.Popen([sys.executable, "-c", _WORKER_BOOT], stdin=subprocess.PIPE)
            process.stdin.write(pickle.dumps([p for p in sys.path if p]))
            process.stdin.write(pickle.dumps({"address": listener.address, "authkey": authkey}))
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

    def exchange(self, requests, compute_here):
        """Send one request per worker, run ``compute_here()`` meanwhile, collect the replies.

        Anything that interrupts the exchange half-way (Ctrl-C, a dead worker) stops every
        worker: their replies would be out of step; fresh ones start on the next call."""
        conns = self.get(len(requests))
        try:
            for i, (conn, request) in enumerate(zip(conns, requests)):
                try:
                    conn.send(request)
                except (OSError, ValueError):
                    raise _worker_died(i + 1) from None
            error, here = None, None
            try:
                here = compute_here()
            except Exception as exc:     # still collect the replies, to stay in step
                error = exc
            replies = []
            for i, conn in enumerate(conns):
                try:
                    status, *rest = conn.recv()
                except (EOFError, OSError):
                    raise _worker_died(i + 1) from None
                if status == "ok":
                    replies.append(rest[0])
                else:
                    exc, text = rest
                    exc.__cause__ = RuntimeError(f"in lenet_core worker {i + 1}:\n{text}")
                    error = error or exc
        except BaseException:
            self.kill()
            raise
        if error is not None:
            raise error
        return here, replies

    def kill(self):
        for process, conn in self.running:
            process.kill()
            conn.close()
        for process, _ in self.running:
            process.wait()
        self.running = []

    def close(self):
        with self.lock:
            for process, conn in self.running:
                try:
                    conn.send(("close", None))
                except (OSError, ValueError):
                    pass
            for process, _ in self.running:
                try:
                    process.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            self.kill()


def _worker_died(number: int) -> RuntimeError:
    return RuntimeError(f"lenet_core worker {number} stopped unexpectedly, perhaps out of memory; nothing "
                        "was updated. Run again (a new worker starts), or set LENET_PROCESSES=1 to compute "
                        "in this process only.")


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
    :meth:`train_step` leaves in the model's layers the gradients of the whole batch's mean
    softmax cross-entropy (up to float rounding), and :meth:`infer` returns the model's
    logits. Everything runs in the calling process when there is one process, a batch of
    fewer than ``2 * MIN_SHARD`` images, an active :class:`~lenet_core.layers.Dropout` in
    training (its random masks must come from one stream to stay reproducible), or a layer
    the workers cannot rebuild (one of the reader's own classes).

    ``with DataParallel(model) as parallel:`` keeps this process's BLAS on one thread for the
    whole block (``fit`` does this); outside a ``with`` each call switches it and back.
    """

    def __init__(self, model, processes: int | None = None):
        if not isinstance(model, Sequential):
            raise TypeError(f"DataParallel runs a lenet_core Sequential, not {type(model).__name__}")
        processes = default_processes() if processes is None else int(processes)
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.model = model
        self.processes = processes
        self.engine = engine_of(model)
        self._sessions = []
        self._weights = self._io = None      # the shared blocks (see _jobs)
        self._fresh: list = []               # blocks whose names go after the next exchange
        self._started = None                 # _workers.started when the blocks were made

    def __enter__(self):
        self._sessions.append(_one_blas_thread().__enter__() if self.processes > 1 else None)
        return self

    def __exit__(self, *exc):
        session = self._sessions.pop()
        if session is not None:
            session.__exit__(*exc)

    def plan(self, n: int):
        """How a batch of ``n`` images is split: contiguous, nearly equal slices of ``range(n)``,
        one per process; None when it runs in this process alone."""
        count = min(self.processes, n // MIN_SHARD)
        if count < 2 or self.engine is None:
            return None
        if self.model.training and any(isinstance(layer, Dropout) and layer.p > 0 for layer in self.model.layers):
            return None
        bounds = [n * t // count for t in range(count + 1)]
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    def _split(self, x):
        """``(plan, output shape)`` for the batch ``x``; ``(None, None)`` when it runs here, among
        others when ``x`` does not fit the model (its layers then say what is wrong)."""
        shards = self.plan(len(x)) if x.ndim >= 2 else None
        if shards is None:
            return None, None
        try:
            return shards, self.model.output_shape(x.shape)
        except Exception:
            return None, None

    # -- the two tasks -------------------------------------------------------
    def train_step(self, x, y) -> tuple[float, int]:
        """Forward, loss and backward of the batch ``(x, y)``, split over the processes: leaves
        the batch's gradients in the model's layers and returns ``(mean loss, number correct)``."""
        x, y = np.asarray(x), np.asarray(y)
        shards, out_shape = self._split(x) if len(x) == len(y) else (None, None)
        with self._blas_session():
            if shards is None:
                loss, correct = shard_step(self.model, x, y, len(x))
                return loss / len(x), correct
            with _workers.lock:
                jobs = self._jobs(x, shards, out_shape, labels=y)
                here, results = self._exchange([("train", job) for job in jobs],
                                               lambda: shard_step(self.model, x[shards[0]], y[shards[0]], len(x)))
                self._add_worker_gradients(len(jobs))
        loss = here[0] + sum(r[0] for r in results)
        return loss / len(x), here[1] + sum(r[1] for r in results)

    def infer(self, x) -> np.ndarray:
        """The model's outputs for ``x`` (``model.infer``: no backward may follow), split over the
        processes. Put the model in eval mode first (``evaluate`` and ``predict`` do)."""
        x = np.asarray(x)
        shards, out_shape = self._split(x)
        with self._blas_session():
            if shards is None:
                return self.model.infer(x)
            with _workers.lock:
                jobs = self._jobs(x, shards, out_shape)
                here, _ = self._exchange([("infer", job) for job in jobs], lambda: self.model.infer(x[shards[0]]))
                outs = [self._io.array(job["out_offset"], (sl.stop - sl.start,) + out_shape[1:], self.model.dtype)
                        for job, sl in zip(jobs, shards[1:])]
                return np.concatenate([here] + outs)

    # -- the shared blocks ---------------------------------------------------
    def _blas_session(self):
        return _one_blas_thread() if self.processes > 1 and not self._sessions else _no_change()

    def _exchange(self, requests, compute_here):
        """:meth:`_Workers.exchange`, then the names of new blocks go: every worker has mapped them.
        After a failure the blocks are dropped (a fresh worker could not map them any more)."""
        try:
            return _workers.exchange(requests, compute_here)
        except BaseException:
            self._weights = self._io = None
            raise
        finally:
            for block in self._fresh:
                block.unlink()
            self._fresh = []

    def _block(self, block, nbytes):
        """``block`` if it holds ``nbytes``, else a new, larger one."""
        if block is None or block.nbytes < nbytes:
            block = _SharedBlock(nbytes)
            self._fresh.append(block)
        return block

    def _jobs(self, x, shards, out_shape, labels=None) -> list[dict]:
        """One job per worker, with the current weights and its images copied to shared memory.

        The weights block holds the parameters, then one slot of gradients per worker; the
        input block, per worker, its images and then room for its outputs."""
        model, dtype = self.model, self.model.dtype
        workers = len(shards) - 1
        _workers.get(workers)
        if self._started != _workers.started:      # a new worker has not mapped the old blocks
            self._weights = self._io = None
            self._started = _workers.started
        layout, nbytes = [], 0
        for i, layer in enumerate(model.layers):
            for name, p in layer.params.items():
                layout.append((i, name, p.shape, nbytes))
                nbytes += p.size * dtype.itemsize
        self._weights = self._block(self._weights, nbytes * (workers + 1))
        for i, name, shape, offset in layout:                     # the weights as they are now
            np.copyto(self._weights.array(offset, shape, dtype), model.layers[i].params[name])
        per_image = (int(np.prod(x.shape[1:])) + int(np.prod(out_shape[1:]))) * dtype.itemsize
        stride = per_image * max(sl.stop - sl.start for sl in shards[1:])
        if self._io is None or self._io.nbytes < stride * workers:
            self._io = self._block(None, 2 * stride * workers)    # room to grow
        self._layout, self._nbytes = layout, nbytes
        architecture = pickle.dumps((model.get_config(), dtype.str, self.engine))
        modes = [layer.training for layer in model.layers]
        jobs = []
        for w, sl in enumerate(shards[1:]):
            shape = (sl.stop - sl.start,) + x.shape[1:]
            np.copyto(self._io.array(w * stride, shape, dtype), x[sl])
            jobs.append({"architecture": architecture, "weights": (self._weights.path, self._weights.nbytes),
                         "layout": layout, "modes": modes, "io": (self._io.path, self._io.nbytes),
                         "x_offset": w * stride, "x_shape": shape,
                         "out_offset": w * stride + int(np.prod(shape)) * dtype.itemsize,
                         "labels": None if labels is None else labels[sl], "batch_size": len(x),
                         "grads_offset": nbytes * (w + 1)})
        return jobs

    def _add_worker_gradients(self, workers: int):
        """The model's own gradients (shard 0) plus each worker's slot, in shard order."""
        dtype = self.model.dtype
        for i, name, shape, offset in self._layout:
            layer = self.model.layers[i]
            total = layer.grads[name].copy()
            for w in range(workers):
                total += self._weights.array(offset + self._nbytes * (w + 1), shape, dtype)
            layer.grads[name] = total

    @staticmethod
    def worker_stats() -> list[dict]:
        """``{"peak_rss_mb", "cpu_seconds"}`` of each running worker process (for the benchmarks)."""
        with _workers.lock:
            count = len(_workers.running)
            if not count:
                return []
            _, replies = _workers.exchange([("stats", None)] * count, lambda: None)
            return replies

    def __repr__(self):
        return f"DataParallel({self.model.name}, processes={self.processes})"


class _no_change:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

