"""Plots used across the book: digits, pixel values, kernels, feature maps, curves, confusion matrices.

Every function draws with matplotlib (inline backend in notebooks), returns the
``Figure`` (or draws into a given ``ax``), gives every plot a title and axis
labels, and never calls ``plt.show()`` itself.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["show_digits", "pixel_heatmap", "show_kernels", "show_feature_maps", "plot_history",
           "plot_confusion_matrix", "plot_relative_errors", "feature_map_mosaic", "data_flow"]


def _image(a):
    """(H, W), (1, H, W) -> (H, W)."""
    a = np.asarray(a)
    return a[0] if a.ndim == 3 and a.shape[0] == 1 else a


def show_digits(images, labels=None, predictions=None, ncols=10, title="MNIST digits", size=1.0, cmap="gray_r"):
    """A grid of digit images with their labels (and predictions, red when wrong)."""
    images = np.asarray(images)
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.15), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n:
            continue
        ax.imshow(_image(images[k]), cmap=cmap)
        text, color = "", "black"
        if labels is not None:
            text = f"{int(labels[k])}"
        if predictions is not None:
            text = (f"{int(labels[k])}→" if labels is not None else "") + f"{int(predictions[k])}"
            if labels is not None and int(predictions[k]) != int(labels[k]):
                color = "crimson"
        if text:
            ax.set_title(text, fontsize=9, color=color, pad=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def pixel_heatmap(image, ax=None, title="Pixel intensities", annotate=True, fontsize=5, cmap="Greys"):
    """One image as a heat map, each pixel's value written in its cell."""
    img = _image(image)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 7))
    im = ax.imshow(img, cmap=cmap)
    if annotate:
        threshold = (img.max() + img.min()) / 2
        fmt = "{:d}" if np.issubdtype(img.dtype, np.integer) else "{:.1f}"
        for (i, j), v in np.ndenumerate(img):
            ax.text(j, i, fmt.format(v.item()), ha="center", va="center", fontsize=fontsize,
                    color="white" if v > threshold else "black")
    ax.set_title(title)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax.figure


def show_kernels(W, title="Convolution kernels", ncols=None, cmap="RdBu_r", size=1.0):
    """Kernels of a conv weight (F, C, K, K): one row per output channel, one column per input channel.

    Colors are symmetric around zero (red positive, blue negative) with one scale for all.
    """
    W = np.asarray(W)
    f, c = W.shape[:2]
    ncols = ncols or c
    vmax = np.abs(W).max() or 1.0
    fig, axes = plt.subplots(f, c, figsize=(c * size + 0.6, f * size), squeeze=False)
    for i in range(f):
        for j in range(c):
            ax = axes[i, j]
            im = ax.imshow(W[i, j], cmap=cmap, vmin=-vmax, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"out {i}", fontsize=8)
            if i == 0 and c > 1:
                ax.set_title(f"in {j}", fontsize=8)
    fig.suptitle(title)
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02)
    return fig


def show_feature_maps(maps, title="Feature maps", ncols=8, cmap="viridis", size=1.1):
    """The channels of one feature map (C, H, W) side by side, each with its own color scale."""
    maps = np.asarray(maps)
    if maps.ndim == 4:
        maps = maps[0]
    c = maps.shape[0]
    ncols = min(ncols, c)
    nrows = int(np.ceil(c / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.1), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < c:
            ax.imshow(maps[k], cmap=cmap)
            ax.set_title(f"ch {k}", fontsize=7, pad=1)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history, title="Training curves", baseline=None):
    """Loss and accuracy per epoch, train and validation, side by side.

    ``history`` is a dict (or :class:`~lenet_core.history.History`) with lists under
    ``"train_loss"``, ``"train_acc"`` and optionally ``"val_loss"``, ``"val_acc"``.
    ``baseline`` may be ``{"label": accuracy}`` horizontal reference lines for the accuracy plot.
    """
    h = dict(history)
    epochs = np.arange(1, len(h["train_loss"]) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(epochs, h["train_loss"], "o-", label="train")
    if h.get("val_loss"):
        ax1.plot(epochs, h["val_loss"], "s--", label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy loss")
    ax1.set_title("Loss")
    ax1.legend()
    ax2.plot(epochs, 100 * np.asarray(h["train_acc"]), "o-", label="train")
    if h.get("val_acc"):
        ax2.plot(epochs, 100 * np.asarray(h["val_acc"]), "s--", label="validation")
    for label, acc in (baseline or {}).items():
        ax2.axhline(100 * acc, color="gray", lw=1, ls=":")
        ax2.annotate(label, (epochs[0], 100 * acc), fontsize=8, color="gray", va="bottom")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.set_title("Accuracy")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(cm, ax=None, title="Confusion matrix", class_names=None):
    """A confusion matrix (rows: true class, columns: predicted) with counts in each cell."""
    cm = np.asarray(cm)
    k = cm.shape[0]
    names = class_names or [str(i) for i in range(k)]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5.4))
    shown = np.log1p(cm)  # log scale so the off-diagonal mistakes stay visible
    ax.imshow(shown, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                color="white" if shown[i, j] > shown.max() / 2 else "black")
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return ax.figure


def plot_relative_errors(errors, ax=None, title="Gradient check: relative errors", expected=1e-7, bug=1e-5):
    """Relative errors of gradient checks as horizontal bars on a log scale.

    ``errors`` is ``{name: error}`` (one bar per name), or ``{series: {name: error}}``
    for grouped bars (e.g. one series per dtype). A green band marks errors up to
    ``expected`` (what a correct float64 backward pass gives) and a red band errors
    above ``bug`` (a wrong gradient); pass ``None`` to leave a band out. Exact zeros
    are drawn at 1e-17.
    """
    if errors and all(isinstance(v, dict) for v in errors.values()):
        series = {str(k): dict(v) for k, v in errors.items()}
    else:
        series = {"": dict(errors)}
    names = list(dict.fromkeys(n for s in series.values() for n in s))
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) * max(1, len(series)) + 1.4))
    height = 0.8 / len(series)
    for k, (label, errs) in enumerate(series.items()):
        pos = np.arange(len(names)) + (k - (len(series) - 1) / 2) * height
        vals = [max(float(errs.get(n, np.nan)), 1e-17) for n in names]
        ax.barh(pos, vals, height=height * 0.9, label=label or None, left=1e-17)
    ax.set_xscale("log")
    ax.set_xlim(1e-17, 1)
    ax.set_ylim(len(names) - 0.5, -0.5)
    if expected is not None:
        ax.axvspan(1e-17, expected, color="tab:green", alpha=0.08)
        ax.text(1e-16, 1.01, "expected", color="tab:green", fontsize=8, va="bottom",
                transform=ax.get_xaxis_transform())
    if bug is not None:
        ax.axvspan(bug, 1, color="tab:red", alpha=0.08)
        ax.text(bug * 2, 1.01, "a bug", color="tab:red", fontsize=8, va="bottom",
                transform=ax.get_xaxis_transform())
    ax.set_yticks(np.arange(len(names)), names)
    ax.set_xlabel("relative error (log scale)")
    ax.set_ylabel("checked array")
    ax.set_title(title, pad=18)
    if len(series) > 1:
        ax.legend(loc="lower right", fontsize=8)
    return ax.figure


def feature_map_mosaic(maps, ncols=8, ax=None, title="Feature maps", cmap="viridis", pad=1):
    """All channels of one feature map (C, H, W) tiled into a single image: quick to draw.

    Each channel is scaled to [0, 1] on its own (a constant channel shows as 0) and the
    tiles are separated by ``pad`` pixels of background (NaN, drawn white). One ``imshow``
    instead of one axes per channel keeps this fast enough for pre-rendered widgets.
    A vector (C,) or (C, 1, 1), such as a fully connected layer's output, is drawn as
    1x1 tiles with one color scale for the whole vector: a small heat map with ``ncols``
    values per row.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 1:
        maps = maps[:, None, None]
    if maps.ndim != 3:
        raise ValueError(f"feature_map_mosaic expects (C, H, W) or (C,), got shape {maps.shape}")
    c, h, w = maps.shape
    ncols = max(1, min(ncols, c))
    nrows = int(np.ceil(c / ncols))
    per_channel = h > 1 or w > 1
    lo = maps.min(axis=(1, 2), keepdims=True) if per_channel else maps.min()
    span = (maps.max(axis=(1, 2), keepdims=True) if per_channel else maps.max()) - lo
    scaled = np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1), 0.0)
    pad = pad if per_channel else 0
    canvas = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad), np.nan)
    for k in range(c):
        r, q = divmod(k, ncols)
        canvas[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = scaled[k]
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(10, 0.9 + 0.12 * canvas.shape[1]), min(8, 0.9 + 0.12 * canvas.shape[0])))
    ax.imshow(canvas, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if c == 1:
        label = f"1 channel, {h}x{w}"
    else:
        label = f"{c} channels, {ncols} per row" + (f", each {h}x{w}" if per_channel else " (one color scale)")
    ax.set_xlabel(label)
    ax.set_title(title)
    return ax.figure


_FLOW_COLORS = {"Conv2D": "#c6dbef", "Linear": "#dadaeb", "AvgPool2D": "#fdd0a2", "MaxPool2D": "#fdd0a2",
                "Tanh": "#c7e9c0", "ReLU": "#c7e9c0", "Sigmoid": "#c7e9c0"}
_FLOW_KINDS = (("#c6dbef", "convolution"), ("#c7e9c0", "activation"), ("#fdd0a2", "pooling"),
               ("#dadaeb", "fully connected"), ("#eeeeee", "reshape, dropout"))


def data_flow(model, input_shape=None, names=None, ax=None, title="Data flow through the network"):
    """The layers of a ``Sequential`` as a column of boxes joined by arrows, top to bottom.

    Each box shows the layer (``names[i]`` if given, e.g. ``{0: "C1"}``, then its
    ``describe()``) and its parameter count; beside it, the shape of the array it passes
    on and a bar for how many numbers that is per image. Shapes are computed with each layer's
    ``output_shape`` from ``input_shape`` (default: the model's), so the figure always
    matches the model. Boxes are colored by kind (convolution, activation, pooling,
    fully connected, other).
    """
    shape = tuple(input_shape or model.input_shape or ())
    if not shape:
        raise ValueError("data_flow needs an input_shape, e.g. (1, 1, 32, 32)")
    shape = (1,) + shape[1:]
    names = dict(names or {})
    rows = [("input", "", shape, 0, "#ffffff")]
    for i, layer in enumerate(model.layers):
        shape = layer.output_shape(shape)
        label = f"{names[i]}: {layer.describe()}" if i in names else layer.describe()
        rows.append((label, f"{layer.num_params():,} parameters" if layer.num_params() else "", shape,
                     layer.num_params(), _FLOW_COLORS.get(type(layer).__name__, "#eeeeee")))
    n = len(rows)
    most = max(int(np.prod(r[2][1:])) for r in rows)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.2, 0.52 * n + 1.0))
    box_w, box_h, x0 = 2.5, 0.62, 0.0
    for k, (label, params, shp, _, color) in enumerate(rows):
        y = -k
        ax.add_patch(plt.Rectangle((x0, y - box_h / 2), box_w, box_h, facecolor=color, edgecolor="0.3", lw=0.8))
        ax.text(x0 + 0.08, y + (0.1 if params else 0), label, va="center", ha="left", fontsize=8.5)
        if params:
            ax.text(x0 + 0.08, y - 0.17, params, va="center", ha="left", fontsize=7, color="0.3")
        numbers = int(np.prod(shp[1:]))
        ax.text(x0 + box_w + 0.15, y, str(tuple(shp[1:])), va="center", ha="left", fontsize=8, family="monospace")
        bar = 1.6 * numbers / most
        ax.add_patch(plt.Rectangle((4.3, y - 0.16), bar, 0.32, facecolor="0.55", edgecolor="none"))
        ax.text(4.3 + bar + 0.06, y, f"{numbers:,}", va="center", ha="left", fontsize=7.5)
        if k + 1 < n:
            ax.annotate("", xy=(x0 + box_w / 2, y - 1 + box_h / 2), xytext=(x0 + box_w / 2, y - box_h / 2),
                        arrowprops=dict(arrowstyle="-|>", color="0.3", lw=0.9, shrinkA=0, shrinkB=0))
    ax.text(x0, 0.75, "layer (parameters)", fontsize=8.5, fontweight="bold", va="bottom")
    ax.text(x0 + box_w + 0.15, 0.75, "output shape", fontsize=8.5, fontweight="bold", va="bottom")
    ax.text(4.3, 0.75, "numbers per image", fontsize=8.5, fontweight="bold", va="bottom")
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="0.3", lw=0.8) for c, _ in _FLOW_KINDS]
    ax.legend(handles, [k for _, k in _FLOW_KINDS], loc="lower right", fontsize=7.5, frameon=False,
              bbox_to_anchor=(1.0, 0.0))
    ax.set_xlim(-0.1, 6.9)
    ax.set_ylim(-n + 0.4, 1.3)
    ax.set_axis_off()
    ax.set_title(title)
    return ax.figure
