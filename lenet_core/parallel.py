"""Data parallelism on the CPU: split each mini-batch into shards, run every shard through
its own copy of the network in its own process, and add up the gradients.

Why. NumPy runs every elementwise operation (tanh, ReLU), every copy (im2col) and every
pooling step on one core; only the matrix products use BLAS's threads. In LeNet-5 those
single-core operations are more than half of a training step, so on a 2-core laptop one
core idles much of the time. Threads do not fix this: a step is a few hundred NumPy calls,
many of them small, and between calls each thread needs Python's global interpreter lock,
so two threads mostly take turns (measured: two threads on two half-batches were only
about 10% faster than one thread on the whole batch). Processes share no lock. This
module keeps one worker process per extra core, and for each batch of ``N`` images on
``T`` processes

1. the calling process copies the current weights into a block of shared memory that every
   worker has mapped (LeNet-5's 61,706 weights are 247 KB), and each worker's images into
   another; it tells each worker, through a pipe, which shapes to read, computes images
   ``0 .. N/T`` itself meanwhile and collects the workers' outputs;
2. after the loss it writes each worker's share of the output gradient into shared memory;
   every process runs its backward pass, the workers write their parameter gradients into
   their own slots of the shared block, and the caller adds them to its own.

Only small messages go through the pipes. Every process computes with single-threaded
BLAS, one process per core: what a multi-GPU trainer does with its devices, done with the
cores of a laptop.

The maths does not change: the loss is a mean over the batch, so its gradient is the sum
of the shards' gradients (``SoftmaxCrossEntropy`` divides by the whole batch's ``N``), and
every image's forward pass is independent of the others. Only the rounding differs: the
order of the floating-point additions in ``dW`` and ``db`` (per shard, then across shards),
and the last digit of some outputs, since a matrix product of another width may round
differently: a difference of float32 rounding. The result stays deterministic: the same number of
processes, seed and data give bit-identical weights.

:class:`DataParallel` wraps a :class:`~lenet_core.network.Sequential` and offers the same
``forward`` / ``backward`` / ``train`` / ``eval`` / ``params_and_grads``, so ``fit``,
``evaluate``, ``predict`` and the optimizers use it unchanged. After ``backward`` the
model's layers hold the summed gradients, as if the model had run the whole batch; the
layers' *caches* are not filled (they live in the copies), so code that inspects
``layer.cache`` runs the model itself: ``Sequential.forward`` never goes parallel.

How many processes: ``LENET_PROCESSES`` if set, else the number of threads NumPy's BLAS
would use (so ``OPENBLAS_NUM_THREADS=1`` also means one process), at most 4, else 1. It needs the small
package ``threadpoolctl`` to switch BLAS to one thread per process; without it everything
runs in the calling process as before. The workers (plain ``python`` subprocesses, so a
script without an ``if __name__ == "__main__":`` guard is never re-run in them) start in
about a quarter of a second on first use and stay for the rest of the session; the shared
memory lives in ``/dev/shm`` (or the temporary folder) and its file names are deleted as
soon as every process has mapped them.
"""
from __future__ import annotations

import atexit
import itertools
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
import weakref
from multiprocessing.connection import Client, Listener

import numpy as np
from threadpoolctl import ThreadpoolController

from .network import Sequential

__all__ = ["DataParallel", "default_processes", "blas_threads", "shutdown_workers", "process_stats", "MIN_SHARD"]

MIN_SHARD = 8   # fewer images than this per process, and sending them costs more than it saves
MAX_DEFAULT_PROCESSES = 4   # more only on request: LeNet-5's batches are small, shards get tiny

_lock = threading.RLock()       # one exchange with the workers at a time
_controller = None
_workers: list = []             # [(process, connection)], shared by every DataParallel
_keys = itertools.count()


# ---------------------------------------------------------------------------
# BLAS threads
# ---------------------------------------------------------------------------


def _blas_controller():
    """threadpoolctl's handle on the BLAS libraries loaded in this process, or None."""
    global _controller
    with _lock:
        if _controller is None:
            selected = ThreadpoolController().select(user_api="blas")
            _controller = selected if selected.lib_controllers else False
        return _controller or None


def blas_threads() -> int | None:
    """How many threads NumPy's BLAS uses now (None if threadpoolctl is not installed)."""
    controller = _blas_controller()
    if controller is None:
        return None
    return max(lib.num_threads for lib in controller.lib_controllers)


def default_processes() -> int:
    """``LENET_PROCESSES`` if set, else BLAS's thread count (at most ``MAX_DEFAULT_PROCESSES``),
    else 1 (no threadpoolctl)."""
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


# ---------------------------------------------------------------------------
# Shared memory: a file in /dev/shm (or the temp folder) that both processes map
# ---------------------------------------------------------------------------


def _shm_dir() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


class _SharedFile:
    """A block of memory shared with the workers: a file mapped into every process.

    Created by the caller (``path=None``) or opened by a worker from its path. Once every
    worker has mapped it the caller deletes the name (``unlink``); the memory lives on until
    the last mapping goes, so nothing is left behind even if a process is killed."""

    def __init__(self, nbytes: int, path: str | None = None):
        nbytes = max(int(nbytes), 1)
        if path is None:
            fd, path = tempfile.mkstemp(prefix="lenet-core-", dir=_shm_dir())
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
        except OSError:              # already gone, or Windows (still mapped): removed at exit
            _leftover_files.add(self.path)


_leftover_files: set = set()


def _param_layout(model, dtype) -> tuple[list, int]:
    """``[(layer index, key, shape, byte offset)]`` of every parameter, and the total bytes."""
    layout, offset = [], 0
    for i, layer in enumerate(model.layers):
        for key, p in layer.params.items():
            layout.append((i, key, p.shape, offset))
            offset += p.size * dtype.itemsize
    return layout, offset


# ---------------------------------------------------------------------------
# The worker process
# ---------------------------------------------------------------------------


class _Replica:
    """What a worker keeps per network: the layers, whose params are views of the shared
    weights, its slot for gradients in the same block, and the current input block."""

    def __init__(self, config, dtype, weights_path, layout, nbytes, slot):
        self.dtype = np.dtype(dtype)
        self.model = Sequential.from_config(config, self.dtype)
        self.weights = _SharedFile(nbytes * (slot + 2), weights_path)
        self.grads = []
        for i, key, shape, offset in layout:
            self.model.layers[i].params[key] = self.weights.array(offset, shape, self.dtype)
            self.grads.append((i, key, self.weights.array(offset + nbytes * (slot + 1), shape, self.dtype)))
        self.io = None

    def io_block(self, path, nbytes):
        if self.io is None or self.io.path != path:
            self.io = _SharedFile(nbytes, path)
        return self.io


def process_stats() -> dict:
    """``{"peak_rss_mb", "cpu_seconds"}`` of this process: peak resident memory in MB (VmHWM
    on Linux, which unlike ru_maxrss does not count the parent's memory before ``exec``) and
    CPU seconds, user plus system. The workers report theirs with it, and the benchmarks
    measure their own processes with it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
    try:
        with open("/proc/self/status") as fh:
            peak = next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        pass
    return {"peak_rss_mb": peak, "cpu_seconds": usage.ru_utime + usage.ru_stime}


def _serve(conn):
    """Worker loop: every request but "forget" gets one reply, ``("ok", value)`` or
    ``("error", exception, traceback text)``."""
    controller = _blas_controller()
    if controller is not None:
        controller.limit(limits=1)       # for the life of this process
    replicas: dict = {}
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):      # the parent went away
            return
        kind, key, args = request
        if kind == "close":
            return
        if kind == "forget":
            replicas.pop(key, None)
            continue
        try:
            if kind == "attach":
                replicas[key] = _Replica(*args)
                value = None
            elif kind in ("forward", "infer"):
                io_path, io_bytes, x_offset, x_shape, modes = args
                replica = replicas[key]
                x = replica.io_block(io_path, io_bytes).array(x_offset, x_shape, replica.dtype)
                for layer, training in zip(replica.model.layers, modes):
                    layer.training = training
                value = replica.model.forward(x) if kind == "forward" else replica.model.infer(x)
            elif kind == "backward":
                d_offset, d_shape, input_grad = args
                replica = replicas[key]
                dout = replica.io.array(d_offset, d_shape, replica.dtype)
                dx = replica.model.backward(dout, input_grad=input_grad)
                for i, k, view in replica.grads:
                    np.copyto(view, replica.model.layers[i].grads[k])
                value = None if dx is None else np.ascontiguousarray(dx)
            elif kind == "stats":
                value = process_stats()
            else:
                raise ValueError(f"unknown request {kind!r}")
            reply = ("ok", value)
        except Exception as exc:  # sent back and raised in the caller
            reply = ("error", exc, traceback.format_exc())
        try:
            conn.send(reply)
        except Exception as exc:  # e.g. an exception that cannot be pickled
            conn.send(("error", RuntimeError(str(exc)), traceback.format_exc()))


_WORKER_BOOT = ("import pickle, sys; boot = pickle.load(sys.stdin.buffer); sys.path[:0] = boot['path']; "
                "from lenet_core.parallel import _worker_main; _worker_main(boot)")


def _worker_main(boot: dict):
    """Entry point of a worker process: connect back to the parent, then serve.

    Ctrl-C (and Jupyter's "interrupt kernel", which signals the whole process group) is
    ignored here: the caller handles it and replaces its workers; the socket closing tells a
    worker when its parent has gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve(Client(boot["address"], authkey=boot["authkey"]))


def _start_worker(number: int, timeout: float = 60.0):
    """Start one worker: a fresh ``python`` running :func:`_worker_main`, connected back
    through a local socket (a named pipe on Windows) that only it knows the key of.

    A plain subprocess rather than ``multiprocessing.Process``: that one re-imports the
    caller's main script in the child, which breaks every script without an
    ``if __name__ == "__main__":`` guard."""

    authkey = secrets.token_bytes(32)
    with Listener(authkey=authkey) as listener:
        process = subprocess.Popen([sys.executable, "-c", _WORKER_BOOT], stdin=subprocess.PIPE)
        boot = {"address": listener.address, "authkey": authkey, "path": [p for p in sys.path if p]}
        process.stdin.write(pickle.dumps(boot))
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


def _ensure_workers(count: int) -> list:
    """At least ``count`` live worker connections (called with ``_lock`` held)."""
    if any(p.poll() is not None for p, _ in _workers):   # one died (killed, out of memory):
        _kill_workers()                                   # start afresh, every network re-attaches
    while len(_workers) < count:
        _workers.append(_start_worker(len(_workers) + 1))
    return [c for _, c in _workers[:count]]


def shutdown_workers():
    """Stop the worker processes (they start again on the next parallel batch)."""
    with _lock:
        for process, conn in _workers:
            try:
                conn.send(("close", None, None))
            except (OSError, ValueError):
                pass
        for process, conn in _workers:
            try:
                process.wait(timeout=2)
            except Exception:
                pass                 # still running: _kill_workers stops it
        _kill_workers()


def _kill_workers():
    """Stop every worker now and forget them (after an interrupted exchange the replies are
    out of step): the next parallel batch starts fresh ones, and every network re-attaches."""
    global _workers, _generation
    for process, conn in _workers:
        process.kill()
        conn.close()
    _workers = []
    _generation += 1
    _forgotten.clear()


def _remove_leftovers():
    shutdown_workers()
    for path in list(_leftover_files):
        try:
            os.unlink(path)
        except OSError:
            pass


atexit.register(_remove_leftovers)
_generation = 0          # bumped whenever the workers are replaced: every network must re-attach
_forgotten: list = []    # keys of collected DataParallel objects, for the workers to drop


def _forget(key):
    _forgotten.append(key)   # no exchange here: this may run at any moment (garbage collection)


def _worker_died(who: str) -> RuntimeError:
    return RuntimeError(f"{who} (a lenet_core worker process) stopped unexpectedly, perhaps out of "
                        "memory; nothing was updated. Run again (a new worker starts), or set "
                        "LENET_PROCESSES=1 to compute in this process only.")


def _send(conn, request, who: str):
    try:
        conn.send(request)
    except (OSError, ValueError):
        raise _worker_died(who) from None


def _receive(conn, who: str):
    try:
        status, *rest = conn.recv()
    except (EOFError, OSError):
        raise _worker_died(who) from None
    if status == "ok":
        return rest[0]
    exc, text = rest
    raise exc from RuntimeError(f"in {who}:\n{text}")


# ---------------------------------------------------------------------------
# DataParallel
# ---------------------------------------------------------------------------


class DataParallel:
    """Run a :class:`~lenet_core.network.Sequential` on shards of each batch in several processes.

    ``DataParallel(model, processes=None)``; ``processes`` defaults to :func:`default_processes`.
    With one process, a batch of fewer than ``2 * MIN_SHARD`` images, or a model in training
    mode with an active :class:`~lenet_core.layers.Dropout` (its random masks must come from
    one stream to stay reproducible), calls go straight to the model.

    ``forward(x)`` returns what ``model.forward(x)`` returns and ``infer(x)`` what
    ``model.infer(x)`` returns (inference: no backward may follow); ``backward(dout)`` leaves in the
    model's layers the gradients ``model.backward(dout)`` would leave (up to float rounding)
    and returns ``dL/dx`` (None with ``input_grad=False``).
    """

    def __init__(self, model, processes: int | None = None):
        if not hasattr(model, "layers") or not hasattr(model, "get_config"):
            raise TypeError("DataParallel wraps a lenet_core Sequential")
        processes = default_processes() if processes is None else int(processes)
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.model = model
        self.processes = processes if _blas_controller() is not None else 1
        self._key = next(_keys)
        self._local = None           # the copy of the layers that computes shard 0 here
        self._shards = None          # the slices of the last forward; None: the model ran it
        self._conns = []
        self._sessions = []          # open ``with`` blocks
        self._attached = None        # (generation, workers) the shared weights are mapped by
        self._weights = None         # _SharedFile: params, then one gradient slot per worker
        self._io = None              # _SharedFile: per worker, its images then its output gradient
        self._io_new = False
        self._io_layout = None       # (bytes per worker, byte offset of dout within a worker's part)
        weakref.finalize(self, _forget, self._key)

    # -- a session: BLAS stays on one thread here between the batches --------
    def __enter__(self):
        """``with DataParallel(model) as runner:`` keeps this process's BLAS on one thread
        for the whole block (``fit`` does this). Outside a ``with`` each call switches it to
        one thread and back, and BLAS's idle threads then spin for a while on the core the
        worker needs."""
        self._sessions.append(_one_blas_thread().__enter__() if self.processes > 1 else None)
        return self

    def __exit__(self, *exc):
        session = self._sessions.pop()
        if session is not None:
            session.__exit__(*exc)

    # -- what Sequential offers ----------------------------------------------
    @property
    def layers(self):
        return self.model.layers

    def train(self):
        self.model.train()
        return self

    def eval(self):
        self.model.eval()
        return self

    @property
    def training(self):
        return self.model.training

    def params_and_grads(self):
        return self.model.params_and_grads()

    def __getattr__(self, name):     # summary(), num_params(), name, ... come from the model
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    # -- running -------------------------------------------------------------
    def plan(self, n: int):
        """How a batch of ``n`` images is split: contiguous, nearly equal slices of ``range(n)``,
        one per process; None when it is not (one process, fewer than ``2 * MIN_SHARD`` images,
        or an active dropout layer)."""
        count = min(self.processes, n // MIN_SHARD)
        if count < 2:
            return None
        if self.model.training and any(getattr(layer, "p", 0) > 0 and type(layer).__name__ == "Dropout"
                                       for layer in self.model.layers):
            return None
        bounds = [n * t // count for t in range(count + 1)]
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    def _local_copy(self):
        """The layers that compute shard 0 in this process: the model's own parameters
        (the same arrays), their own caches, modes synced with the model's."""
        if self._local is None:
            self._local = Sequential([layer.replica() for layer in self.model.layers], name=self.model.name)
        for layer, twin in zip(self.model.layers, self._local.layers):
            twin.params = layer.params
            twin.training = layer.training
        return self._local

    def _request(self, requests, compute_here, who):
        """Send one request per worker, compute shard 0 here meanwhile, collect the replies.

        If anything is interrupted half-way the workers are replaced on the next call."""
        try:
            for i, (conn, request) in enumerate(zip(self._conns, requests)):
                _send(conn, request, f"worker {i + 1} ({who})")
            error = None
            try:
                with _one_blas_thread():
                    here = compute_here() if compute_here is not None else None
            except Exception as exc:   # still collect the replies, to stay in step
                here, error = None, exc
            replies = []
            for i, conn in enumerate(self._conns):
                try:
                    replies.append(_receive(conn, f"worker {i + 1} ({who})"))
                except Exception as exc:
                    error = error or exc
                    replies.append(None)
        except BaseException:
            _kill_workers()
            raise
        if error is not None:
            raise error
        return here, replies

    def _attach(self, workers: int):
        """Start the workers, give them the network and map the shared weights (once)."""
        self._conns = _ensure_workers(workers)
        try:
            for key in _forgotten:
                for i, conn in enumerate(self._conns):
                    _send(conn, ("forget", key, None), f"worker {i + 1}")
        except RuntimeError:
            _kill_workers()
            raise
        _forgotten.clear()
        if self._attached == (_generation, workers):
            return
        model, dtype = self.model, self.model.dtype
        layout, nbytes = _param_layout(model, dtype)
        self._weights = _SharedFile(nbytes * (workers + 1))
        self._params_view = [(i, key, self._weights.array(off, shape, dtype)) for i, key, shape, off in layout]
        self._grads_view = [[self._weights.array(off + nbytes * (w + 1), shape, dtype)
                             for _, _, shape, off in layout] for w in range(workers)]
        config = model.get_config()
        try:
            self._request([("attach", self._key, (config, dtype.str, self._weights.path, layout, nbytes, w))
                           for w in range(workers)], None, "attach")
        finally:
            self._weights.unlink()   # mapped by every worker now: the name is no longer needed
        self._io = self._io_layout = None
        self._attached = (_generation, workers)

    def _io_views(self, shards, x_shape, out_shape, dtype):
        """The shared input block, grown to fit these shards: per worker its images and its dout."""
        per = lambda shape, n: n * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        longest = max(sl.stop - sl.start for sl in shards[1:])
        x_bytes, d_bytes = per(x_shape, longest), per(out_shape, longest)
        # each worker's part: its images in [0, d_offset), its output gradient in [d_offset, stride)
        if (self._io is None or self._io_layout[1] < x_bytes
                or self._io_layout[0] - self._io_layout[1] < d_bytes):
            x_bytes, d_bytes = 2 * x_bytes, 2 * d_bytes          # room to grow
            self._io = _SharedFile((x_bytes + d_bytes) * (len(shards) - 1))
            self._io_layout = (x_bytes + d_bytes, x_bytes)
            self._io_new = True      # its name goes once the workers have mapped it
        return self._io, self._io_layout

    def forward(self, x):
        return self._forward(x, "forward")

    def infer(self, x):
        """What ``model.infer(x)`` returns (see :meth:`Sequential.infer`): the forward pass
        when no backward follows, each process's share with the inference-only fusions and
        no caches kept. A ``backward`` after it raises an error."""
        for layer in self.model.layers:   # what a later backward would otherwise find there
            layer.cache = None
        try:
            return self._forward(x, "infer")
        finally:
            self._shards = None           # a backward now goes to the model, which refuses it

    def _forward(self, x, kind):
        x = np.asarray(x)
        shards = self.plan(len(x)) if x.ndim >= 1 else None
        self._shards = shards
        run_here = self.model.forward if kind == "forward" else self.model.infer
        if shards is None:
            return run_here(x)
        model, dtype = self.model, self.model.dtype
        try:
            out_shape = x.shape
            for layer in model.layers:
                out_shape = layer.output_shape(out_shape)
        except Exception:            # a malformed input: let the layers say what is wrong
            self._shards = None
            return run_here(x)
        with _lock:
            self._attach(len(shards) - 1)
            for i, key, view in self._params_view:           # the weights as they are now
                np.copyto(view, model.layers[i].params[key])
            io, (stride, d_offset) = self._io_views(shards, x.shape, out_shape, dtype)
            modes = [layer.training for layer in model.layers]
            requests = []
            for w, sl in enumerate(shards[1:]):
                shape = (sl.stop - sl.start,) + x.shape[1:]
                np.copyto(io.array(w * stride, shape, dtype), x[sl])
                requests.append((kind, self._key, (io.path, io.nbytes, w * stride, shape, modes)))
            self._out_shape = out_shape
            local = self._local_copy()
            compute_here = local.forward if kind == "forward" else local.infer
            try:
                here, outs = self._request(requests, lambda: compute_here(x[shards[0]]), kind)
            finally:
                if self._io_new:
                    self._io.unlink()
                    self._io_new = False
        return np.concatenate([here] + outs)

    __call__ = forward

    def backward(self, dout, input_grad: bool = True):
        shards = self._shards
        if shards is None:
            return self.model.backward(dout, input_grad=input_grad)
        dtype = self.model.dtype
        dout = np.asarray(dout)
        if dout.shape != tuple(self._out_shape):
            raise ValueError(f"DataParallel.backward: dout has shape {dout.shape} but the last forward's "
                             f"output had shape {tuple(self._out_shape)}; pass the gradient of that output.")
        with _lock:
            if self._attached != (_generation, len(shards) - 1):
                raise RuntimeError("DataParallel.backward: the worker processes were restarted since the "
                                   "forward pass; run forward again.")
            io, (stride, d_offset) = self._io, self._io_layout
            requests = []
            for w, sl in enumerate(shards[1:]):
                shape = (sl.stop - sl.start,) + dout.shape[1:]
                np.copyto(io.array(w * stride + d_offset, shape, dtype), dout[sl])
                requests.append(("backward", self._key, (w * stride + d_offset, shape, input_grad)))
            local = self._local
            here, dxs = self._request(requests, lambda: local.backward(dout[shards[0]], input_grad=input_grad),
                                      "backward")
            for j, (i, key, _) in enumerate(self._params_view):
                total = local.layers[i].grads[key].copy()
                for grads in self._grads_view:
                    total += grads[j]
                self.model.layers[i].grads[key] = total
        if not input_grad:
            return None
        return np.concatenate([here] + dxs)

    @staticmethod
    def worker_stats() -> list[dict]:
        """``{"peak_rss_mb", "cpu_seconds"}`` of each worker process (for the benchmarks)."""
        with _lock:
            out = []
            for i, (process, conn) in enumerate(_workers):
                conn.send(("stats", None, None))
                out.append(_receive(conn, f"worker {i + 1}"))
        return out

    def __repr__(self):
        return f"DataParallel({self.model.name}, processes={self.processes})"
