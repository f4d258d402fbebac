"""Learning-rate schedules: ``lr = schedule(epoch)``.

A schedule is any callable taking the 0-based epoch index and returning the
learning rate for that whole epoch. :func:`~lenet_core.training.fit` calls it at
the start of every epoch and sets ``optimizer.lr``, so the rate is a pure
function of the epoch number and a resumed run follows the same schedule.

The formulas are those of PyTorch's epoch-wise schedulers, so the same
settings give the same rates:

=======================  ==================================================  ====================
schedule                 ``lr(epoch)``                                        PyTorch
=======================  ==================================================  ====================
``Constant(lr)``         ``lr``                                               (no scheduler)
``StepDecay``            ``lr * gamma ** (epoch // step_size)``               ``StepLR``
``ExponentialDecay``     ``lr * gamma ** epoch``                              ``ExponentialLR``
``CosineAnnealing``      ``min_lr + (lr - min_lr) * (1 + cos(pi * e / T)) / 2``  ``CosineAnnealingLR``
=======================  ==================================================  ====================

(for the cosine schedule, ``e = min(epoch, T)`` with ``T = total_epochs``: the rate
stays at ``min_lr`` after the last scheduled epoch.)
"""
from __future__ import annotations

import math

__all__ = ["Schedule", "Constant", "StepDecay", "ExponentialDecay", "CosineAnnealing", "make_schedule",
           "SCHEDULES"]


def _positive(name, value):
    value = float(value)
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


class Schedule:
    """Base class: ``schedule(epoch) -> lr`` for ``epoch = 0, 1, 2, ...``."""

    def __init__(self, lr: float):
        self.lr = _positive("lr", lr)

    def __call__(self, epoch: int) -> float:
        epoch = int(epoch)
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        return float(self._rate(epoch))

    def _rate(self, epoch: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:
        """The constructor arguments (JSON-friendly), e.g. for a checkpoint's ``extra``."""
        return {"lr": self.lr}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """The same rate every epoch (no warm-up)."""

    def _rate(self, epoch):
        return self.lr


class StepDecay(Schedule):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs: ``lr * gamma ** (epoch // step_size)``."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1):
        super().__init__(lr)
        if int(step_size) != step_size or step_size < 1:
            raise ValueError(f"step_size must be an integer >= 1, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = _positive("gamma", gamma)

    def _rate(self, epoch):
        return self.lr * self.gamma ** (epoch // self.step_size)

    def get_config(self):
        return {"lr": self.lr, "step_size": self.step_size, "gamma": self.gamma}


class ExponentialDecay(Schedule):
    """Multiply the rate by ``gamma`` every epoch: ``lr * gamma ** epoch``."""

    def __init__(self, lr: float, gamma: float):
        super().__init__(lr)
        self.gamma = _positive("gamma", gamma)

    def _rate(self, epoch):
        return self.lr * self.gamma ** epoch

    def get_config(self):
        return {"lr": self.lr, "gamma": self.gamma}


class CosineAnnealing(Schedule):
    """Half a cosine from ``lr`` at epoch 0 down to ``min_lr`` at epoch ``total_epochs``."""

    def __init__(self, lr: float, total_epochs: int, min_lr: float = 0.0):
        super().__init__(lr)
        if int(total_epochs) != total_epochs or total_epochs < 1:
            raise ValueError(f"total_epochs must be an integer >= 1, got {total_epochs!r}")
        if not 0 <= min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr={self.lr}], got {min_lr!r}")
        self.total_epochs, self.min_lr = int(total_epochs), float(min_lr)

    def _rate(self, epoch):
        e = min(epoch, self.total_epochs)
        return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * e / self.total_epochs)) / 2

    def get_config(self):
        return {"lr": self.lr, "total_epochs": self.total_epochs, "min_lr": self.min_lr}


SCHEDULES = {"constant": Constant, "step": StepDecay, "exponential": ExponentialDecay, "cosine": CosineAnnealing}


def make_schedule(name: str, lr: float, epochs: int | None = None, **kwargs) -> Schedule:
    """Build a schedule by name with sensible defaults (used by the command line).

    ``"constant"``; ``"step"`` (``step_size`` default: a third of ``epochs``, ``gamma`` 0.1);
    ``"exponential"`` (``gamma`` default 0.9); ``"cosine"`` (over ``epochs`` epochs, ``min_lr`` 0).
    """
    name = name.lower()
    if name == "constant":
        return Constant(lr)
    if name == "step":
        step_size = kwargs.pop("step_size", None) or max(1, (epochs or 3) // 3)
        return StepDecay(lr, step_size=step_size, **kwargs)
    if name == "exponential":
        return ExponentialDecay(lr, gamma=kwargs.pop("gamma", 0.9), **kwargs)
    if name == "cosine":
        if epochs is None and "total_epochs" not in kwargs:
            raise ValueError("the cosine schedule needs the number of epochs")
        return CosineAnnealing(lr, total_epochs=kwargs.pop("total_epochs", epochs), **kwargs)
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
