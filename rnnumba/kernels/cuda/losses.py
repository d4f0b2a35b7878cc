"""Losses on the GPU: the same functions and signatures as :mod:`rnnumba.kernels.cpu.losses`
(whose docstring states the contract).

Each loss is three launches: a row kernel (one thread per row, rows strided over a capped
grid) that sums the row's terms in column order and tree-sums the weighted row losses per
block; :func:`._reduce.finish`, which adds the block sums in one block and writes
``loss[0]`` on the device; and a gradient kernel with one thread per element (consecutive
threads take consecutive columns). The softmax row kernel keeps each row's maximum and sum
of exponentials in a float64 workspace for the gradient kernel. No atomics and no host
round trip: the loss is deterministic and stays on the device until the caller reads it.

The launchers take device arrays (host NumPy arrays too, copied in and out) and check
shapes and dtypes before a launch; the labels are not checked (the caller validates them).
"""

import math

import numpy as np
from numba import cuda, float64

from . import _jit, _reduce
from ._jit import blocks, cached_factory, numba_type, on_device

__all__ = ["squared_error", "softmax_cross_entropy"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_F64 = (np.dtype(np.float64),)
_INT64 = (np.dtype(np.int64),)


def _check(named):
    """Shapes and dtypes before a launch: ``{name: (array, shape, dtypes)}``."""
    for name, (array, shape, dtypes) in named.items():
        if tuple(array.shape) != tuple(shape) or np.dtype(array.dtype) not in dtypes:
            wanted = " or ".join(str(d) for d in dtypes)
            raise ValueError(f"{name} must have shape {tuple(shape)} and dtype {wanted}, got "
                             f"{tuple(array.shape)} and {array.dtype}")


def _matrix(name, array):
    if len(array.shape) != 2:
        raise ValueError(f"{name} must be 2-D (rows, columns), got shape {tuple(array.shape)}")
    return array.shape


def _check_normalizer(normalizer):
    normalizer = float(normalizer)
    if not normalizer > 0:
        raise ValueError(f"normalizer must be positive, got {normalizer}")
    return normalizer


# --------------------------------------------------------------------------- kernels


@cached_factory
def _squared_rows_kernel(block):
    def kernel(pred, target, weights, partials):
        shared = cuda.shared.array(block, dtype=float64)
        tid = cuda.threadIdx.x
        outputs = pred.shape[1]
        total = float64(0.0)
        for r in range(cuda.blockIdx.x * block + tid, pred.shape[0], cuda.gridDim.x * block):
            w = weights[r]
            if w != 0.0:
                squares = float64(0.0)
                for o in range(outputs):
                    d = float64(pred[r, o] - target[r, o])  # the difference in the dtype
                    squares += d * d
                total += w * (0.5 * squares / outputs)
        shared[tid] = total
        _reduce.block_sum_into(partials, shared, tid, block)

    return cuda.jit(kernel)


@cached_factory
def _squared_grad_kernel(dtype):
    dt = numba_type(dtype)

    def kernel(pred, target, weights, denominator, grad):
        idx = cuda.grid(1)
        outputs = grad.shape[1]
        if idx < grad.shape[0] * outputs:
            r = idx // outputs
            o = idx - r * outputs
            w = weights[r]
            if w == 0.0:
                grad[r, o] = dt(0.0)
            else:
                d = float64(pred[r, o] - target[r, o])
                grad[r, o] = dt((w / denominator) * d)

    return cuda.jit(kernel)


@cached_factory
def _softmax_rows_kernel(block, dtype):
    dt = numba_type(dtype)

    def kernel(logits, labels, weights, row_stats, partials):
        shared = cuda.shared.array(block, dtype=float64)
        tid = cuda.threadIdx.x
        classes = logits.shape[1]
        total = float64(0.0)
        for r in range(cuda.blockIdx.x * block + tid, logits.shape[0], cuda.gridDim.x * block):
            w = weights[r]
            if w != 0.0:
                top = logits[r, 0]
                for c in range(1, classes):
                    if logits[r, c] > top:
                        top = logits[r, c]
                sum_exp = float64(0.0)
                for c in range(classes):
                    sum_exp += float64(dt(math.exp(logits[r, c] - top)))  # exp in the dtype
                row_stats[r, 0] = float64(top)
                row_stats[r, 1] = sum_exp
                total += w * (math.log(sum_exp) - float64(logits[r, labels[r]] - top))
        shared[tid] = total
        _reduce.block_sum_into(partials, shared, tid, block)

    return cuda.jit(kernel)


@cached_factory
def _softmax_grad_kernel(dtype):
    dt = numba_type(dtype)

    def kernel(logits, labels, weights, normalizer, row_stats, grad):
        idx = cuda.grid(1)
        classes = grad.shape[1]
        if idx < grad.shape[0] * classes:
            r = idx // classes
            c = idx - r * classes
            w = weights[r]
            if w == 0.0:
                grad[r, c] = dt(0.0)
            else:
                e = dt(math.exp(logits[r, c] - dt(row_stats[r, 0])))
                p = float64(e) / row_stats[r, 1]
                if c == labels[r]:
                    p -= 1.0
                grad[r, c] = dt((w / normalizer) * p)

    return cuda.jit(kernel)


def _launch(size):
    block = _jit.ELEMENTWISE_BLOCK
    return blocks(size, block), block


# --------------------------------------------------------------------------- launchers


@on_device(outputs=(4, 5))
def squared_error(pred, target, weights, normalizer, grad, loss):
    """Weighted half mean squared error and its gradient.

    Parameters
    ----------
    pred, target : device arrays, shape (R, O)
        Predictions and targets (float32 or float64, one dtype).
    weights : device array of float64, shape (R,)
        Row weights (0 leaves a row out).
    normalizer : float
        Positive divisor of the weighted sum.
    grad : device array, shape (R, O), the dtype of ``pred``
        Written: ``weights[r] / (O * normalizer) * (pred - target)``.
    loss : device array of float64, shape (1,)
        Written on the device: ``sum_r weights[r] * 0.5 * mean_o (pred - target)^2 /
        normalizer``.

    Raises
    ------
    ValueError
        If a shape or dtype does not fit, or ``normalizer`` is not positive.
    """
    rows, outputs = _matrix("pred", pred)
    dtype = np.dtype(pred.dtype)
    _check({"pred": (pred, (rows, outputs), _FLOATS),
            "target": (target, (rows, outputs), (dtype,)),
            "weights": (weights, (rows,), _F64), "grad": (grad, (rows, outputs), (dtype,)),
            "loss": (loss, (1,), _F64)})
    normalizer = _check_normalizer(normalizer)
    grid, block = _reduce.geometry(rows)
    sums = _reduce.partials(grid)
    _squared_rows_kernel(block)[grid, block](pred, target, weights, sums)
    _reduce.finish(sums, loss, 0, _reduce.OP_DIV, normalizer)
    if grad.size:
        _squared_grad_kernel(dtype.str)[_launch(grad.size)](pred, target, weights,
                                                            outputs * normalizer, grad)


@on_device(outputs=(4, 5))
def softmax_cross_entropy(logits, labels, weights, normalizer, grad, loss):
    """Weighted softmax cross-entropy against integer labels and its gradient.

    Parameters
    ----------
    logits : device array, shape (R, C)
        Unnormalised log-probabilities (float32 or float64), ``C >= 1``.
    labels : device array of int64, shape (R,)
        Classes in ``0..C-1`` (not checked).
    weights : device array of float64, shape (R,)
        Row weights (0 leaves a row out).
    normalizer : float
        Positive divisor of the weighted sum.
    grad : device array, shape (R, C), the dtype of ``logits``
        Written: ``weights[r] * (softmax(logits[r]) - onehot(labels[r])) / normalizer``.
    loss : device array of float64, shape (1,)
        Written on the device: ``-sum_r weights[r] * log softmax(logits[r])[labels[r]] /
        normalizer``.

    Raises
    ------
    ValueError
        If a shape or dtype does not fit, there is no class, or ``normalizer`` is not
        positive.
    """
    rows, classes = _matrix("logits", logits)
    dtype = np.dtype(logits.dtype)
    _check({"logits": (logits, (rows, classes), _FLOATS), "labels": (labels, (rows,), _INT64),
            "weights": (weights, (rows,), _F64), "grad": (grad, (rows, classes), (dtype,)),
            "loss": (loss, (1,), _F64)})
    if classes < 1:
        raise ValueError(f"logits must have at least one class column, got shape "
                         f"{(rows, classes)}")
    normalizer = _check_normalizer(normalizer)
    grid, block = _reduce.geometry(rows)
    sums = _reduce.partials(grid)
    row_stats = _jit.workspace((max(rows, 1), 2), np.float64, "softmax row statistics")
    _softmax_rows_kernel(block, dtype.str)[grid, block](logits, labels, weights, row_stats,
                                                        sums)
    _reduce.finish(sums, loss, 0, _reduce.OP_DIV, normalizer)
    if grad.size:
        _softmax_grad_kernel(dtype.str)[_launch(grad.size)](logits, labels, weights,
                                                            normalizer, row_stats, grad)
