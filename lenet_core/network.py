"""A network as a flat list of layers: :class:`Sequential`, and :func:`eval_mode` to evaluate one."""
from __future__ import annotations

import numpy as np

from .layers import Layer, build_layer, layer_type

__all__ = ["Sequential", "eval_mode"]


class Sequential:
    """A flat list of layers applied in order.

    ``forward(x)`` runs every layer's forward; ``backward(dout)`` runs their backward
    passes in reverse and returns ``dL/dx``. Parameters are named ``"<index>.<key>"``
    (``"0.W"``, ``"0.b"``, ...), following the position of the layer in ``layers``, as
    ``torch.nn.Sequential`` names its ``state_dict`` entries.
    """

    def __init__(self, layers, name: str = "sequential", input_shape=None):
        self.layers: list[Layer] = list(layers)
        self.name = name
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} is {type(layer).__name__}, not a lenet_core Layer")

    # -- running ----------------------------------------------------------
    def forward(self, x):
        """Every layer's forward in turn: ``out = layers[-1](... layers[1](layers[0](x)))``."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def infer(self, x):
        """``forward(x)`` when no backward pass will follow (prediction, evaluation): the same
        numbers, and then every layer's cache is dropped, so that the memory is freed and a
        ``backward`` after ``infer`` raises an error instead of using stale values."""
        try:
            return self.forward(x)
        finally:
            for layer in self.layers:
                layer.cache = None

    def output_shape(self, input_shape) -> tuple:
        """The shape of ``forward``'s result for an input of ``input_shape`` (batch axis included)."""
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def forward_trace(self, x) -> list:
        """Run forward and return ``[x, out_0, out_1, ...]``: the input and every layer's output.

        Used to look at feature maps; the caches are filled exactly as by ``forward``.
        """
        outs = [x]
        for layer in self.layers:
            outs.append(layer.forward(outs[-1]))
        return outs

    def backward(self, dout, input_grad: bool = True):
        """Backward through every layer in reverse; returns ``dL/dx`` for the model's input.

        With ``input_grad=False`` (training: nobody needs the gradient of the images) the
        first layer with parameters only computes its parameter gradients, the layers
        before it are skipped, and None is returned -- as PyTorch skips the input's
        gradient when the input does not require one. In LeNet-5 this saves C1's ``dx``,
        a matrix product and a col2im over the largest feature maps.
        """
        first = next((i for i, layer in enumerate(self.layers) if layer.params), None)
        for i in range(len(self.layers) - 1, -1, -1):
            if i == first and not input_grad:
                self.layers[i].backward(dout, input_grad=False)
                return None
            dout = self.layers[i].backward(dout)
        return dout

    def train(self):
        for layer in self.layers:
            layer.train()
        return self

    def eval(self):
        for layer in self.layers:
            layer.eval()
        return self

    @property
    def training(self) -> bool:
        return all(layer.training for layer in self.layers)

    # -- containers -------------------------------------------------------
    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    @property
    def dtype(self):
        for layer in self.layers:
            for p in layer.params.values():
                return p.dtype
        return np.dtype(np.float32)

    def params_and_grads(self):
        """Yield ``(name, param, grad)`` for every parameter, in layer order."""
        for i, layer in enumerate(self.layers):
            for key, param in layer.params.items():
                yield f"{i}.{key}", param, layer.grads[key]

    def named_params(self) -> dict:
        """``{name: param}``: the live parameter arrays (not copies)."""
        return {name: p for name, p, _ in self.params_and_grads()}

    def named_grads(self) -> dict:
        return {name: g for name, _, g in self.params_and_grads()}

    def num_params(self) -> int:
        return sum(layer.num_params() for layer in self.layers)

    def zero_grads(self):
        for layer in self.layers:
            for key, g in layer.grads.items():
                layer.grads[key] = np.zeros_like(layer.params[key])

    # -- saving and restoring ---------------------------------------------
    def get_config(self) -> list[dict]:
        """The architecture: ``[{"type": "Conv2D", "in_channels": 1, ...}, ...]``."""
        return [dict(type=layer_type(layer), **layer.get_config()) for layer in self.layers]

    @classmethod
    def from_config(cls, config, dtype=np.float32, name="sequential", input_shape=None):
        return cls([build_layer(c, dtype) for c in config], name=name, input_shape=input_shape)

    def state_dict(self) -> dict:
        """Copies of all parameters, ``{name: array}``."""
        return {name: p.copy() for name, p, _ in self.params_and_grads()}

    def load_state_dict(self, state: dict):
        """Copy parameters in from ``state`` after checking names and shapes; nothing changes on error."""
        mine = self.named_params()
        missing = sorted(set(mine) - set(state))
        unexpected = sorted(set(state) - set(mine))
        wrong = [f"{k}: expected {mine[k].shape}, got {tuple(np.shape(state[k]))}"
                 for k in mine if k in state and tuple(np.shape(state[k])) != mine[k].shape]
        if missing or unexpected or wrong:
            lines = ["this state dict does not fit the model's architecture "
                     f"({self.name}, {len(mine)} parameter arrays):"]
            if missing:
                lines.append(f"  missing: {', '.join(missing)}")
            if unexpected:
                lines.append(f"  unexpected: {', '.join(unexpected)}")
            if wrong:
                lines.append("  wrong shapes: " + "; ".join(wrong))
            lines.append("Build the model with the same architecture (e.g. the same lenet5 variant) it was saved from.")
            raise ValueError("\n".join(lines))
        for k, p in mine.items():
            p[...] = np.asarray(state[k], dtype=p.dtype)
        return self

    # -- description ------------------------------------------------------
    def summary(self, input_shape=None, print_fn=print) -> str:
        """Print (and return) a table: layer, output shape, parameters, multiply-adds per image."""
        shape = tuple(input_shape or self.input_shape or ())
        if not shape:
            raise ValueError("summary needs an input_shape, e.g. (1, 1, 32, 32)")
        if len(shape) and shape[0] != 1:
            shape = (1,) + tuple(shape[1:])
        rows = [("layer", "output shape", "params", "mult-adds")]
        total_macs = 0
        rows.append(("input", str(shape[1:]), "", ""))
        for i, layer in enumerate(self.layers):
            macs = layer.macs(shape)
            shape = layer.output_shape(shape)
            total_macs += macs
            rows.append((f"{i}: {layer.describe()}", str(tuple(shape[1:])), f"{layer.num_params():,}", f"{macs:,}"))
        widths = [max(len(r[j]) for r in rows) for j in range(4)]
        fmt = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}"
        rule = "-" * (sum(widths) + 6)
        lines = [fmt(rows[0]), rule] + [fmt(r) for r in rows[1:]] + [rule]
        lines.append(f"Total parameters: {self.num_params():,}")
        lines.append(f"Multiply-adds per image (forward): {total_macs:,}")
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self):
        inner = "\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential[{self.name}](\n{inner}\n)"


class eval_mode:
    """``with eval_mode(model):`` puts every layer in eval mode (dropout off) and restores each
    layer's previous mode afterwards, even if the block raises."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.modes = [layer.training for layer in self.model.layers]
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for layer, mode in zip(self.model.layers, self.modes):
            layer.train() if mode else layer.eval()
