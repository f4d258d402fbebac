"""Checkpoints: a model, its optimizer and its training history in one ``.npz`` file, without pickle.

Layout of the file (a NumPy ``.npz``, i.e. a zip of ``.npy`` arrays):

* ``__lenet_core_checkpoint__``: a uint8 array holding UTF-8 JSON metadata: the format
  name and version, the lenet_core version, the model's name, input shape, dtype
  and architecture (``Sequential.get_config()``), the optimizer's type,
  hyperparameters, step count and buffer names, the epoch count, the history, the
  random state of every Dropout layer and the caller's ``extra`` dict;
* ``model/<name>`` for every parameter (``model/0.W``, ``model/0.b``, ...);
* ``optim/<name>/<buffer>`` for every optimizer buffer (``optim/0.W/m``, ...).

Loading uses ``np.load(..., allow_pickle=False)`` and ``json``, so a checkpoint can
hold only numbers and text: opening one never runs code. Saving writes a temporary
file next to the target, flushes it to disk and renames it over the target, so a
crash or error mid-save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._version import __version__
from .fast import to_fast
from .history import History
from .network import Sequential
from .optim import make_optimizer

__all__ = ["save_checkpoint", "load_checkpoint", "Checkpoint", "CheckpointError", "FORMAT_NAME",
           "FORMAT_VERSION"]

FORMAT_NAME = "lenet_core-checkpoint"
FORMAT_VERSION = 1
META_KEY = "__lenet_core_checkpoint__"


class CheckpointError(ValueError):
    """The file is not a readable lenet_core checkpoint, or does not fit the model."""


def _jsonable(obj, what):
    try:
        return json.loads(json.dumps(obj, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"checkpoint {what} must be JSON-serializable (numbers, strings, lists, dicts): {exc}") \
            from None


def _dropout_states(model) -> dict:
    return {str(i): layer.rng.bit_generator.state for i, layer in enumerate(model.layers)
            if type(layer).__name__ == "Dropout"}


def save_checkpoint(path, model, optimizer=None, epoch=0, history=None, extra=None) -> Path:
    """Write ``model`` (and ``optimizer``, ``epoch``, ``history``, ``extra``) to ``path`` atomically.

    ``extra`` and ``history`` must be JSON-serializable. The file is written exactly at
    ``path`` (no suffix is added; ``.npz`` is the convention). Returns the path.
    """
    path = Path(path)
    arrays = {}
    for name, p in model.state_dict().items():
        arrays[f"model/{name}"] = p
    opt_meta = None
    if optimizer is not None:
        if getattr(optimizer, "model", model) is not model:
            raise ValueError("the optimizer was built for a different model than the one being saved")
        sd = optimizer.state_dict()
        opt_meta = {"type": sd["type"], "steps": int(sd["steps"]), "hyper": _jsonable(sd["hyper"], "optimizer"),
                    "buffers": {n: sorted(bufs) for n, bufs in sd["state"].items()}}
        for n, bufs in sd["state"].items():
            for k, v in bufs.items():
                arrays[f"optim/{n}/{k}"] = v
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "lenet_core_version": __version__,
        "model": {"name": model.name, "input_shape": list(model.input_shape) if model.input_shape else None,
                  "dtype": np.dtype(model.dtype).name, "config": model.get_config(),
                  "dropout_rng": _dropout_states(model)},
        "optimizer": opt_meta,
        "epoch": int(epoch),
        "history": _jsonable(dict(history) if history is not None else None, "history"),
        "extra": _jsonable(extra, "extra"),
    }
    arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)

    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot save the checkpoint: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable; not possible on every platform
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns.

    ``model`` is a rebuilt :class:`~lenet_core.network.Sequential` with the saved weights
    (and Dropout random states); ``optimizer_state`` is the optimizer's ``state_dict()``
    (or ``None``); ``history`` a :class:`~lenet_core.history.History` (or ``None``).
    """

    model: object
    optimizer_state: dict | None
    epoch: int
    history: object
    extra: dict | None
    format_version: int
    lenet_core_version: str
    path: Path | None = None
    metadata: dict = field(default_factory=dict, repr=False)

    def make_optimizer(self, model=None):
        """Rebuild the saved optimizer (same type, hyperparameters, buffers and step count) on
        ``model`` (default: ``self.model``). Raises ``ValueError`` if none was saved."""
        if self.optimizer_state is None:
            raise ValueError("this checkpoint holds no optimizer state (it was saved without an optimizer)")
        model = self.model if model is None else model
        sd = self.optimizer_state
        hyper = dict(sd["hyper"])
        lr = hyper.pop("lr")
        if "betas" in hyper:
            hyper["betas"] = tuple(hyper["betas"])
        opt = make_optimizer(sd["type"].lower(), model, lr, **hyper)
        return self.restore_optimizer(opt)

    def restore_optimizer(self, optimizer):
        """Load the saved state into an existing optimizer of the same type."""
        if self.optimizer_state is None:
            raise ValueError("this checkpoint holds no optimizer state (it was saved without an optimizer)")
        sd = dict(self.optimizer_state)
        sd["hyper"] = dict(sd["hyper"])
        if "betas" in sd["hyper"]:
            sd["hyper"]["betas"] = tuple(sd["hyper"]["betas"])
        optimizer.load_state_dict(sd)
        return optimizer


def _fail(path, message):
    raise CheckpointError(f"{path}: {message}")


def _read(path):
    """``(meta, arrays)`` from the file, with every structural problem as a CheckpointError."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        _fail(path, "is not a file (expected a .npz checkpoint written by lenet_core)")
    if not zipfile.is_zipfile(path):
        _fail(path, "is not a .npz checkpoint (not a zip archive); was it written by lenet_core's save_checkpoint?")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            if META_KEY not in names:
                _fail(path, "is an .npz archive but not a lenet_core checkpoint (no metadata entry "
                            f"{META_KEY!r}); load plain weight files with Sequential.load_state_dict")
            arrays = {k: z[k] for k in names}
    except CheckpointError:
        raise
    except Exception as exc:  # zip/CRC errors, pickled object arrays, truncated members
        _fail(path, f"could not be read as a checkpoint ({type(exc).__name__}: {exc}); the file may be "
                    "truncated or corrupted")
    raw = arrays.pop(META_KEY)
    try:
        meta = json.loads(raw.astype(np.uint8).tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        _fail(path, f"the checkpoint metadata is damaged ({exc})")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        _fail(path, "is not a lenet_core checkpoint (unknown metadata format)")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        _fail(path, f"has an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        _fail(path, f"uses checkpoint format version {version}, written by lenet_core "
                    f"{meta.get('lenet_core_version', '?')}; this lenet_core ({__version__}) reads versions up to "
                    f"{FORMAT_VERSION}. Upgrade lenet_core to load it.")
    for key in ("model", "epoch"):
        if key not in meta:
            _fail(path, f"the checkpoint metadata has no {key!r} entry")
    return meta, arrays


def load_checkpoint(path, model=None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    The model is rebuilt from the stored architecture with ``Sequential.from_config``. If
    ``model`` is given, the weights are loaded into it instead (its architecture must match;
    otherwise a :class:`CheckpointError` lists the differences and the model is unchanged).

    Raises ``FileNotFoundError`` if ``path`` does not exist and :class:`CheckpointError`
    (a ``ValueError``) for anything else that is wrong: not an npz, not a lenet_core
    checkpoint, an unsupported format version, damaged metadata, missing arrays or a
    shape/architecture mismatch.
    """
    path = Path(path)
    meta, arrays = _read(path)
    mm = meta["model"]
    try:
        dtype = np.dtype(mm.get("dtype", "float32"))
        config = mm["config"]
        built = Sequential.from_config(config, dtype=dtype, name=mm.get("name", "sequential"),
                                       input_shape=mm.get("input_shape"))
    except Exception as exc:
        _fail(path, f"the stored architecture cannot be rebuilt ({exc})")
    if model is None:
        model = to_fast(built)       # the engine lenet5() builds by default (see lenet_core.fast)
    elif model.get_config() != built.get_config():
        _fail(path, f"the checkpoint holds a different architecture ({mm.get('name')}) than the model "
                    f"given ({model.name}):\n  saved: {built.get_config()}\n  model: {model.get_config()}")
    state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    expected = set(built.named_params())
    missing = sorted(expected - set(state))
    if missing:
        _fail(path, f"the checkpoint is missing parameter arrays: {', '.join(missing)}")
    try:
        model.load_state_dict(state)
    except ValueError as exc:
        _fail(path, str(exc))

    for idx, st in (mm.get("dropout_rng") or {}).items():
        layer = model.layers[int(idx)]
        try:
            layer.rng.bit_generator.state = st
        except Exception as exc:
            _fail(path, f"the random state of Dropout layer {idx} cannot be restored ({exc})")

    opt_state = None
    om = meta.get("optimizer")
    if om is not None:
        bufs = {}
        absent = []
        for n, keys in om.get("buffers", {}).items():
            for k in keys:
                entry = f"optim/{n}/{k}"
                if entry not in arrays:
                    absent.append(entry)
                else:
                    bufs.setdefault(n, {})[k] = arrays[entry]
        if absent:
            _fail(path, f"the checkpoint is missing optimizer arrays: {', '.join(absent)}")
        opt_state = {"type": om["type"], "steps": int(om["steps"]), "hyper": dict(om["hyper"]), "state": bufs}

    history = meta.get("history")
    return Checkpoint(model=model, optimizer_state=opt_state, epoch=int(meta["epoch"]),
                      history=History(history) if history is not None else None, extra=meta.get("extra"),
                      format_version=int(meta["format_version"]),
                      lenet_core_version=str(meta.get("lenet_core_version", "?")), path=path, metadata=meta)
