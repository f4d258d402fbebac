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

A run that diverges stops with :class:`TrainingDiverged` instead of saving a
ruined network: when a batch's loss is NaN or infinite, or far above where it
started (:func:`check_batch`), and at the end of an epoch whose mean loss is far
above its start or whose accuracy is at chance while the loss did not fall
(:func:`check_epoch`). The message suggests a smaller learning rate worked out
from the run (:func:`suggest_lr`).
"""
from __future__ import annotations

import math
import time

import numpy as np

from .batches import iterate_minibatches
from .checkpoint import save_checkpoint
from .history import History
from .losses import SoftmaxCrossEntropy, softmax
from .network import eval_mode
from .parallel import DataParallel
from .progress import progress_bar

__all__ = ["History", "TrainingDiverged", "fit", "evaluate", "predict_logits", "predict", "predict_proba",
           "confusion_matrix", "accuracy", "epoch_permutation", "train_step", "check_batch", "check_epoch",
           "suggest_lr"]

#: An epoch's mean loss above this many times its reference (the larger of the run's first loss and
#: the loss of a uniform guess, ln K) means the run has blown up; a single batch's, above BATCH_BLOWUP.
EPOCH_BLOWUP = 3.0
BATCH_BLOWUP = 100.0
#: Optimizer steps a run must have taken before an accuracy at chance counts as a failure to learn,
#: and how far above its reference the loss must then be (a run that is merely slow, or has random
#: labels, sits at the reference: at chance *and* a little worse than a uniform guess means stuck).
MIN_STEPS_AT_CHANCE = 50
STUCK_LOSS = 1.05
#: Learning rates that train both LeNet-5 variants well on MNIST; a suggestion never exceeds them.
WORKING_LR = {"Adam": 1e-2, "SGD": 0.1}


class TrainingDiverged(RuntimeError):
    """Training stopped because the run diverged; nothing of the bad epoch was saved.

    Either a batch's loss became NaN, infinite or far too large (training stopped before that
    batch changed any weight; :func:`check_batch`) or an epoch ended with its loss blown up or
    its accuracy at chance (:func:`check_epoch`); ``reason`` says which.

    Attributes: ``epoch`` (1-based), ``step`` (1-based batch index within the epoch, or
    ``None`` for an end-of-epoch check), ``global_step`` (optimizer steps taken before this
    batch, plus one), ``loss``, ``lr``, ``history`` (the epochs completed before the failure),
    ``reason`` and ``suggested_lr``.
    """

    def __init__(self, epoch, step, global_step, loss, lr, history=None, *, reason=None, suggested_lr=None):
        self.epoch, self.step, self.global_step, self.loss, self.lr = epoch, step, global_step, loss, lr
        self.history = history
        self.suggested_lr = lr / 10 if suggested_lr is None else suggested_lr
        self.reason = f"the loss became {loss}" if reason is None else reason
        if step is not None:
            kept = ("The weights were not updated with this batch, and checkpoints saved after earlier epochs "
                    "are intact.")
        else:
            kept = "Nothing of this epoch was saved; checkpoints saved after earlier epochs are intact."
        where = f"epoch {epoch}, step {step}" if step is not None else f"the end of epoch {epoch}"
        super().__init__(
            f"training diverged at {where} (optimizer step {global_step}, learning rate {lr:g}): {self.reason}. "
            f"{kept} Try a smaller learning rate, e.g. {self.suggested_lr:g}.")


def _nice(x: float) -> float:
    """``x`` rounded down to 1, 2 or 5 times a power of ten."""
    e = math.floor(math.log10(x) + 1e-12)
    m = x / 10.0 ** e * (1 + 1e-9)   # 4.9999999 is 5
    return float(f"{5 if m >= 5 else 2 if m >= 2 else 1}e{e}")


def suggest_lr(lr, rise=None, history=None, optimizer=None) -> float:
    """A smaller learning rate for a run that diverged at ``lr``, from what the run showed.

    * If earlier epochs (``history``) trained at smaller rates and their loss fell, the
      largest of those rates: it demonstrably worked.
    * Otherwise one power of ten smaller, one more for every factor of 1,000 by which the
      loss rose above its reference (``rise``; at most three), rounded down to 1, 2 or 5
      times a power of ten, and never above the rate that trains LeNet-5 well with this
      optimizer (``WORKING_LR``): ``--lr 100000`` with Adam is told 0.01, not 10000.
    """
    worked = []
    if history is not None and history.get("lr") and history.get("train_loss"):
        losses = history["train_loss"]
        for i, (rate, loss) in enumerate(zip(history["lr"], losses)):
            if rate < lr and math.isfinite(loss) and (i == 0 or loss < losses[i - 1]):
                worked.append(rate)
    if worked:
        return max(worked)
    powers = 1
    if rise is not None and rise > 1:
        powers = 3 if not math.isfinite(rise) else min(3, 1 + int(math.log10(rise) // 3))
    suggestion = lr / 10 ** powers
    cap = WORKING_LR.get(type(optimizer).__name__) if optimizer is not None else None
    if cap is not None:
        suggestion = min(suggestion, cap)
    return _nice(suggestion)


def check_batch(loss, reference) -> str | None:
    """Why one batch's ``loss`` shows a diverged run (NaN, infinite, or ``BATCH_BLOWUP`` times its
    ``reference``), or ``None``. Nothing a sensible run does comes near that."""
    if not math.isfinite(loss):
        return f"the loss became {loss}"
    if reference is not None and loss > BATCH_BLOWUP * reference:
        ratio = loss / reference
        times = f"{ratio:,.0f}" if ratio < 1e6 else f"{ratio:.1e}"
        return f"the loss of one batch rose to {loss:.4g}, {times} times its start ({reference:.3g})"
    return None


def check_epoch(record, reference, chance, steps) -> str | None:
    """Why the epoch in ``record`` shows a diverged run, or ``None``.

    ``reference`` is the larger of the run's first batch loss and a uniform guess's loss
    (ln K for K classes); ``chance`` the accuracy of always guessing the most common class;
    ``steps`` the optimizer steps this run has taken. Diverged means: the epoch's mean loss
    is above ``EPOCH_BLOWUP`` times the reference, or, once the run has taken
    ``MIN_STEPS_AT_CHANCE`` steps, its accuracy is no better than chance (within three
    standard deviations of sampling noise) while its loss is above ``STUCK_LOSS`` times the
    reference. A run that learns, however slowly, does neither; nor does one on random labels
    at a sensible rate (accuracy at chance, loss at the reference).
    """
    loss, acc = record["train_loss"], record["train_acc"]
    if loss > EPOCH_BLOWUP * reference:
        return (f"the mean training loss of the epoch is {loss:.4g}, {loss / reference:.1f} times where it "
                f"started ({reference:.3g})")
    if steps >= MIN_STEPS_AT_CHANCE and chance is not None:
        n = max(1, record.get("samples", 1))
        bound = chance + 3 * math.sqrt(chance * (1 - chance) / n) + 0.01
        if acc <= bound and loss > STUCK_LOSS * reference:
            return (f"after {steps} steps the training accuracy is {100 * acc:.1f}%, no better than guessing "
                    f"({100 * chance:.1f}%), and the loss ({loss:.4g}) is above where it started "
                    f"({reference:.3g}): the network has stopped learning (saturated or dead units)")
    return None


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


def _stop_if_diverged(why, e, step, loss, reference, mean_so_far, optimizer, history):
    """Raise TrainingDiverged if ``why`` says the run diverged at (0-based) epoch ``e``, batch
    ``step`` (before its update), or at the end of the epoch (``step=None``)."""
    if why is None:
        return
    evidence = loss if math.isfinite(loss) else mean_so_far
    rise = evidence / reference if evidence is not None and reference else None
    raise TrainingDiverged(e + 1, step, optimizer.steps + (step is not None), loss, optimizer.lr, history,
                           reason=why, suggested_lr=suggest_lr(optimizer.lr, rise, history, optimizer))


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
        Show a progress bar per epoch (``tqdm.auto``: text in a terminal, a widget in Jupyter);
        never in a log or a pipe, where a redrawn bar would be a wall of carriage returns.
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
        When a batch's loss is NaN or infinite (weights are left as they were before that
        batch) or blows up (:func:`check_batch`), or an epoch ends with the loss far above
        its start or the accuracy at chance (:func:`check_epoch`); the diverged epoch is
        neither recorded nor saved, and the message suggests a smaller learning rate.
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
    chance = float(np.unique(y, return_counts=True)[1].max() / n)   # always guessing the commonest label
    uniform = math.log(max(2, int(y.max()) + 1)) if isinstance(loss_fn, SoftmaxCrossEntropy) else 0.0
    reference, steps = None, 0   # the first batch's loss, the optimizer steps of this call

    with DataParallel(model, processes) as parallel:   # each batch split over the cores (lenet_core.parallel)
        for e in range(start_epoch, epochs):
            t0 = time.perf_counter()
            if schedule is not None:
                optimizer.lr = float(schedule(e))
            model.train()
            total_loss, total_correct, seen = 0.0, 0, 0
            batches = iterate_minibatches(x, y, batch_size, shuffle=True,
                                          seed=np.random.default_rng([int(seed), e]))
            bar = progress_bar(n_batches, show=progress, desc=f"epoch {e + 1}/{epochs}", unit="batch",
                               leave=True, dynamic_ncols=True)
            try:
                for step, (xb, yb) in enumerate(batches, start=1):
                    with np.errstate(over="ignore", invalid="ignore"):
                        loss, correct = _gradients(parallel, loss_fn, xb, yb)
                    if reference is None and math.isfinite(loss):
                        reference = max(loss, uniform)
                    _stop_if_diverged(check_batch(loss, reference), e, step, loss, reference,
                                      total_loss / seen if seen else None, optimizer, history)
                    optimizer.step()
                    steps += 1
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
            _stop_if_diverged(check_epoch({**record, "samples": seen}, reference, chance, steps), e, None,
                              record["train_loss"], reference, None, optimizer, history)
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
