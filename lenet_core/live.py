"""The page *Draw a digit*: LeNet-5 running in the reader's browser, as a Jupyter widget.

:class:`LiveLeNet` is an `anywidget <https://anywidget.dev>`_ whose front end is
three small files in ``lenet_core/web``: ``digit.js`` (the preprocessing of
:mod:`lenet_core.digits`), ``lenet.js`` (the layers, forward and backward, in float32)
and ``live.js`` (the drawing pad, the controls and the plots). Everything the reader
sees is computed in the browser from the weights the widget carries (as web exports,
:mod:`lenet_core.webexport`), so the widget works the same

* in Jupyter with a kernel, where it can show the notebook's current model and sends
  the last drawn input back (:attr:`LiveLeNet.input`, :attr:`LiveLeNet.prediction`);
* on the book's static pages, with no kernel: the build saves the widget's state in the
  page, and the ipywidgets embed manager renders it with the vendored ``anywidget``
  module (see ``book/lenet_book.py``).

The JavaScript travels in the widget's state, so a page built from a cached execution of
the notebook keeps the JavaScript of that execution: after editing ``lenet_core/web``,
build with a fresh cache (CI always does) or re-execute the notebook.

Example::

    import lenet_core as lc
    from lenet_core.live import LiveLeNet

    model = lc.lenet5("classic", seed=0)          # ... trained on pixels in [0, 1]
    images, labels = lc.load_mnist("test")
    LiveLeNet({"mine": model}, standardize=False, samples=(images[:10], labels[:10]))
"""
from __future__ import annotations

import base64
import re
from pathlib import Path

import anywidget
import numpy as np
import traitlets

from .webexport import WebModel, checkpoint_web_json, read_web_export, to_web_json

__all__ = ["LiveLeNet", "esm_source", "css_source"]

_WEB = Path(__file__).with_name("web")
#: The front end, in the order the files are joined into one module.
ESM_FILES = ("digit.js", "lenet.js", "live.js")


def esm_source() -> str:
    """The widget's JavaScript module: ``digit.js``, ``lenet.js`` and ``live.js`` joined.

    The build embeds it in an HTML ``<script>`` element (the page's widget state), so it
    must never contain ``</script`` or ``<!--``; that is checked here.
    """
    text = "\n".join((_WEB / name).read_text(encoding="utf-8") for name in ESM_FILES)
    if re.search(r"</script|<!--", text, flags=re.IGNORECASE):
        raise ValueError("the widget's JavaScript contains '</script' or '<!--', which would end the "
                         "<script> element the book embeds it in")
    return text


def css_source() -> str:
    return (_WEB / "live.css").read_text(encoding="utf-8")


def _as_web_json(value, standardize) -> str:
    """A network given in any of the accepted forms -> the JSON text of its web export."""
    if isinstance(value, WebModel):
        return to_web_json(value.model, standardize=value.standardize, test_accuracy=value.test_accuracy,
                           test_images=value.test_images, description=value.description)
    if hasattr(value, "params_and_grads"):                     # a Sequential
        if standardize is None:
            raise ValueError("say how the model's inputs are prepared: standardize=True (inputs standardized "
                             "with the MNIST mean and std, as 'python -m lenet_core train' does) or "
                             "standardize=False (pixels in [0, 1], as in the book's chapters)")
        return to_web_json(value, standardize=standardize)
    if hasattr(value, "model") and hasattr(value, "extra"):      # a loaded Checkpoint
        return checkpoint_web_json(value)
    if isinstance(value, (str, Path)):
        text = str(value)
        if text.lstrip().startswith("{"):                        # JSON text of an export
            read_web_export(text)
            return text
        path = Path(value)
        if path.suffix == ".npz":
            return checkpoint_web_json(path)
        text = path.read_text(encoding="utf-8")
        read_web_export(text)
        return text
    raise TypeError(f"expected a lenet_core Sequential, a checkpoint, a web export or its path, "
                    f"got {type(value).__name__}")


def _samples(samples) -> dict:
    if samples is None:
        return {}
    images, labels, *rest = samples
    indices = list(rest[0]) if rest else None
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"samples: expected MNIST-style images (N, 28, 28), got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"samples: expected uint8 gray levels 0..255, got dtype {images.dtype}")
    labels = [int(v) for v in labels]
    if len(labels) != len(images):
        raise ValueError(f"samples: {len(images)} images but {len(labels)} labels")
    if indices is not None and len(indices) != len(images):
        raise ValueError(f"samples: {len(images)} images but {len(indices)} indices")
    names = [f"a {d} (test image {indices[k]})" if indices is not None else f"a {d} (sample {k + 1})"
             for k, d in enumerate(labels)]
    return {"images": base64.b64encode(np.ascontiguousarray(images).tobytes()).decode("ascii"),
            "labels": labels, "names": names}


class LiveLeNet(anywidget.AnyWidget):
    """A drawing pad and a LeNet-5 that runs in the browser, with every layer's output, the
    saliency map and one step of SGD on the drawn digit.

    Parameters
    ----------
    models : dict
        ``{key: network}``, shown in this order (the key names it in the page; ``"classic"``
        and ``"modern"`` get a description). A network is a LeNet-5 :class:`Sequential`
        (then ``standardize`` says how its inputs are prepared), a checkpoint (loaded, or
        the path of its ``.npz``), a :class:`~lenet_core.webexport.WebModel`, or a web
        export (its path or JSON text).
    standardize : bool, optional
        For models given as a ``Sequential``: whether they were trained on inputs
        standardized with the MNIST mean and std (``True``) or on pixels in [0, 1].
    samples : (images, labels) or (images, labels, indices), optional
        A few MNIST digits to start from: uint8 ``(N, 28, 28)``, their labels and, to name
        them in the page, their indices in the test set.
    variant : str, optional
        The key of the network shown first (default: the first).
    """

    _esm = esm_source()
    _css = css_source()
    models = traitlets.Dict().tag(sync=True)        # key -> JSON text of a web export
    samples = traitlets.Dict().tag(sync=True)
    variant = traitlets.Unicode("").tag(sync=True)
    digit = traitlets.List([]).tag(sync=True)       # set by the page: the last 32x32 input
    prediction = traitlets.Int(-1).tag(sync=True)   # set by the page

    def __init__(self, models, *, standardize=None, samples=None, variant=None, **kwargs):
        texts = {str(k): _as_web_json(v, standardize) for k, v in dict(models).items()}
        if not texts:
            raise ValueError("give at least one network")
        super().__init__(models=texts, samples=_samples(samples), variant=variant or next(iter(texts)), **kwargs)

    def set_model(self, key: str, network, *, standardize=None, show: bool = True):
        """Add or replace the network ``key`` (e.g. the notebook's current model) and, with
        ``show``, switch the page to it."""
        self.models = {**self.models, str(key): _as_web_json(network, standardize)}
        if show:
            self.variant = str(key)

    @property
    def input(self) -> np.ndarray | None:
        """The last input the page computed from the drawing, float32 ``(1, 1, 32, 32)``
        (prepared for the network shown: standardized if it expects that); None before the
        first stroke. Only a live kernel receives it."""
        if len(self.digit) != 32 * 32:
            return None
        return np.asarray(self.digit, dtype=np.float32).reshape(1, 1, 32, 32)
