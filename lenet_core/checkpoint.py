"""Checkpoints: a model, its optimizer and its training history in one ``.npz`` file, without pickle.

Layout of the file (a NumPy ``.npz``, i.e. a zip of ``.npy`` arrays):

* ``__lenet_core_checkpoint__``: a uint8 array holding UTF-8 JSON metadata: the format
  name and version, the lenet_core version, the model's name, input shape, dtype
  and architecture (``Sequential.get_config()``), the optimizer's type,
  hyperparameters, step count and buffer names, the epoch count, the history, the
  random state of every Dropout layer and the caller's ``extra`` dict;
* ``model/<name>`` for every parameter (``model/0.W``, ``model/0.b``, ...);
* ``optim/<name>/<buffer>`` for every optimizer buffer (``optim/0.W/m``, ...).

Loading never runs code and never trusts the file: it reads the zip directory and
the metadata first, works out from the stored architecture exactly which arrays
must be there with which shape and dtype, and checks each entry's declared size and
``.npy`` header against that *before* decompressing a byte of it. So a small crafted
file cannot make it allocate more than the (bounded) model it describes, and every
problem (truncation, damaged or ill-typed metadata, a missing or extra array, a
shape that does not fit, NaN or infinite weights) is a :class:`CheckpointError`
naming what is wrong. Saving writes a temporary file next to the target, flushes
it to disk and renames it over the target (see :mod:`lenet_core.files`), so a crash
or error mid-save leaves the previous checkpoint intact, and a replaced file keeps
its permissions.
"""
from __future__ import annotations

import json
import math
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from ._version import __version__
from .fast import to_fast
from .files import atomic_write, remove_stale
from .history import History
from .layers import layer_type
from .models import LENET5_VARIANTS, lenet5
from .network import Sequential
from .optim import make_optimizer

__all__ = ["save_checkpoint", "load_checkpoint", "Checkpoint", "CheckpointError", "FORMAT_NAME",
           "FORMAT_VERSION", "MAX_ARRAY_BYTES"]

FORMAT_NAME = "lenet_core-checkpoint"
FORMAT_VERSION = 1
META_KEY = "__lenet_core_checkpoint__"
#: Largest total of array data a checkpoint may declare unless load_checkpoint is told otherwise
#: (LeNet-5 with Adam's buffers: 0.74 MB).
MAX_ARRAY_BYTES = 1 << 30
MAX_METADATA_BYTES = 16 << 20
_MAX_NPY_HEADER = 1 << 16
_MAX_SIZE = 1 << 31          # largest single dimension accepted in a stored architecture
_DTYPES = ("float32", "float64")
_BUFFERS = {"SGD": ({"velocity"}, set()), "Adam": ({"m", "v"}, {"m", "v"})}   # (allowed, required) per param


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
            if layer_type(layer) == "Dropout"}


def save_checkpoint(path, model, optimizer=None, epoch=0, history=None, extra=None) -> Path:
    """Write ``model`` (and ``optimizer``, ``epoch``, ``history``, ``extra``) to ``path`` atomically.

    ``extra`` and ``history`` must be JSON-serializable. The file is written exactly at
    ``path`` (no suffix is added; ``.npz`` is the convention). An existing file there is
    replaced (keeping its permissions) only once the new one is complete; temporary files
    that killed saves of the same path left behind are deleted. Returns the path.
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
    remove_stale(directory, path.name, ".tmp")
    with atomic_write(path, ".tmp") as f:
        np.savez(f, **arrays)
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


class _Bad(Exception):
    """Something in the file is wrong; the text says what (load_checkpoint adds the path)."""


def _fail(path, message):
    raise CheckpointError(f"{path}: {message}")


# -- the metadata: types and values, before anything else is read ---------------


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _need(ok, message):
    if not ok:
        raise _Bad(f"the checkpoint metadata is malformed: {message}")


def _size(layer, key, i):
    v = layer.get(key)
    _need(_is_int(v) and 1 <= v <= _MAX_SIZE, f"layer {i} ({layer.get('type')}) has {key} {v!r}, expected a whole "
                                             f"number from 1 to {_MAX_SIZE}")
    return v


def _param_shapes(config) -> dict:
    """``{name: shape}`` of the parameters the stored architecture has, computed without building it."""
    shapes = {}
    for i, layer in enumerate(config):
        kind = layer["type"]
        if kind == "Conv2D":
            f, c, k = (_size(layer, key, i) for key in ("out_channels", "in_channels", "kernel_size"))
            shapes[f"{i}.W"], shapes[f"{i}.b"] = (f, c, k, k), (f,)
        elif kind == "Linear":
            d_out, d_in = _size(layer, "out_features", i), _size(layer, "in_features", i)
            shapes[f"{i}.W"], shapes[f"{i}.b"] = (d_out, d_in), (d_out,)
    return shapes


def _check_history(history):
    _need(isinstance(history, dict), f"'history' is a {type(history).__name__}, expected a dict of lists")
    lengths = {}
    for key, values in history.items():
        _need(isinstance(values, list) and all(_is_number(v) for v in values),
              f"history entry {key!r} is not a list of numbers")
        lengths[key] = len(values)
    core = {k: n for k, n in lengths.items() if k in History.KEYS and not k.startswith("val_")}
    _need(len(set(core.values())) <= 1, f"the history's lists have different lengths: {core}")
    n = next(iter(core.values()), None)
    for key in ("val_loss", "val_acc"):
        _need(n is None or lengths.get(key, 0) in (0, n),
              f"history entry {key!r} has {lengths.get(key)} values for {n} epochs")


def _check_metadata(meta) -> dict:
    """Check every field's type and value; return what the arrays must be:
    ``{"dtype", "config", "params": {name: shape}, "buffers": {entry: (param name, shape)}}``."""
    _need(_is_int(meta.get("epoch")) and meta["epoch"] >= 0,
          f"'epoch' is {meta.get('epoch', 'missing')!r}, expected a whole number >= 0")
    _need(isinstance(meta.get("lenet_core_version", ""), str), "'lenet_core_version' is not text")
    mm = meta.get("model")
    _need(isinstance(mm, dict), "the 'model' entry is not a dict")
    for key in ("name", "config", "dtype"):
        _need(key in mm, f"the 'model' entry has no {key!r}")
    _need(isinstance(mm["name"], str), f"the model name is {mm['name']!r}, expected text")
    _need(mm["dtype"] in _DTYPES, f"the model dtype is {mm['dtype']!r}, expected one of {', '.join(_DTYPES)}")
    shape = mm.get("input_shape")
    _need(shape is None or (isinstance(shape, list) and 1 <= len(shape) <= 5
                            and all(_is_int(d) and 1 <= d <= _MAX_SIZE for d in shape)),
          f"the input shape is {shape!r}, expected a list of positive whole numbers")
    config = mm["config"]
    _need(isinstance(config, list) and config and all(isinstance(c, dict) and isinstance(c.get("type"), str)
                                                      for c in config),
          "the architecture ('model.config') is not a list of layers, each a dict with a 'type'")
    params = _param_shapes(config)

    rng = mm.get("dropout_rng") or {}
    _need(isinstance(rng, dict), "'model.dropout_rng' is not a dict")
    for idx, state in rng.items():
        _need(isinstance(idx, str) and re.fullmatch(r"[0-9]{1,6}", idx) is not None and int(idx) < len(config)
              and config[int(idx)]["type"] == "Dropout",
              f"'model.dropout_rng' names layer {idx!r}, which is not a Dropout layer of the architecture")
        try:
            np.random.default_rng().bit_generator.state = state
        except Exception as exc:
            raise _Bad(f"the random state of Dropout layer {idx} cannot be restored ({exc})") from None

    history = meta.get("history")
    if history is not None:
        _check_history(history)
    _need(meta.get("extra") is None or isinstance(meta["extra"], dict), "'extra' is not a dict")

    buffers = {}
    om = meta.get("optimizer")
    if om is not None:
        _need(isinstance(om, dict), "the 'optimizer' entry is not a dict")
        kind = om.get("type")
        _need(isinstance(kind, str) and kind in _BUFFERS,
              f"the optimizer type is {kind!r}, expected one of {', '.join(_BUFFERS)}")
        _need(_is_int(om.get("steps")) and om["steps"] >= 0,
              f"the optimizer step count is {om.get('steps')!r}, expected a whole number >= 0")
        hyper = om.get("hyper")
        _need(isinstance(hyper, dict) and _is_number(hyper.get("lr")),
              "the optimizer hyperparameters are not a dict with a numeric 'lr'")
        for key, value in hyper.items():
            values = value if isinstance(value, list) else [value]
            _need(all(isinstance(v, bool) or (_is_number(v) and math.isfinite(v)) for v in values),
                  f"optimizer hyperparameter {key}={value!r} is not a finite number")
        names = om.get("buffers", {})
        _need(isinstance(names, dict), "the optimizer buffer list is not a dict")
        allowed, required = _BUFFERS[kind]
        for n, keys in names.items():
            _need(n in params, f"the optimizer has buffers for {n!r}, which is not a parameter of the architecture")
            _need(isinstance(keys, list) and all(isinstance(k, str) for k in keys) and set(keys) <= allowed
                  and required <= set(keys) and len(set(keys)) == len(keys),
                  f"{kind} buffers of {n} are {keys!r}, expected {sorted(allowed)}")
            for k in keys:
                buffers[f"optim/{n}/{k}"] = (n, params[n])
    return {"dtype": np.dtype(mm["dtype"]), "config": config, "params": params, "buffers": buffers}


# -- the zip entries: declared sizes and .npy headers, before any data ----------


def _npy_header(f, name):
    """``(shape, fortran_order, dtype, header bytes)`` of an .npy entry, reading only its header."""
    try:
        version = npy.read_magic(f)
        reader = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
        if reader is None:
            raise _Bad(f"entry {name!r} is in .npy format version {version}, which lenet_core does not write")
        shape, fortran, dtype = reader(f, max_header_size=_MAX_NPY_HEADER)
    except _Bad:
        raise
    except Exception as exc:   # NumPy's header parser raises many kinds (ValueError, SyntaxError, TokenError, ...)
        raise _Bad(f"entry {name!r} has no valid .npy header ({type(exc).__name__}: {exc})") from None
    return tuple(shape), fortran, dtype, f.tell()


def _read_entry(zf, info, name, shape, dtype) -> np.ndarray:
    """The array in entry ``name``, after checking that its header promises exactly ``shape`` and
    ``dtype`` and that the zip declares exactly that many bytes; reads nothing more than that."""
    nbytes = math.prod(shape) * dtype.itemsize
    if info.file_size > nbytes + _MAX_NPY_HEADER:
        raise _Bad(f"entry {name!r} declares {info.file_size:,} bytes, but the metadata promises {shape} "
                   f"{dtype.name} ({nbytes:,} bytes); refusing to decompress it")
    with zf.open(info) as f:
        got_shape, fortran, got_dtype, header = _npy_header(f, name)
        if got_dtype.hasobject or got_dtype.newbyteorder("=") != dtype:
            raise _Bad(f"entry {name!r} holds {got_dtype}, expected {dtype.name}")
        if got_shape != tuple(shape):
            raise _Bad(f"the arrays do not fit the stored architecture: wrong shapes: {name.split('/', 1)[1]}: "
                       f"expected {tuple(shape)}, got {got_shape}")
        if info.file_size != header + nbytes:
            raise _Bad(f"entry {name!r} declares {info.file_size:,} bytes, but its header promises {header + nbytes:,}")
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise _Bad(f"entry {name!r} is truncated")
    flat = np.frombuffer(data, dtype=got_dtype)
    return flat.reshape(shape, order="F" if fortran else "C").astype(dtype)   # a writable, native copy


def _open_zip(path):
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        size = path.stat().st_size
        with open(path, "rb") as f:
            start = f.read(4)
        if size == 0:
            _fail(path, "is empty (0 bytes); it was not written completely. Use an earlier copy or train again.")
        if start == b"PK\x03\x04":
            _fail(path, f"is truncated: it starts like a .npz checkpoint, but its end (the zip directory) is "
                        f"missing after {size:,} bytes; the file was not written completely or was cut short "
                        "when copied. Use an earlier copy or train again.")
        _fail(path, f"is not a .npz checkpoint (not a zip archive: {exc}); was it written by lenet_core's "
                    "save_checkpoint?")


def _read(path, max_bytes):
    """``(meta, spec, arrays)``: the checked metadata, what it promises, and every array it names."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        _fail(path, "is not a file (expected a .npz checkpoint written by lenet_core)")
    with _open_zip(path) as zf:
        try:
            return _read_zip(path, zf, max_bytes)
        except _Bad as exc:
            _fail(path, str(exc))
        except (zipfile.BadZipFile, EOFError, zlib.error, OSError, NotImplementedError, RuntimeError) as exc:
            _fail(path, f"could not be read as a checkpoint ({type(exc).__name__}: {exc}); the file may be "
                        "truncated or corrupted")


def _read_zip(path, zf, max_bytes):
    infos = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            raise _Bad(f"could not be read as a checkpoint: entry {info.filename!r} is not a .npy array")
        name = info.filename[:-4]
        if name in infos:
            raise _Bad(f"could not be read as a checkpoint: entry {name!r} appears twice")
        if info.flag_bits & 0x1:
            raise _Bad(f"could not be read as a checkpoint: entry {name!r} is encrypted")
        infos[name] = info
    if META_KEY not in infos:
        raise _Bad("is an .npz archive but not a lenet_core checkpoint (no metadata entry "
                   f"{META_KEY!r}); load plain weight files with Sequential.load_state_dict")
    info = infos.pop(META_KEY)
    if info.file_size > MAX_METADATA_BYTES + _MAX_NPY_HEADER:
        raise _Bad(f"could not be read as a checkpoint: its metadata entry declares {info.file_size:,} bytes "
                   f"(at most {MAX_METADATA_BYTES:,} expected)")
    with zf.open(info) as f:
        shape, _, dtype, header = _npy_header(f, META_KEY)
    if dtype != np.uint8 or len(shape) != 1:
        raise _Bad(f"could not be read as a checkpoint: the metadata entry holds {dtype} {shape}, "
                   "expected bytes (uint8, 1-D)")
    raw = _read_entry(zf, info, META_KEY, shape, np.dtype(np.uint8))
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _Bad(f"the checkpoint metadata is damaged ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise _Bad("is not a lenet_core checkpoint (unknown metadata format)")
    version = meta.get("format_version")
    if not _is_int(version) or version < 1:
        raise _Bad(f"has an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise _Bad(f"uses checkpoint format version {version}, written by lenet_core "
                   f"{meta.get('lenet_core_version', '?')}; this lenet_core ({__version__}) reads versions up to "
                   f"{FORMAT_VERSION}. Upgrade lenet_core to load it.")
    for key in ("model", "epoch"):
        if key not in meta:
            raise _Bad(f"the checkpoint metadata has no {key!r} entry")

    spec = _check_metadata(meta)
    dtype = spec["dtype"]
    wanted = {f"model/{n}": shape for n, shape in spec["params"].items()}
    wanted.update({entry: shape for entry, (_, shape) in spec["buffers"].items()})
    missing = [e for e in wanted if e not in infos]
    params_missing = [e[len("model/"):] for e in missing if e.startswith("model/")]
    if params_missing:
        raise _Bad(f"the checkpoint is missing parameter arrays: {', '.join(sorted(params_missing))}")
    if missing:
        raise _Bad(f"the checkpoint is missing optimizer arrays: {', '.join(sorted(missing))}")
    unexpected = sorted(set(infos) - set(wanted))
    if unexpected:
        raise _Bad(f"holds arrays that its metadata does not describe: {', '.join(unexpected[:10])}"
                   + (" ..." if len(unexpected) > 10 else ""))
    total = sum(math.prod(shape) for shape in wanted.values()) * dtype.itemsize
    if total > max_bytes:
        raise _Bad(f"its architecture declares {total:,} bytes of arrays, more than the limit of {max_bytes:,}; "
                   "if you trust the file, pass a larger max_bytes to load_checkpoint")
    declared = {e: infos[e] for e in wanted}
    for entry, info in declared.items():   # sizes first: nothing is decompressed if any entry lies
        nbytes = math.prod(wanted[entry]) * dtype.itemsize
        if info.file_size > nbytes + _MAX_NPY_HEADER:
            raise _Bad(f"entry {entry!r} declares {info.file_size:,} bytes, but the metadata promises "
                       f"{wanted[entry]} {dtype.name} ({nbytes:,} bytes); refusing to decompress it")
    arrays = {}
    for entry, info in declared.items():
        arr = _read_entry(zf, info, entry, wanted[entry], dtype)
        if not np.isfinite(arr).all():
            bad = int(arr.size - np.isfinite(arr).sum())
            what = "parameter" if entry.startswith("model/") else "optimizer buffer"
            raise _Bad(f"{what} {entry.split('/', 1)[1]} holds NaN or infinite values ({bad:,} of "
                       f"{arr.size:,}); the run that saved it had diverged. Use an earlier checkpoint.")
        arrays[entry] = arr
    return meta, spec, arrays


def _check_named_variant(mm, built):
    """A model named ``lenet5-<variant>`` must have that variant's architecture and input shape."""
    variant = mm["name"].removeprefix("lenet5-")
    if not mm["name"].startswith("lenet5-") or variant not in LENET5_VARIANTS:
        return
    drops = {layer.p for layer in built.layers if layer_type(layer) == "Dropout"}
    reference = lenet5(variant, seed=0, dtype=built.dtype, dropout=drops.pop() if len(drops) == 1 else 0.0)
    ours, theirs = built.get_config(), reference.get_config()
    if ours != theirs:
        diff = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        raise _Bad(f"the metadata names the model {mm['name']}, but its architecture is not LeNet-5 {variant} "
                   f"(layer {diff}: {ours[diff] if diff < len(ours) else 'missing'}, expected "
                   f"{theirs[diff] if diff < len(theirs) else 'nothing'})")
    if mm.get("input_shape") not in (None, list(reference.input_shape)):
        raise _Bad(f"the metadata names the model {mm['name']}, but its input shape is {mm['input_shape']}, "
                   f"expected {list(reference.input_shape)}")


def load_checkpoint(path, model=None, *, max_bytes=MAX_ARRAY_BYTES) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    The model is rebuilt from the stored architecture with ``Sequential.from_config``. If
    ``model`` is given, the weights are loaded into it instead (its architecture must match;
    otherwise a :class:`CheckpointError` lists the differences and the model is unchanged).
    Nothing is decompressed before the metadata has been checked and every entry's declared
    size and header agree with it; ``max_bytes`` bounds the array data a file may declare.

    Raises ``FileNotFoundError`` if ``path`` does not exist and :class:`CheckpointError`
    (a ``ValueError``) for anything else that is wrong: not an npz, truncated, not a
    lenet_core checkpoint, an unsupported format version, damaged or ill-typed metadata,
    missing or extra arrays, a shape that does not fit the architecture (or the named
    LeNet-5 variant), NaN or infinite values, or a model of another architecture.
    """
    path = Path(path)
    meta, spec, arrays = _read(path, max_bytes)
    mm = meta["model"]
    try:
        built = Sequential.from_config(spec["config"], dtype=spec["dtype"], name=mm["name"],
                                       input_shape=mm.get("input_shape"))
    except Exception as exc:
        _fail(path, f"the stored architecture cannot be rebuilt ({exc})")
    shapes = {k: p.shape for k, p in built.named_params().items()}
    if shapes != spec["params"]:   # only if a layer type gained parameters _param_shapes does not know
        _fail(path, f"the stored architecture has parameters {sorted(shapes)}; expected {sorted(spec['params'])}")
    try:
        _check_named_variant(mm, built)
    except _Bad as exc:
        _fail(path, str(exc))

    opt_state = None
    om = meta.get("optimizer")
    if om is not None:
        bufs = {}
        for entry, (n, _) in spec["buffers"].items():
            bufs.setdefault(n, {})[entry.rsplit("/", 1)[1]] = arrays[entry]
        opt_state = {"type": om["type"], "steps": int(om["steps"]), "hyper": dict(om["hyper"]), "state": bufs}
    checkpoint = Checkpoint(model=built, optimizer_state=opt_state, epoch=int(meta["epoch"]),
                            history=History(meta["history"]) if meta.get("history") is not None else None,
                            extra=meta.get("extra"), format_version=int(meta["format_version"]),
                            lenet_core_version=str(meta.get("lenet_core_version", "?")), path=path, metadata=meta)
    if opt_state is not None:
        try:   # the optimizer the file describes must be one we can rebuild, before anyone relies on it
            checkpoint.make_optimizer()
        except (TypeError, ValueError, KeyError) as exc:
            _fail(path, f"the stored optimizer cannot be rebuilt ({exc})")

    state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    if model is not None and model.get_config() != built.get_config():
        _fail(path, f"the checkpoint holds a different architecture ({mm.get('name')}) than the model "
                    f"given ({model.name}):\n  saved: {built.get_config()}\n  model: {model.get_config()}")
    target = to_fast(built) if model is None else model   # lenet5()'s default engine (lenet_core.fast)
    try:
        target.load_state_dict(state)
    except ValueError as exc:
        _fail(path, str(exc))
    for idx, st in (mm.get("dropout_rng") or {}).items():
        target.layers[int(idx)].rng.bit_generator.state = st
    checkpoint.model = target
    return checkpoint
