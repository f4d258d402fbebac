"""The fast engine's network: :class:`FastSequential`, and the conversions between engines.

:func:`to_fast` and :func:`to_plain` turn a network into its twin on the other engine.
The twin's layers share the original's ``params`` and ``grads`` dicts (the same arrays),
so an optimizer built on either model updates both, and a checkpoint of either is the
same file.
"""
from __future__ import annotations

import numpy as np

from ..layers import LAYER_TYPES, Layer
from ..network import Sequential
from .layers import FAST_TWINS, FastAvgPool2D, FastConv2D, FastMaxPool2D
from .threads import one_blas_thread

__all__ = ["FastSequential", "to_fast", "to_plain", "engine_of", "ENGINES"]

ENGINES = ("fast", "plain")
_PLAIN_OF = {fast: plain for plain, fast in FAST_TWINS.items()}


class FastSequential(Sequential):
    """:class:`~lenet_core.network.Sequential` with BLAS on one thread during its passes (see
    :mod:`lenet_core.fast.threads`), and an ``infer`` (no backward follows) that fuses a
    :class:`FastConv2D`, its activation and the pooling after it: they run as
    ``conv.infer_then(x, activation, pool)``, which computes the activated, pooled maps a
    few rows at a time while they are in the CPU's cache and writes only the pooled maps
    to memory. Otherwise ``forward`` and ``backward`` are the plain loops over the fast layers.
    """

    def forward(self, x):
        with one_blas_thread():
            return super().forward(x)

    __call__ = forward

    def backward(self, dout, input_grad: bool = True):
        with one_blas_thread():
            return super().backward(dout, input_grad=input_grad)

    def infer(self, x):
        layers, i = self.layers, 0
        try:
            with one_blas_thread():
                while i < len(layers):
                    if (type(layers[i]) is FastConv2D and i + 2 < len(layers)
                            and type(layers[i + 2]) in (FastAvgPool2D, FastMaxPool2D)):
                        x = layers[i].infer_then(x, layers[i + 1], layers[i + 2])
                        i += 3
                    else:
                        x = layers[i].forward(x)
                        i += 1
            return x
        finally:
            for layer in layers:
                layer.cache = None

    @classmethod
    def from_config(cls, config, dtype=np.float32, name="sequential", input_shape=None):
        return to_fast(Sequential.from_config(config, dtype, name, input_shape))


def _twin(layer: Layer, cls) -> Layer:
    """``layer`` as an instance of ``cls`` sharing its params and grads (the same dicts)."""
    if type(layer) is cls:
        return layer
    twin = cls.__new__(cls)
    twin.__dict__.update(layer.__dict__)
    twin.cache = None
    if cls is FastConv2D:
        twin._cols = None
    else:
        twin.__dict__.pop("_cols", None)
    return twin


def to_fast(model: Sequential) -> FastSequential:
    """``model`` on the fast engine: every plain layer replaced by its fast twin (same
    parameter and gradient arrays), other layers shared as they are. A model that already
    is a :class:`FastSequential` of fast layers is returned unchanged."""
    layers = [_twin(layer, FAST_TWINS.get(type(layer), type(layer))) for layer in model.layers]
    if type(model) is FastSequential and all(a is b for a, b in zip(layers, model.layers)):
        return model
    twin = FastSequential(layers, name=model.name, input_shape=model.input_shape)
    return twin


def to_plain(model: Sequential) -> Sequential:
    """``model`` on the plain layers of :mod:`lenet_core.layers` (same parameter and gradient
    arrays): what the chapters print, step by step, without the engine's tricks."""
    layers = [_twin(layer, _PLAIN_OF.get(type(layer), type(layer))) for layer in model.layers]
    if type(model) is Sequential and all(a is b for a, b in zip(layers, model.layers)):
        return model
    return Sequential(layers, name=model.name, input_shape=model.input_shape)


def engine_of(model) -> str | None:
    """``"fast"`` or ``"plain"`` if every layer of ``model`` is one of that engine's classes
    (layers that exist in one form only, such as Linear, count for both), else None (a
    layer of the reader's own, e.g. chapter 10's loop versions)."""
    plain = set(LAYER_TYPES.values())
    kinds = set()
    for layer in model.layers:
        cls = type(layer)
        if cls in _PLAIN_OF:
            kinds.add("fast")
        elif cls in FAST_TWINS:
            kinds.add("plain")
        elif cls not in plain:
            return None
    if len(kinds) > 1:
        return None
    if kinds == {"plain"} and isinstance(model, FastSequential):
        return None
    return kinds.pop() if kinds else ("fast" if isinstance(model, FastSequential) else "plain")
