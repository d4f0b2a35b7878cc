"""The dense head and pooling over steps on the CPU (the contract; :mod:`..cuda.layers` has
the same functions and signatures)::

    dense_forward(x, weight, bias, out)                          # out = x @ weight.T + bias
    dense_backward(x, weight, grad_out, grad_weight, grad_bias, grad_x)
    pool_forward(mode, out, lengths, directions, attention, features, step_weights, argmax)
    pool_backward(mode, out, lengths, directions, attention, step_weights, argmax,
                  grad_features, grad_out, grad_attention)
    put_columns(src, dst, col)                                   # dst[:, col:col+W] = src
    take_columns(src, col, dst)                                  # dst = src[:, col:col+W]

Conventions (C-contiguous arrays of one float dtype per call, float32 or float64, unless
said otherwise):

- The dense layer has PyTorch's ``nn.Linear`` layout: ``x`` ``(R, I)``, ``weight``
  ``(O, I)``, ``bias`` ``(O,)``, ``out`` and ``grad_out`` ``(R, O)``. ``dense_backward``
  *adds* ``grad_out.T @ x`` into ``grad_weight`` and the column sums of ``grad_out`` into
  ``grad_bias``, and *writes* ``grad_out @ weight`` into ``grad_x`` (skipped when ``grad_x``
  is None).
- Pooling reads a time-major recurrent output ``out`` ``(T, N, W)``, ``W = directions * H``,
  whose columns ``0:H`` are the forward direction and ``H:2H`` the reverse one. Row ``n``
  uses the steps ``t < lengths[n]`` (``lengths`` int64 ``(N,)`` in ``0..T``, validated by
  the caller). The mode is one of :mod:`rnnumba.kernels.modes`:

  - ``POOL_LAST``: forward columns take step ``len - 1``, reverse columns step 0 (the
    reverse direction's final state);
  - ``POOL_MEAN``: the mean over the row's steps (``step_weights = 1 / len``);
  - ``POOL_MAX``: per column, the first maximum over the row's steps;
  - ``POOL_ATTENTION``: scores ``s[t, n] = out[t, n] . attention``, weights
    ``a[:, n] = softmax(s[:len, n])`` (shifted by the row maximum), features
    ``sum_t a[t, n] out[t, n]``.

  A row of length 0 gets zero features (and ``argmax`` -1, zero step weights).
  ``features`` ``(N, W)`` is written; ``step_weights`` ``(T, N)`` is written by MEAN and
  ATTENTION (zero past each row's end); ``argmax`` int64 ``(N, W)`` is written by LAST and
  MAX (the step each feature came from). ``pool_backward`` writes the whole ``grad_out``
  ``(T, N, W)`` (zeros where no gradient flows) from ``grad_features`` ``(N, W)`` and, for
  ATTENTION, adds into ``grad_attention`` ``(W,)``::

      g[t, n] = grad_features[n] . out[t, n];  ds[t, n] = a[t, n] (g[t, n] - sum_t' a g)
      grad_out[t, n] = a[t, n] grad_features[n] + ds[t, n] attention
      grad_attention += sum over n, then t < lengths[n], of ds[t, n] out[t, n]

  An array a mode does not use (``attention``/``grad_attention`` except for ATTENTION,
  ``step_weights`` for LAST and MAX, ``argmax`` for MEAN and ATTENTION) may be a
  placeholder of the right dtype and number of dimensions, e.g. of shape ``(0,)`` or
  ``(0, 0)``.

Every sum runs in the array dtype in a fixed order (steps ascending, columns ascending), the
same order as the CUDA kernels, so results are deterministic.
"""

import numpy as np

from ..modes import POOL_ATTENTION, POOL_LAST, POOL_MAX, POOL_MEAN
from ._jit import kernel

__all__ = ["POOL_LAST", "POOL_MEAN", "POOL_MAX", "POOL_ATTENTION", "dense_forward",
           "dense_backward", "pool_forward", "pool_backward", "put_columns", "take_columns"]


def put_columns(src, dst, col):
    """``dst[:, col:col+W] = src`` for ``src`` ``(R, W)``: one summary's block of a wider
    feature matrix (heads that concatenate several poolings)."""
    dst[:, col:col + src.shape[1]] = src


def take_columns(src, col, dst):
    """``dst = src[:, col:col+W]`` for ``dst`` ``(R, W)``: the inverse of
    :func:`put_columns`."""
    dst[...] = src[:, col:col + dst.shape[1]]


def dense_forward(x, weight, bias, out):
    """Write ``out = x @ weight.T + bias``.

    Parameters
    ----------
    x : ndarray, shape (R, I)
        Input rows.
    weight : ndarray, shape (O, I)
        Weights in PyTorch's ``nn.Linear`` layout.
    bias : ndarray, shape (O,)
        Bias.
    out : ndarray, shape (R, O)
        Written.
    """
    np.matmul(x, weight.T, out=out)
    out += bias


def dense_backward(x, weight, grad_out, grad_weight, grad_bias, grad_x):
    """Add the weight and bias gradients of a dense layer; write its input gradient.

    Parameters
    ----------
    x : ndarray, shape (R, I)
        The input of the forward pass.
    weight : ndarray, shape (O, I)
        Weights.
    grad_out : ndarray, shape (R, O)
        Gradient with respect to the output.
    grad_weight : ndarray, shape (O, I)
        Added into: ``grad_out.T @ x``.
    grad_bias : ndarray, shape (O,)
        Added into: the column sums of ``grad_out``.
    grad_x : ndarray, shape (R, I), or None
        Written: ``grad_out @ weight``; None skips that product.
    """
    grad_weight += grad_out.T @ x
    grad_bias += grad_out.sum(axis=0)
    if grad_x is not None:
        np.matmul(grad_out, weight, out=grad_x)


def _check_mode(mode, directions, width):
    if mode not in (POOL_LAST, POOL_MEAN, POOL_MAX, POOL_ATTENTION):
        raise ValueError(f"unknown pooling mode {mode!r}")
    if directions not in (1, 2) or width % directions:
        raise ValueError(f"directions must be 1 or 2 and divide the output width {width}, "
                         f"got {directions!r}")


def pool_forward(mode, out, lengths, directions, attention, features, step_weights, argmax):
    """Pool a time-major recurrent output over each row's steps.

    Parameters
    ----------
    mode : int
        ``POOL_LAST``, ``POOL_MEAN``, ``POOL_MAX`` or ``POOL_ATTENTION``.
    out : ndarray, shape (T, N, W)
        Recurrent output, ``W = directions * H``.
    lengths : ndarray of int64, shape (N,)
        Steps used per row, in ``0..T`` (not checked).
    directions : int
        1, or 2 when columns ``H:2H`` are a reverse direction.
    attention : ndarray, shape (W,)
        Scoring vector of ``POOL_ATTENTION`` (a placeholder for the other modes).
    features : ndarray, shape (N, W)
        Written.
    step_weights : ndarray, shape (T, N)
        Written by MEAN (``1/len``) and ATTENTION (the softmax weights), zero past each
        row's end.
    argmax : ndarray of int64, shape (N, W)
        Written by LAST and MAX: the step of each feature, -1 for a row of length 0.

    Raises
    ------
    ValueError
        If ``mode`` or ``directions`` is not valid.
    """
    _check_mode(mode, directions, out.shape[2])
    _pool_forward(mode, out, lengths, directions, attention, features, step_weights, argmax)


def pool_backward(mode, out, lengths, directions, attention, step_weights, argmax,
                  grad_features, grad_out, grad_attention):
    """Gradient of :func:`pool_forward` with respect to ``out`` (and ``attention``).

    Parameters
    ----------
    mode, out, lengths, directions, attention :
        As given to :func:`pool_forward`.
    step_weights, argmax : ndarray
        As written by :func:`pool_forward`.
    grad_features : ndarray, shape (N, W)
        Gradient with respect to the pooled features.
    grad_out : ndarray, shape (T, N, W)
        Written in full (zeros where no gradient flows).
    grad_attention : ndarray, shape (W,)
        ``POOL_ATTENTION``: added into. A placeholder for the other modes.

    Raises
    ------
    ValueError
        If ``mode`` or ``directions`` is not valid.
    """
    _check_mode(mode, directions, out.shape[2])
    _pool_backward(mode, out, lengths, directions, attention, step_weights, argmax,
                   grad_features, grad_out, grad_attention)


@kernel
def _pool_forward(mode, out, lengths, directions, attention, features, step_weights, argmax):
    steps, batch, width = out.shape
    hidden = width // directions
    zero = out.dtype.type(0.0)
    one = out.dtype.type(1.0)
    weighted = mode == POOL_MEAN or mode == POOL_ATTENTION
    for n in range(batch):
        length = lengths[n]
        if weighted:
            for t in range(steps):
                step_weights[t, n] = zero
        feat = features[n]
        if length == 0:
            for w in range(width):
                feat[w] = zero
            if mode == POOL_LAST or mode == POOL_MAX:
                for w in range(width):
                    argmax[n, w] = -1
            continue
        if mode == POOL_LAST:
            for w in range(width):
                t = length - 1 if w < hidden else 0
                feat[w] = out[t, n, w]
                argmax[n, w] = t
        elif mode == POOL_MEAN:
            count = out.dtype.type(length)
            feat[:] = out[0, n]
            for t in range(1, length):
                row = out[t, n]
                for w in range(width):
                    feat[w] += row[w]
            for w in range(width):
                feat[w] = feat[w] / count
            for t in range(length):
                step_weights[t, n] = one / count
        elif mode == POOL_MAX:
            feat[:] = out[0, n]
            for w in range(width):
                argmax[n, w] = 0
            for t in range(1, length):
                row = out[t, n]
                for w in range(width):
                    if row[w] > feat[w]:
                        feat[w] = row[w]
                        argmax[n, w] = t
        else:
            for t in range(length):
                row = out[t, n]
                score = zero
                for w in range(width):
                    score += row[w] * attention[w]
                step_weights[t, n] = score
            top = step_weights[0, n]
            for t in range(1, length):
                if step_weights[t, n] > top:
                    top = step_weights[t, n]
            total = zero
            for t in range(length):
                e = np.exp(step_weights[t, n] - top)
                step_weights[t, n] = e
                total += e
            for t in range(length):
                step_weights[t, n] = step_weights[t, n] / total
            a = step_weights[0, n]
            row = out[0, n]
            for w in range(width):
                feat[w] = a * row[w]
            for t in range(1, length):
                a = step_weights[t, n]
                row = out[t, n]
                for w in range(width):
                    feat[w] += a * row[w]


@kernel
def _pool_backward(mode, out, lengths, directions, attention, step_weights, argmax,
                   grad_features, grad_out, grad_attention):
    steps, batch, width = out.shape
    zero = out.dtype.type(0.0)
    grad_out[:] = zero
    scored = mode == POOL_ATTENTION
    acc = np.zeros(width if scored else 0, dtype=out.dtype)
    ds = np.empty(steps if scored else 0, dtype=out.dtype)
    for n in range(batch):
        length = lengths[n]
        gf = grad_features[n]
        if mode == POOL_LAST or mode == POOL_MAX:
            for w in range(width):
                t = argmax[n, w]
                if t >= 0:
                    grad_out[t, n, w] = gf[w]
        elif mode == POOL_MEAN:
            for t in range(length):
                scale = step_weights[t, n]
                dst = grad_out[t, n]
                for w in range(width):
                    dst[w] = gf[w] * scale
        elif length > 0:
            for t in range(length):
                row = out[t, n]
                g = zero
                for w in range(width):
                    g += gf[w] * row[w]
                ds[t] = g
            mean = step_weights[0, n] * ds[0]
            for t in range(1, length):
                mean += step_weights[t, n] * ds[t]
            for t in range(length):
                a = step_weights[t, n]
                d = a * (ds[t] - mean)
                ds[t] = d
                dst = grad_out[t, n]
                for w in range(width):
                    dst[w] = a * gf[w] + d * attention[w]
            for t in range(length):
                d = ds[t]
                row = out[t, n]
                for w in range(width):
                    acc[w] += d * row[w]
    if scored:
        for w in range(width):
            grad_attention[w] += acc[w]
