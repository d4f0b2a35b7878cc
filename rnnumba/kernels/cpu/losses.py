"""Losses on the CPU (the contract; :mod:`..cuda.losses` has the same functions and
signatures)::

    squared_error(pred, target, weights, normalizer, grad, loss)
    softmax_cross_entropy(logits, labels, weights, normalizer, grad, loss)

Conventions: ``pred``, ``target``, ``logits`` and ``grad`` are C-contiguous ``(R, O)`` or
``(R, C)`` arrays of one float dtype (float32 or float64); ``weights`` is float64 ``(R,)``;
``labels`` int64 ``(R,)`` in ``0..C-1`` (validated by the caller); ``normalizer`` a
positive Python float; ``loss`` a float64 ``(1,)`` array. Both functions *write*
``loss[0]`` and the whole of ``grad`` (the gradient of ``loss[0]`` with respect to the
predictions or logits). The values are those of :func:`rnnumba.losses.squared_error` and
:func:`rnnumba.losses.softmax_cross_entropy`:

- squared error: ``loss = sum_r w_r * 0.5 * mean_o (p - y)^2 / normalizer``,
  ``grad = w_r / (O * normalizer) * (p - y)``;
- softmax cross-entropy: ``loss = -sum_r w_r * log softmax(z_r)[label_r] / normalizer``,
  computed as a log-sum-exp shifted by the row maximum (finite when a probability
  underflows), ``grad = w_r (softmax(z_r) - onehot(label_r)) / normalizer``.

Rows of weight 0 take no part: their gradient is zero and they add nothing to the loss
(whatever their predictions or targets hold, NaN padding included). Differences run in the
array dtype, as does the exponential of each shifted logit; everything else (squares,
sums of exponentials, logarithms, the loss) in float64. Rows and columns are summed in
ascending order, the order of the CUDA kernels.
"""

import numpy as np

from ._jit import kernel

__all__ = ["squared_error", "softmax_cross_entropy"]


def squared_error(pred, target, weights, normalizer, grad, loss):
    """Weighted half mean squared error and its gradient.

    Parameters
    ----------
    pred, target : ndarray, shape (R, O)
        Predictions and targets.
    weights : ndarray of float64, shape (R,)
        Row weights (0 leaves a row out).
    normalizer : float
        Positive divisor of the weighted sum.
    grad : ndarray, shape (R, O), the dtype of ``pred``
        Written: ``weights[r] / (O * normalizer) * (pred - target)``.
    loss : ndarray of float64, shape (1,)
        Written: ``sum_r weights[r] * 0.5 * mean_o (pred - target)^2 / normalizer``.
    """
    normalizer = float(normalizer)
    total = _squared_error(pred, target, weights, pred.shape[1] * normalizer, grad)
    loss[0] = total / normalizer


def softmax_cross_entropy(logits, labels, weights, normalizer, grad, loss):
    """Weighted softmax cross-entropy against integer labels and its gradient.

    Parameters
    ----------
    logits : ndarray, shape (R, C)
        Unnormalised log-probabilities.
    labels : ndarray of int64, shape (R,)
        Classes in ``0..C-1`` (not checked).
    weights : ndarray of float64, shape (R,)
        Row weights (0 leaves a row out).
    normalizer : float
        Positive divisor of the weighted sum.
    grad : ndarray, shape (R, C), the dtype of ``logits``
        Written: ``weights[r] * (softmax(logits[r]) - onehot(labels[r])) / normalizer``.
    loss : ndarray of float64, shape (1,)
        Written: ``-sum_r weights[r] * log softmax(logits[r])[labels[r]] / normalizer``.

    Raises
    ------
    ValueError
        If ``logits`` has no class column.
    """
    if logits.shape[1] < 1:
        raise ValueError(f"logits must have at least one class column, got shape "
                         f"{logits.shape}")
    normalizer = float(normalizer)
    total = _softmax_cross_entropy(logits, labels, weights, normalizer, grad)
    loss[0] = total / normalizer


@kernel
def _squared_error(pred, target, weights, denominator, grad):
    rows, outputs = pred.shape
    total = 0.0
    for r in range(rows):
        w = weights[r]
        if w == 0.0:
            grad[r, :] = 0.0
            continue
        coef = w / denominator
        squares = 0.0
        for o in range(outputs):
            d = np.float64(pred[r, o] - target[r, o])  # the difference in the array dtype
            squares += d * d
            grad[r, o] = coef * d
        total += w * (0.5 * squares / outputs)
    return total


@kernel
def _softmax_cross_entropy(logits, labels, weights, normalizer, grad):
    rows, classes = logits.shape
    total = 0.0
    for r in range(rows):
        w = weights[r]
        z = logits[r]
        g = grad[r]
        if w == 0.0:
            g[:] = 0.0
            continue
        top = z[0]
        for c in range(1, classes):
            if z[c] > top:
                top = z[c]
        sum_exp = 0.0
        for c in range(classes):
            e = np.exp(z[c] - top)  # in the array dtype
            g[c] = e
            sum_exp += np.float64(e)
        label = labels[r]
        total += w * (np.log(sum_exp) - np.float64(z[label] - top))
        coef = w / normalizer
        e_label = np.float64(g[label])
        for c in range(classes):
            g[c] = coef * (np.float64(g[c]) / sum_exp)
        g[label] = coef * (e_label / sum_exp - 1.0)
    return total
