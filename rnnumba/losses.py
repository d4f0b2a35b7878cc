"""Losses: squared error and softmax cross-entropy, with per-row weights and a normaliser.

The loss of a batch is ``sum(weight_i * loss_i) / normalizer``, so that weighting a sample
by ``k`` is the same as repeating it ``k`` times. A loss object runs its kernel on the
backend's arrays: the loss value goes into a one-element float64 array on the device and
the gradient with respect to the predictions (or logits) into ``grad``, so that a training
step on a GPU brings back one small array per batch, not one per loss.

:func:`squared_error` and :func:`softmax_cross_entropy` are the same kernels on host arrays
of any leading shape, for callers outside a training loop; :func:`softmax` and
:func:`log_softmax` turn logits into probabilities on the host.
"""

import numpy as np

from .backend import get_backend

__all__ = ["SquaredError", "CrossEntropy", "squared_error", "softmax_cross_entropy",
           "softmax", "log_softmax"]


class SquaredError:
    """Half the mean squared error over outputs: ``0.5 * mean_o (p_o - y_o)^2`` per row
    (scikit-learn's MLP ``squared_loss`` with unit weights and ``normalizer = n``)."""

    target_kind = "float"

    def __call__(self, backend, pred, target, weights, normalizer, grad, loss):
        backend.losses.squared_error(_rows(pred), _rows(target), _flat(weights),
                                     float(normalizer), _rows(grad), loss)


class CrossEntropy:
    """Cross-entropy of ``softmax(logits)`` against integer labels."""

    target_kind = "labels"

    def __call__(self, backend, pred, target, weights, normalizer, grad, loss):
        backend.losses.softmax_cross_entropy(_rows(pred), _flat(target), _flat(weights),
                                             float(normalizer), _rows(grad), loss)


def _rows(array):
    """``(..., K)`` as ``(rows, K)``: a view of a C-contiguous array (device arrays take no
    ``-1`` in a shape)."""
    width = array.shape[len(array.shape) - 1]
    return array.reshape(array.size // max(width, 1), width)


def _flat(array):
    return array.reshape(array.size)


def squared_error(y_pred, y_true, weights, normalizer):
    """``(loss, grad)`` of :class:`SquaredError` on host arrays; ``weights`` broadcast over
    the leading axes of the predictions."""
    return _host(SquaredError(), y_pred, np.asarray(y_true, dtype=y_pred.dtype), weights,
                 normalizer)


def softmax_cross_entropy(logits, labels, weights, normalizer):
    """``(loss, grad)`` of :class:`CrossEntropy` on host arrays: ``loss = -sum_i w_i log
    p_i[label_i] / normalizer``, the gradient ``w_i (p_i - onehot_i) / normalizer``.
    Entries with weight 0 may carry any label in range."""
    return _host(CrossEntropy(), logits, np.asarray(labels, dtype=np.int64), weights,
                 normalizer)


def _host(loss_fn, pred, target, weights, normalizer):
    pred = np.ascontiguousarray(pred)
    weights = np.ascontiguousarray(np.broadcast_to(weights, pred.shape[:-1]),
                                   dtype=np.float64)
    grad = np.empty_like(pred)
    loss = np.zeros(1)
    loss_fn(get_backend("cpu"), pred, np.ascontiguousarray(target), weights, normalizer,
            grad, loss)
    return float(loss[0]), grad


def log_softmax(z):
    """Numerically stable ``log(softmax(z))`` along the last axis."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(z):
    """Softmax along the last axis."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
