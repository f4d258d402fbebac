"""The loss: softmax followed by cross-entropy, fused for a simple, stable gradient."""
from __future__ import annotations

import numpy as np

__all__ = ["SoftmaxCrossEntropy", "softmax", "log_softmax"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax`` along the last axis via log-sum-exp: subtract the max first, so no exp overflows."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis, stable for logits of any size."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


class SoftmaxCrossEntropy:
    r"""Mean cross-entropy of the softmax of the logits against the labels.

    Math, for a batch of ``N`` rows of ``K`` logits ``z`` and targets ``y`` (one-hot rows,
    or probability rows)::

        p[n, k] = exp(z[n, k]) / sum_j exp(z[n, j])
        L       = -(1/N) sum_n sum_k y[n, k] log p[n, k]
        dL/dz   = (p - y) / N

    ``log p`` is computed as ``z - max(z) - log(sum(exp(z - max(z))))`` (log-sum-exp), so
    logits of ±1e4 give finite values and gradients, never NaN.

    Shapes: ``logits`` (N, K); ``labels`` either integer class indices (N,) in ``[0, K)``
    or targets (N, K) whose rows sum to 1 (one-hot). Returns a Python float.

    Cache: the probabilities ``p`` (N, K) and the targets as a one-hot/probability array.
    """

    def __init__(self):
        self.cache = None

    def __call__(self, logits, labels):
        return self.forward(logits, labels)

    def forward(self, logits, labels) -> float:
        logits = np.asarray(logits)
        if not np.issubdtype(logits.dtype, np.floating):
            logits = logits.astype(np.float32)
        if logits.ndim != 2:
            raise ValueError(f"SoftmaxCrossEntropy expects logits of shape (N, K), got {logits.shape}")
        n, k = logits.shape
        targets = self._targets(labels, n, k, logits.dtype)
        logp = log_softmax(logits)
        loss = -(targets * logp).sum() / n
        self.cache = (np.exp(logp), targets)
        return float(loss)

    def backward(self) -> np.ndarray:
        """``dL/dlogits = (p - y) / N``, shape (N, K), in the logits' dtype."""
        if self.cache is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward was called before forward: "
                               "compute the loss with forward(logits, labels) first.")
        p, targets = self.cache
        return (p - targets) / p.dtype.type(p.shape[0])

    @staticmethod
    def _targets(labels, n, k, dtype):
        labels = np.asarray(labels)
        if labels.ndim == 1:
            if labels.shape[0] != n:
                raise ValueError(f"got {labels.shape[0]} labels for {n} rows of logits")
            if not np.issubdtype(labels.dtype, np.integer):
                if np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)):
                    labels = labels.astype(np.int64)
                else:
                    raise ValueError(f"integer class labels expected, got dtype {labels.dtype}")
            if labels.size and (labels.min() < 0 or labels.max() >= k):
                raise ValueError(f"labels must lie in [0, {k}), got values from {labels.min()} to {labels.max()}")
            targets = np.zeros((n, k), dtype=dtype)
            targets[np.arange(n), labels] = 1
            return targets
        if labels.shape != (n, k):
            raise ValueError(f"one-hot labels must have the logits' shape {(n, k)}, got {labels.shape}")
        return labels.astype(dtype, copy=False)
