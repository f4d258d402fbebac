"""Export a trained LeNet-5 for the network that runs in the book's pages, and read such exports back.

The page *Draw a digit* (``notebooks/12_draw_a_digit.ipynb``) runs LeNet-5 in the
reader's browser, in JavaScript (``lenet_core/web/lenet.js``), with no Python kernel.
It reads the network from a **web export**: one JSON file holding the layers, their
weights and how inputs are prepared. :func:`export_model` writes one for a model in
memory, :func:`export_checkpoint` (and ``python -m lenet_core export CHECKPOINT OUT``)
for a checkpoint saved by :func:`lenet_core.save_checkpoint` or ``python -m lenet_core
train``; the page's file picker loads it. :func:`read_web_export` reads one back into a
:class:`~lenet_core.models.Sequential`, with the same checks the page makes.

Format (version 1): a UTF-8 JSON object ::

    {
      "format": "lenet_core-web",
      "format_version": 1,
      "lenet_core_version": "0.1.0",
      "name": "lenet5-classic",          # the model's name
      "variant": "classic",              # which LeNet-5: "classic" (tanh, average pooling)
                                         # or "modern" (ReLU, max pooling)
      "input_shape": [1, 32, 32],        # channels, height, width
      "preprocessing": {                 # how a 32x32 image in [0, 1] becomes the input
        "standardize": true,             # x -> (x - mean) / std in float32, or x unchanged
        "mean": 0.1307, "std": 0.3081
      },
      "test": {"accuracy": 0.9874, "images": 10000},   # or null when unknown
      "description": "free text",
      "layers": [                        # in order; Dropout layers are left out (at
                                         # inference they pass their input through)
        {"type": "Conv2D", "stage": "C1", "in_channels": 1, "out_channels": 6,
         "kernel_size": 5, "stride": 1, "padding": 0,
         "params": {"W": {"shape": [6, 1, 5, 5], "crc32": 123456789, "data": "<base64>"},
                    "b": {"shape": [6], "crc32": 987654321, "data": "<base64>"}}},
        {"type": "Tanh", "stage": "C1"},
        {"type": "AvgPool2D", "stage": "S2", "kernel_size": 2, "stride": 2},
        ...
        {"type": "Flatten", "stage": "C5"},
        {"type": "Linear", "stage": "F6", "in_features": 120, "out_features": 84, "params": {...}},
        ...
      ]
    }

Every parameter array is float32, little-endian, in C (row-major) order with PyTorch's
shapes (Conv2D ``W``: (F, C, K, K); Linear ``W``: (out, in)), encoded in base64;
``crc32`` is ``zlib.crc32`` of those raw bytes, so a damaged file is recognized rather
than silently giving other weights. ``stage`` names the part of LeNet-5 a layer belongs
to (C1, S2, C3, S4, C5, F6, output); the page shows the output of the last layer of each
stage. A classic LeNet-5 export is about 330 KB.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._version import __version__
from .checkpoint import load_checkpoint
from .files import atomic_write
from .models import LENET5_VARIANTS, lenet5
from .network import Sequential
from .preprocess import MNIST_MEAN, MNIST_STD

__all__ = ["WebExportError", "WebModel", "FORMAT_NAME", "FORMAT_VERSION", "STAGES", "to_web_json",
           "export_model", "export_checkpoint", "checkpoint_web_json", "read_web_export", "variant_of"]

FORMAT_NAME = "lenet_core-web"
FORMAT_VERSION = 1
#: The stage of each layer of LeNet-5 (without Dropout), in order.
STAGES = ("C1", "C1", "S2", "C3", "C3", "S4", "C5", "C5", "C5", "F6", "F6", "output")
#: Files larger than this are refused when read (an export of LeNet-5 is about 330 KB).
MAX_BYTES = 20_000_000
_PARAM_LAYERS = ("Conv2D", "Linear")


class WebExportError(ValueError):
    """A model that cannot be exported for the page, or a file that is not a valid web export."""


@dataclass
class WebModel:
    """What :func:`read_web_export` returns: the rebuilt model and how to prepare its inputs."""

    model: Sequential
    variant: str
    standardize: bool
    mean: float
    std: float
    test_accuracy: float | None
    test_images: int | None
    name: str
    description: str

    def prepare(self, x) -> np.ndarray:
        """Inputs in [0, 1] (e.g. from ``preprocess_digit_image``) as the model expects them, float32."""
        x = np.array(x, dtype=np.float32)
        if self.standardize:
            x -= np.float32(self.mean)
            x /= np.float32(self.std)
        return x


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------


def _without_dropout(config):
    return [c for c in config if c.get("type") != "Dropout"]


def _layers_and_configs(model):
    """``(layer, config)`` of every layer but Dropout. The config's type is the plain layer's
    name whichever engine computes (``Conv2D`` also for the fast engine's ``FastConv2D``)."""
    return [(layer, config) for layer, config in zip(model.layers, model.get_config()) if config["type"] != "Dropout"]


def variant_of(model) -> str:
    """``"classic"`` or ``"modern"``: which LeNet-5 ``model`` is (Dropout layers aside).

    Raises :class:`WebExportError` for any other architecture: the page draws the
    layers of LeNet-5 and nothing else.
    """
    config = _without_dropout(model.get_config())
    for variant in LENET5_VARIANTS:
        if config == lenet5(variant, seed=0).get_config():
            return variant
    layers = ", ".join(layer.describe() for layer in model.layers) or "no layers"
    raise WebExportError(f"the page runs LeNet-5 only (lc.lenet5('classic') or lc.lenet5('modern'), "
                         f"optionally with dropout); {getattr(model, 'name', 'this model')} has other layers: "
                         f"{layers}")


def _encode(array) -> dict:
    raw = np.ascontiguousarray(array, dtype="<f4")
    if not np.all(np.isfinite(raw)):
        raise WebExportError("the model has parameters that are not finite numbers (inf or NaN): was training "
                             "diverging? Export a checkpoint from before it happened.")
    data = raw.tobytes()
    return {"shape": list(raw.shape), "crc32": zlib.crc32(data), "data": base64.b64encode(data).decode("ascii")}


def _manifest(model, standardize: bool, test_accuracy, test_images, description: str) -> dict:
    if not isinstance(model, Sequential):
        raise WebExportError(f"expected a lenet_core Sequential (e.g. lc.lenet5(...)) or a checkpoint, "
                             f"got {type(model).__name__}")
    variant = variant_of(model)
    out = []
    for stage, (layer, config) in zip(STAGES, _layers_and_configs(model)):
        entry = {"type": config["type"], "stage": stage, **{k: v for k, v in config.items() if k != "type"}}
        if config["type"] in _PARAM_LAYERS:
            entry["params"] = {key: _encode(layer.params[key]) for key in ("W", "b")}
        out.append(entry)
    test = None
    if test_accuracy is not None:
        accuracy = float(test_accuracy)
        if not 0.0 <= accuracy <= 1.0:
            raise WebExportError(f"test_accuracy is a fraction in [0, 1], got {test_accuracy!r}")
        test = {"accuracy": accuracy, "images": None if test_images is None else int(test_images)}
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "lenet_core_version": __version__,
        "name": str(model.name),
        "variant": variant,
        "input_shape": [1, 32, 32],
        "preprocessing": {"standardize": bool(standardize), "mean": float(MNIST_MEAN), "std": float(MNIST_STD)},
        "test": test,
        "description": str(description),
        "layers": out,
    }


def to_web_json(model, *, standardize: bool, test_accuracy: float | None = None, test_images: int | None = None,
                description: str = "") -> str:
    """The web export of ``model`` as JSON text (see the module docstring for the format).

    Parameters
    ----------
    model : Sequential
        A LeNet-5 from :func:`lenet_core.lenet5` (classic or modern, with or without
        dropout), trained or not. float64 models are exported as float32.
    standardize : bool
        Whether the model was trained on inputs standardized with the MNIST mean and std
        (``python -m lenet_core train`` does this by default) or on pixels in [0, 1]
        (the book's chapters). The page prepares a drawn digit accordingly; a wrong
        value gives a network that reads every digit badly, so there is no default.
    test_accuracy, test_images : optional
        The model's test accuracy (a fraction) and on how many images, shown in the page.
    description : str
        Free text shown in the page, e.g. how the model was trained.

    Raises
    ------
    WebExportError
        If the model is not a LeNet-5 or has non-finite parameters.
    """
    text = json.dumps(_manifest(model, standardize, test_accuracy, test_images, description), indent=1)
    # "<" can only occur inside strings (the description); as \u003c the text can sit inside an
    # HTML <script> element, where the book embeds it, without ever closing that element.
    return text.replace("<", "\\u003c") + "\n"


def export_model(model, path, *, standardize: bool, test_accuracy: float | None = None,
                 test_images: int | None = None, description: str = "") -> Path:
    """Write the web export of ``model`` to ``path`` (see :func:`to_web_json`); returns the path."""
    text = to_web_json(model, standardize=standardize, test_accuracy=test_accuracy, test_images=test_images,
                       description=description)
    return _write(Path(path), text)


def _write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: a crash mid-write leaves any earlier file whole."""
    if str(path.parent) and not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write the export: directory {path.parent} does not exist")
    with atomic_write(path) as fh:
        fh.write(text.encode("utf-8"))
    return path


def checkpoint_web_json(checkpoint) -> str:
    """The web export of a checkpoint (a path, or what :func:`lenet_core.load_checkpoint` returned).

    Whether inputs are standardized and the test accuracy are read from the checkpoint,
    as ``python -m lenet_core train`` records them (``extra["train_args"]["normalize"]``
    and ``extra["test"]``); a checkpoint without that record is taken to expect pixels
    in [0, 1], like the chapters' checkpoints.
    """
    ckpt = checkpoint if hasattr(checkpoint, "model") else load_checkpoint(checkpoint)
    extra = ckpt.extra or {}
    train_args = extra.get("train_args") or {}
    test = extra.get("test") or {}
    accuracy = test.get("accuracy")
    where = f" ({ckpt.path.name})" if getattr(ckpt, "path", None) else ""
    description = f"{ckpt.model.name}, {ckpt.epoch} epoch{'s' if ckpt.epoch != 1 else ''} of training{where}"
    if train_args:
        description += (f"; {train_args.get('optimizer')} lr {train_args.get('lr')}, batch "
                        f"{train_args.get('batch_size')}")
    return to_web_json(ckpt.model, standardize=bool(train_args.get("normalize", False)),
                       test_accuracy=accuracy if isinstance(accuracy, (int, float)) else None,
                       test_images=test.get("images") if isinstance(test.get("images"), int) else None,
                       description=description)


def export_checkpoint(checkpoint, path=None) -> Path:
    """Write the web export of a checkpoint file to ``path``; returns the path.

    The default ``path`` is the checkpoint's with the suffix ``.web.json``
    (``lenet5-classic.npz`` -> ``lenet5-classic.web.json``).
    """
    checkpoint = Path(checkpoint)
    out = Path(path) if path is not None else checkpoint.with_suffix(".web.json")
    if out.resolve() == checkpoint.resolve():
        raise WebExportError(f"the export would overwrite the checkpoint {checkpoint}; give another output path")
    return _write(out, checkpoint_web_json(checkpoint))


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------


def _fail(where: str, message: str):
    raise WebExportError(f"{where}: {message}")


def _decode(entry, shape, where: str) -> np.ndarray:
    if not isinstance(entry, dict) or not {"shape", "crc32", "data"} <= set(entry):
        _fail(where, "expected an object with shape, crc32 and data")
    if list(entry["shape"]) != list(shape):
        _fail(where, f"has shape {entry['shape']}, but the layer needs {list(shape)}")
    try:
        raw = base64.b64decode(entry["data"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        _fail(where, "the data is not valid base64 (the file is damaged)")
    if len(raw) != 4 * math.prod(shape):
        _fail(where, f"holds {len(raw)} bytes, expected {4 * math.prod(shape)} (the file is truncated or damaged)")
    if zlib.crc32(raw) != entry["crc32"]:
        _fail(where, "the checksum does not match the data (the file is damaged)")
    array = np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
    if not np.all(np.isfinite(array)):
        _fail(where, "holds numbers that are not finite (inf or NaN)")
    return array


def read_web_export(source) -> WebModel:
    """Read a web export (a path, or its JSON text) back into a model, checking everything.

    The checks are those of the page's file picker: the JSON is valid, the format and
    version are known, the layers are exactly a LeNet-5 of the stated variant, every
    array has its layer's shape, decodes, matches its checksum and holds finite numbers,
    and the preprocessing constants make sense. Any failure raises
    :class:`WebExportError` saying what is wrong.
    """
    if isinstance(source, (str, Path)) and not str(source).lstrip().startswith("{"):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"web export {path} does not exist")
        if path.stat().st_size > MAX_BYTES:
            _fail(str(path), f"is {path.stat().st_size:,} bytes; a LeNet-5 export is about 330 KB")
        raw = path.read_bytes()
        where = str(path)
        if raw[:2] == b"PK":
            _fail(where, "is a zip archive (a lenet_core checkpoint?), not a web export; export it first: "
                         "python -m lenet_core export CHECKPOINT OUT.web.json")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            _fail(where, "is not a text file (not UTF-8 JSON)")
    else:
        text, where = str(source), "web export"
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(where, f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                     "the file may be truncated")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        _fail(where, f"is not a lenet_core web export (no \"format\": \"{FORMAT_NAME}\")")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        _fail(where, f"has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        _fail(where, f"uses web export format version {version}; this lenet_core reads up to {FORMAT_VERSION}")
    variant = meta.get("variant")
    if variant not in LENET5_VARIANTS:
        _fail(where, f"variant must be one of {', '.join(LENET5_VARIANTS)}, got {variant!r}")
    prep = meta.get("preprocessing")
    if not isinstance(prep, dict) or not isinstance(prep.get("standardize"), bool):
        _fail(where, "preprocessing must say whether inputs are standardized (\"standardize\": true or false)")
    mean, std = prep.get("mean", MNIST_MEAN), prep.get("std", MNIST_STD)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (mean, std)) or not std > 0:
        _fail(where, f"preprocessing needs a finite mean and a positive std, got mean {mean!r}, std {std!r}")
    layers = meta.get("layers")
    reference = lenet5(variant, seed=0)
    if not isinstance(layers, list) or len(layers) != len(reference.layers):
        _fail(where, f"a {variant} LeNet-5 has {len(reference.layers)} layers, the file lists "
                     f"{len(layers) if isinstance(layers, list) else 'none'}")
    for i, (entry, (layer, expected)) in enumerate(zip(layers, _layers_and_configs(reference))):
        got = {k: v for k, v in entry.items() if k not in ("params", "stage")} if isinstance(entry, dict) else entry
        if got != expected:
            _fail(where, f"layer {i} is {got}, but a {variant} LeNet-5 has {expected} there")
        for key, param in layer.params.items():
            params = entry.get("params")
            if not isinstance(params, dict) or key not in params:
                _fail(where, f"layer {i} ({expected['type']}) has no parameter {key}")
            param[...] = _decode(params[key], param.shape, f"{where}, layer {i} {key}")
    test = meta.get("test") if isinstance(meta.get("test"), dict) else {}
    accuracy = test.get("accuracy")
    images = test.get("images")
    reference.name = str(meta.get("name", f"lenet5-{variant}"))
    return WebModel(model=reference.eval(), variant=variant, standardize=prep["standardize"], mean=float(mean),
                    std=float(std), test_accuracy=float(accuracy) if isinstance(accuracy, (int, float)) else None,
                    test_images=images if isinstance(images, int) else None, name=reference.name,
                    description=str(meta.get("description", "")))
