"""The record of a training run: one entry per epoch (loss, accuracy, learning rate, time)."""
from __future__ import annotations

__all__ = ["History"]


class History(dict):
    """Per-epoch training record: a dict of equally long lists (plus empty validation lists
    when no validation data is given).

    Keys: ``"epoch"`` (1-based number of the epoch just completed), ``"train_loss"`` and
    ``"train_acc"`` (means over the epoch's training samples, with the weights as they were
    while each batch was processed), ``"val_loss"``, ``"val_acc"`` (after the epoch, in eval
    mode), ``"lr"`` and ``"seconds"`` (wall time of the epoch including validation).
    It is a plain ``dict`` subclass, so ``json.dumps(history)`` and
    :func:`lenet_core.plots.plot_history` work on it directly.
    """

    KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")

    def __init__(self, data=None):
        super().__init__({k: [] for k in self.KEYS})
        for k, v in dict(data or {}).items():
            self[k] = list(v)

    def record(self, **values):
        for k, v in values.items():
            self.setdefault(k, []).append(v)

    @property
    def epochs(self) -> int:
        """Number of recorded epochs."""
        return len(self["epoch"])

    def last(self) -> dict:
        """The most recent value of every non-empty list."""
        return {k: v[-1] for k, v in self.items() if v}

    def to_dict(self) -> dict:
        """A plain ``{key: list}`` copy (JSON-serializable)."""
        return {k: list(v) for k, v in self.items()}

    def copy(self):
        return History(self.to_dict())

    def __repr__(self):
        return f"History({self.epochs} epochs: {', '.join(self)})"
