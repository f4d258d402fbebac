"""Bridges to PyTorch: build the twin ``torch.nn.Sequential`` and move weights both ways.

PyTorch is optional: importing this module works without it, and the functions
that need it raise an ImportError that says how to install it. ``TORCH_ADVICE`` is
that advice, in the one wording the README, the setup page, ``pyproject.toml``, the
tests and chapter 11 all use (``tests/test_package_structure.py`` checks it).
Parameter names follow ``torch.nn.Sequential``: ``"<index>.weight"`` and
``"<index>.bias"`` for our ``"<index>.W"`` and ``"<index>.b"``.
"""
from __future__ import annotations

import numpy as np

from .layers import layer_type

__all__ = ["require_torch", "torch_available", "to_torch_module", "to_torch_state_dict",
           "load_torch_state_dict", "TORCH_INSTALL", "TORCH_ADVICE"]

#: The command that installs PyTorch's CPU build (a few hundred MB, not the multi-GB CUDA one).
TORCH_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
#: What to tell a reader who lacks it.
TORCH_ADVICE = f"PyTorch is optional and not installed; to run this, install its CPU build: {TORCH_INSTALL}"

_NAMES = {"W": "weight", "b": "bias"}
_BACK = {v: k for k, v in _NAMES.items()}


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def require_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(TORCH_ADVICE) from exc
    return torch


def to_torch_module(model, dtype=None):
    """A ``torch.nn.Sequential`` with the same layers and a copy of the same weights."""
    torch = require_torch()
    nn = torch.nn
    mods = []
    for layer in model.layers:
        kind, cfg = layer_type(layer), layer.get_config()
        if kind == "Conv2D":
            mods.append(nn.Conv2d(cfg["in_channels"], cfg["out_channels"], cfg["kernel_size"],
                                  stride=cfg["stride"], padding=cfg["padding"]))
        elif kind == "Linear":
            mods.append(nn.Linear(cfg["in_features"], cfg["out_features"]))
        elif kind == "AvgPool2D":
            mods.append(nn.AvgPool2d(cfg["kernel_size"], stride=cfg["stride"]))
        elif kind == "MaxPool2D":
            mods.append(nn.MaxPool2d(cfg["kernel_size"], stride=cfg["stride"]))
        elif kind == "Flatten":
            mods.append(nn.Flatten())
        elif kind in ("Tanh", "ReLU", "Sigmoid"):
            mods.append(getattr(nn, kind)())
        elif kind == "Dropout":
            mods.append(nn.Dropout(cfg["p"]))
        else:  # pragma: no cover - every layer type is covered above
            raise ValueError(f"no PyTorch twin for layer type {kind}")
    module = nn.Sequential(*mods)
    torch_dtype = dtype or {np.dtype(np.float64): torch.float64}.get(np.dtype(model.dtype), torch.float32)
    module = module.to(torch_dtype)
    module.load_state_dict(to_torch_state_dict(model, torch_dtype))
    return module


def to_torch_state_dict(model, dtype=None) -> dict:
    """``{"0.weight": tensor, "0.bias": tensor, ...}``: a copy of the model's parameters for PyTorch."""
    torch = require_torch()
    out = {}
    for name, p, _ in model.params_and_grads():
        idx, key = name.split(".")
        t = torch.tensor(np.array(p))
        out[f"{idx}.{_NAMES[key]}"] = t.to(dtype) if dtype is not None else t
    return out


def load_torch_state_dict(model, state_dict) -> object:
    """Copy weights from a PyTorch ``state_dict`` (tensors or arrays) into ``model``.

    Checks that the names and shapes are exactly the model's; a state dict from
    another architecture raises a ValueError listing the differences, and the
    model is left unchanged.
    """
    ours = {}
    for key, value in state_dict.items():
        idx, _, kind = key.rpartition(".")
        if kind not in _BACK:
            raise ValueError(f"unexpected entry {key!r} in the state dict: only '<index>.weight' and "
                             "'<index>.bias' entries of an nn.Sequential are understood")
        arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        ours[f"{idx}.{_BACK[kind]}"] = arr
    model.load_state_dict(ours)
    return model
