"""Optimizers: update a model's parameters in place from its gradients.

An optimizer is built from anything with ``params_and_grads()`` (a
:class:`~lenet_core.network.Sequential`), and each ``step()`` reads the gradients
the last ``backward`` left in every layer's ``grads`` and changes ``params`` in
place. The update rules follow PyTorch's ``torch.optim`` exactly, so the same
start gives the same trajectory (the PyTorch parity tests check 20 steps).

Learning rates may change between steps (``opt.lr = ...``); see
:mod:`lenet_core.schedules` for schedules. ``state_dict()`` /
``load_state_dict()`` save and restore the internal state (momentum buffers,
Adam moments, step count) for checkpoints.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Optimizer", "SGD", "Adam", "make_optimizer"]


class Optimizer:
    """Base class: holds the model, the learning rate, the step count and per-parameter state."""

    def __init__(self, model, lr: float):
        if not hasattr(model, "params_and_grads"):
            raise TypeError("an optimizer needs a model with params_and_grads(), e.g. a lenet_core Sequential")
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr!r}")
        self.model = model
        self.lr = float(lr)
        self.steps = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}

    def step(self):
        for name, p, g in self.model.params_and_grads():
            if g.shape != p.shape:
                raise ValueError(f"gradient of {name} has shape {g.shape}, parameter {p.shape}")
            self._update(name, p, g.astype(p.dtype, copy=False))
        self.steps += 1

    def _update(self, name, p, g):  # pragma: no cover - abstract
        raise NotImplementedError

    def hyperparameters(self) -> dict:
        return {"lr": self.lr}

    def state_dict(self) -> dict:
        """``{"type", "steps", "hyper": {...}, "state": {param name: {buffer: array}}}`` (copies)."""
        return {"type": type(self).__name__, "steps": self.steps, "hyper": self.hyperparameters(),
                "state": {n: {k: v.copy() for k, v in s.items()} for n, s in self.state.items()}}

    def load_state_dict(self, sd: dict):
        if sd.get("type") != type(self).__name__:
            raise ValueError(f"optimizer state is for {sd.get('type')!r}, not {type(self).__name__}; "
                             "resume with the optimizer the checkpoint was trained with")
        names = {n: p for n, p, _ in self.model.params_and_grads()}
        for n, bufs in sd["state"].items():
            if n not in names:
                raise ValueError(f"optimizer state names parameter {n!r}, which the model does not have")
            for k, v in bufs.items():
                if v.shape != names[n].shape:
                    raise ValueError(f"optimizer buffer {n}/{k} has shape {v.shape}, parameter {names[n].shape}")
        self.steps = int(sd["steps"])
        for k, v in sd.get("hyper", {}).items():
            setattr(self, k, v)
        self.state = {n: {k: np.array(v, dtype=names[n].dtype) for k, v in bufs.items()}
                      for n, bufs in sd["state"].items()}
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional weight decay, momentum and Nesterov momentum.

    With ``g = grad + weight_decay * p``::

        plain:     p <- p - lr * g
        momentum:  v <- momentum * v + g          (v starts at 0, so the first v is g)
                   p <- p - lr * v
        Nesterov:  p <- p - lr * (g + momentum * v)

    This is PyTorch's ``torch.optim.SGD`` with ``dampening=0``.
    """

    def __init__(self, model, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(model, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError("momentum and weight_decay must be >= 0")
        if nesterov and momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)

    def hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}

    def _update(self, name, p, g):
        if self.weight_decay:
            g = g + p.dtype.type(self.weight_decay) * p
        if self.momentum:
            state = self.state.get(name)
            if state is None:
                v = self.state.setdefault(name, {})["velocity"] = g.copy()
            else:
                v = state["velocity"]
                v *= p.dtype.type(self.momentum)
                v += g
            g = g + p.dtype.type(self.momentum) * v if self.nesterov else v
        p -= p.dtype.type(self.lr) * g


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), with optional L2 weight decay added to the gradient.

    With ``g = grad + weight_decay * p`` and step count ``t``::

        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    which is PyTorch's ``torch.optim.Adam`` update, term for term.
    """

    def __init__(self, model, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(model, lr)
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas!r}")
        self.betas, self.eps, self.weight_decay = (float(b1), float(b2)), float(eps), float(weight_decay)

    def hyperparameters(self):
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def step(self):
        self._t = self.steps + 1
        super().step()

    def _update(self, name, p, g):
        b1, b2 = self.betas
        if self.weight_decay:
            g = g + p.dtype.type(self.weight_decay) * p
        state = self.state.get(name)
        if state is None:
            state = self.state[name] = {"m": np.zeros_like(p), "v": np.zeros_like(p)}
        m, v = state["m"], state["v"]
        m *= p.dtype.type(b1)
        m += p.dtype.type(1 - b1) * g
        v *= p.dtype.type(b2)
        v += p.dtype.type(1 - b2) * (g * g)
        t = self._t
        bias1, bias2 = 1 - b1 ** t, 1 - b2 ** t
        denom = np.sqrt(v) / p.dtype.type(np.sqrt(bias2))
        denom += p.dtype.type(self.eps)
        p -= p.dtype.type(self.lr / bias1) * (m / denom)


def make_optimizer(name: str, model, lr: float, **kwargs) -> Optimizer:
    """Build an optimizer by name: ``"sgd"``, ``"momentum"`` (SGD, momentum 0.9), ``"nesterov"`` or ``"adam"``."""
    name = name.lower()
    if name == "sgd":
        return SGD(model, lr, **kwargs)
    if name == "momentum":
        return SGD(model, lr, momentum=kwargs.pop("momentum", 0.9), **kwargs)
    if name == "nesterov":
        return SGD(model, lr, momentum=kwargs.pop("momentum", 0.9), nesterov=True, **kwargs)
    if name == "adam":
        return Adam(model, lr, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd, momentum, nesterov or adam")
