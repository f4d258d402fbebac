"""Training and evaluation loops: ``fit``, ``evaluate``, ``predict`` and friends.

``fit`` runs plain mini-batch training: for every epoch, shuffle, and for every
batch run forward, the loss, backward and one optimizer step. Everything that
decides the result is a function of the arguments, so the same seed and data
give bit-identical weights, and a run stopped after any epoch and resumed from
a checkpoint continues exactly as if it had never stopped:

* epoch ``e`` visits the samples in the order ``epoch_permutation(seed, e, N)``,
  which depends only on ``(seed, e)``, not on what ran before;
* the learning rate of epoch ``e`` is ``schedule(e)``;
* the rest of the state (weights, optimizer buffers and step count, dropout
  random streams) is what :mod:`lenet_core.checkpoint` saves.
"""
from __future__ import annotations

import math
import time

import numpy as np

from tqdm.auto import tqdm   # a text bar in a terminal, a widget in Jupyter

from .batches import iterate_minibatches
from .checkpoint import save_checkpoint
from .history import History
from .losses import SoftmaxCrossEntropy, softmax
from .network import eval_mode
from .parallel import DataParallel

__all__ = ["History", "TrainingDiverged", "fit", "evaluate", "predict_logits", "predict", "predict_proba",
           "confusion_matrix", "accuracy", "epoch_permutation", "train_step"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped before the bad step changed any weight.

    Attributes: ``epoch`` (1-based), ``step`` (1-based batch index within the epoch),
    ``global_step`` (optimizer steps taken before this batch, plus one), ``loss``, ``lr``
    and ``history`` (the epochs completed before the failure).
    """

    def __init__(self, epoch, step, global_step, loss, lr, history=None):
        self.epoch, self.step, self.global_step, self.loss, self.lr = epoch, step, global_step, loss, lr
        self.history = history
        super().__init__(
            f"training diverged: the loss became {loss} at epoch {epoch}, step {step} "
            f"(optimizer step {global_step}) with learning rate {lr:g}. The weights were not updated with "
            f"this batch, and checkpoints saved after earlier epochs are intact. Try a lower learning rate "
            f"(e.g. {lr / 10:g}).")


def epoch_permutation(seed, epoch: int, n: int) -> np.ndarray:
    """The order in which ``fit`` visits ``n`` samples in (0-based) ``epoch``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def _check_xy(x, y, what="x"):
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"{what} has {len(x)} samples but its labels have {len(y)}")
    if len(x) == 0:
        raise ValueError(f"{what} is empty")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got shape {y.shape} and dtype {y.dtype}")
    return x, y


def train_step(model, optimizer, loss_fn, xb, yb):
    """One forward, loss, backward and optimizer step; returns ``(loss, number correct)``.

    If the loss is not finite nothing is changed and ``(loss, None)`` is returned.
    """
    logits = model.forward(xb)
    loss = loss_fn(logits, yb)
    if not math.isfinite(loss):
        return loss, None
    model.backward(loss_fn.backward(), input_grad=False)   # nobody needs dL/d(images) here
    optimizer.step()
    return loss, int((logits.argmax(axis=1) == yb).sum())


def fit(model, optimizer, x, y, epochs, batch_size=64, x_val=None, y_val=None, seed=0, schedule=None,
        progress=True, start_epoch=0, history=None, on_epoch_end=None, loss_fn=None, *,
        checkpoint_path=None, checkpoint_extra=None, eval_batch_size=1000, processes=None) -> History:
    """Train ``model`` with ``optimizer`` on ``(x, y)`` and return the :class:`History`.

    Parameters
    ----------
    model : Sequential
        Put in ``train()`` mode for every epoch and in ``eval()`` mode for validation.
    optimizer : Optimizer
        Built on ``model`` (e.g. ``Adam(model, 1e-3)``).
    x, y : ndarray
        Prepared inputs, float32 ``(N, 1, 32, 32)`` (see ``data.prepare_lenet_input``), and
        integer labels ``(N,)``.
    epochs : int
        Train up to this total number of epochs: epochs ``start_epoch, ..., epochs - 1``
        (0-based) run, so ``fit(..., epochs=10, start_epoch=4)`` runs six more.
    batch_size : int
        Samples per step; the last batch of an epoch may be smaller.
    x_val, y_val : ndarray, optional
        Validation data, evaluated after every epoch.
    seed : int
        Seeds the shuffling: epoch ``e`` uses ``epoch_permutation(seed, e, N)``.
    schedule : callable, optional
        ``lr = schedule(epoch)`` with the 0-based epoch index, set on the optimizer at the
        start of each epoch (see :mod:`lenet_core.schedules`). Without one the optimizer's
        ``lr`` is left alone.
    progress : bool
        Show a progress bar per epoch (``tqdm.auto``: text in a terminal, a widget in Jupyter).
    start_epoch, history
        To resume: the number of epochs already done and their ``History`` (e.g. from
        ``load_checkpoint``). ``history`` is extended in place.
    on_epoch_end : callable, optional
        ``on_epoch_end(epoch, history)`` after every epoch (``epoch`` 1-based, after any
        checkpoint is written); returning ``True`` stops training early.
    loss_fn : optional
        An object with ``forward(logits, y) -> float`` (or ``__call__``) and ``backward()``;
        default :class:`SoftmaxCrossEntropy`.
    checkpoint_path : path, optional
        Save a checkpoint there (atomically) after every epoch, with the model, optimizer,
        epoch count, history and ``checkpoint_extra`` (plus ``{"fit": {"seed", "batch_size"}}``).
    eval_batch_size : int
        Batch size for validation.
    processes : int, optional
        Split every batch over this many processes, one per core (see
        :mod:`lenet_core.parallel`); default: as many as NumPy's BLAS has threads, or
        ``LENET_PROCESSES``. ``processes=1`` computes everything in this process. The result
        depends on it only through float rounding, and is bit-identical for the same value.

    Raises
    ------
    TrainingDiverged
        When a batch's loss is NaN or infinite; the message names the epoch and step.
        Weights are left as they were before that batch.
    """
    x, y = _check_xy(x, y)
    if x_val is not None or y_val is not None:
        if x_val is None or y_val is None:
            raise ValueError("give both x_val and y_val, or neither")
        x_val, y_val = _check_xy(x_val, y_val, "x_val")
    epochs, start_epoch, batch_size = int(epochs), int(start_epoch), int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if start_epoch < 0:
        raise ValueError(f"start_epoch must be >= 0, got {start_epoch}")
    history = History() if history is None else (history if isinstance(history, History) else History(history))
    if history.epochs != start_epoch and history.epochs:
        raise ValueError(f"the history records {history.epochs} epochs but start_epoch is {start_epoch}; "
                         "resume with the history and epoch count saved together in the checkpoint")
    loss_fn = SoftmaxCrossEntropy() if loss_fn is None else loss_fn
    n = len(x)
    n_batches = -(-n // batch_size)

    with DataParallel(model, processes) as parallel:   # each batch split over the cores (lenet_core.parallel)
        for e in range(start_epoch, epochs):
            t0 = time.perf_counter()
            if schedule is not None:
                optimizer.lr = float(schedule(e))
            model.train()
            total_loss, total_correct, seen = 0.0, 0, 0
            batches = iterate_minibatches(x, y, batch_size, shuffle=True,
                                          seed=np.random.default_rng([int(seed), e]))
            bar = tqdm(total=n_batches, desc=f"epoch {e + 1}/{epochs}", unit="batch", disable=not progress,
                       leave=True, dynamic_ncols=True)
            try:
                for step, (xb, yb) in enumerate(batches, start=1):
                    with np.errstate(over="ignore", invalid="ignore"):
                        loss, correct = _gradients(parallel, loss_fn, xb, yb)
                    if not math.isfinite(loss):
                        raise TrainingDiverged(e + 1, step, optimizer.steps + 1, loss, optimizer.lr, history)
                    optimizer.step()
                    total_loss += loss * len(xb)
                    total_correct += correct
                    seen += len(xb)
                    bar.update(1)
                    if step % 10 == 0 or step == n_batches:
                        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{total_correct / seen:.4f}",
                                        refresh=False)
                record = dict(epoch=e + 1, train_loss=total_loss / seen, train_acc=total_correct / seen,
                              lr=float(optimizer.lr))
                if x_val is not None:
                    val_loss, val_acc = _evaluate(parallel, x_val, y_val, eval_batch_size, loss_fn)
                    record.update(val_loss=val_loss, val_acc=val_acc)
                    bar.set_postfix(loss=f"{record['train_loss']:.4f}", acc=f"{record['train_acc']:.4f}",
                                    val_loss=f"{val_loss:.4f}", val_acc=f"{val_acc:.4f}", refresh=False)
            finally:
                bar.close()
            record["seconds"] = time.perf_counter() - t0
            history.record(**record)
            if checkpoint_path is not None:
                extra = dict(checkpoint_extra or {})
                extra.setdefault("fit", {"seed": int(seed), "batch_size": batch_size})
                save_checkpoint(checkpoint_path, model, optimizer, epoch=e + 1, history=history, extra=extra)
            if on_epoch_end is not None and on_epoch_end(e + 1, history) is True:
                break
    return history


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


def _gradients(parallel, loss_fn, xb, yb):
    """Forward, loss and backward of one batch, the gradients left in the model's layers:
    ``(loss, number correct)``. The softmax cross-entropy is split over the processes
    (:meth:`DataParallel.train_step`); another loss runs in this process."""
    if type(loss_fn) is SoftmaxCrossEntropy:
        return parallel.train_step(xb, yb)
    logits = parallel.model.forward(xb)
    loss = loss_fn(logits, yb)
    if math.isfinite(loss):
        parallel.model.backward(loss_fn.backward(), input_grad=False)
    return loss, int((logits.argmax(axis=1) == yb).sum())


def _batches(n, batch_size):
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, start + batch_size)


def _evaluate(parallel, x, y, batch_size, loss_fn):
    total_loss, correct = 0.0, 0
    with eval_mode(parallel.model):
        for sl in _batches(len(x), batch_size):
            logits = parallel.infer(x[sl])
            total_loss += loss_fn(logits, y[sl]) * len(y[sl])
            correct += int((logits.argmax(axis=1) == y[sl]).sum())
    return total_loss / len(x), correct / len(x)


def predict_logits(model, x, batch_size=1000, processes=None) -> np.ndarray:
    """Raw outputs ``(N, 10)`` in eval mode, computed ``batch_size`` images at a time
    (each batch split over ``processes`` processes, as in :func:`fit`)."""
    x = np.asarray(x)
    with DataParallel(model, processes) as parallel, eval_mode(model):
        outs = [np.asarray(parallel.infer(x[sl])) for sl in _batches(len(x), batch_size)]
    if not outs:
        raise ValueError("predict needs at least one input")
    return np.concatenate(outs)


def predict_proba(model, x, batch_size=1000, processes=None) -> np.ndarray:
    """Softmax probabilities ``(N, 10)``."""
    return softmax(predict_logits(model, x, batch_size, processes))


def predict(model, x, batch_size=1000, processes=None) -> np.ndarray:
    """Predicted class labels ``(N,)`` (int64)."""
    return predict_logits(model, x, batch_size, processes).argmax(axis=1).astype(np.int64)


def evaluate(model, x, y, batch_size=1000, loss_fn=None, processes=None) -> tuple[float, float]:
    """``(mean loss, accuracy)`` over ``(x, y)`` in eval mode, in batches of ``batch_size``
    (each split over ``processes`` processes, as in :func:`fit`)."""
    x, y = _check_xy(x, y)
    loss_fn = SoftmaxCrossEntropy() if loss_fn is None else loss_fn
    with DataParallel(model, processes) as parallel:
        return _evaluate(parallel, x, y, batch_size, loss_fn)


def accuracy(y_true, y_pred) -> float:
    """Fraction of equal entries."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    if y_true.size == 0:
        raise ValueError("accuracy of no samples is undefined")
    return float((y_true == y_pred).mean())


def confusion_matrix(y_true, y_pred, num_classes=10) -> np.ndarray:
    """``cm[i, j]`` = number of samples of true class ``i`` predicted as ``j`` (int64, rows sum to class counts)."""
    y_true, y_pred = np.asarray(y_true).astype(np.int64), np.asarray(y_pred).astype(np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D and equally long, got {y_true.shape} and {y_pred.shape}")
    for name, v in (("y_true", y_true), ("y_pred", y_pred)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} has values outside 0..{num_classes - 1}")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)
