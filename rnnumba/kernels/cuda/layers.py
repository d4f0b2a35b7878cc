"""The dense head and pooling over steps on the GPU: the same functions and signatures as
:mod:`rnnumba.kernels.cpu.layers` (whose docstring states the contract).

The dense layer runs on the tiled GEMM of :mod:`.common` (and its deterministic column
sums). Pooling uses one thread per feature ``(n, w)`` for LAST, MEAN and MAX, looping over
the steps in order (consecutive threads read consecutive columns); attention adds a score
kernel (one thread per ``(t, n)``) and a softmax kernel (one thread per row ``n``). The
backward pass writes ``grad_out`` with one thread per element; for attention, a kernel per
``(t, n)`` and one per row build ``ds`` in a workspace, and ``grad_attention`` takes one
thread per column ``w`` summing over ``n`` then ``t``. Every sum has the CPU kernel's
order and no atomics are used, so results are deterministic.

The launchers take device arrays (host NumPy arrays too, copied in and out) and check
shapes and dtypes before a launch; ``lengths`` values are not checked (the caller validates
them).
"""

import math

import numpy as np
from numba import cuda

from ..modes import POOL_ATTENTION, POOL_LAST, POOL_MAX, POOL_MEAN
from . import _jit
from ._jit import blocks, cached_factory, numba_type, on_device
from .common import column_sums, gemm

__all__ = ["POOL_LAST", "POOL_MEAN", "POOL_MAX", "POOL_ATTENTION", "dense_forward",
           "dense_backward", "pool_forward", "pool_backward"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_INT64 = (np.dtype(np.int64),)


def _check(named):
    """Shapes and dtypes before a launch: ``{name: (array, shape, dtypes)}``; a shape may
    hold None for "any length" along that axis."""
    for name, (array, shape, dtypes) in named.items():
        fits = len(array.shape) == len(shape) and all(
            want is None or got == want for got, want in zip(array.shape, shape))
        if not fits or np.dtype(array.dtype) not in dtypes:
            wanted = " or ".join(str(d) for d in dtypes)
            shown = tuple("any" if s is None else s for s in shape)
            raise ValueError(f"{name} must have shape {shown} and dtype {wanted}, got "
                             f"{tuple(array.shape)} and {array.dtype}")


def _ndim(name, array, ndim):
    if len(array.shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(array.shape)}")


def _launch(size):
    block = _jit.ELEMENTWISE_BLOCK
    return blocks(size, block), block


# --------------------------------------------------------------------------- dense


@on_device(outputs=(3,))
def dense_forward(x, weight, bias, out):
    """Write ``out = x @ weight.T + bias`` (one GEMM launch).

    Parameters
    ----------
    x : device array, shape (R, I)
        Input rows (float32 or float64).
    weight : device array, shape (O, I)
        Weights in PyTorch's ``nn.Linear`` layout.
    bias : device array, shape (O,)
        Bias.
    out : device array, shape (R, O)
        Written.

    Raises
    ------
    ValueError
        If a shape or dtype does not fit.
    """
    _ndim("x", x, 2)
    _ndim("weight", weight, 2)
    rows, features = x.shape
    width = weight.shape[0]
    dtype = (np.dtype(x.dtype),)
    _check({"x": (x, (rows, features), _FLOATS), "weight": (weight, (width, features), dtype),
            "bias": (bias, (width,), dtype), "out": (out, (rows, width), dtype)})
    gemm(x, weight, out, trans_b=True, bias=bias)


@on_device(outputs=(3, 4, 5))
def dense_backward(x, weight, grad_out, grad_weight, grad_bias, grad_x):
    """Add the weight and bias gradients of a dense layer; write its input gradient.

    Parameters
    ----------
    x : device array, shape (R, I)
        The input of the forward pass (float32 or float64).
    weight : device array, shape (O, I)
        Weights.
    grad_out : device array, shape (R, O)
        Gradient with respect to the output.
    grad_weight : device array, shape (O, I)
        Added into: ``grad_out.T @ x``.
    grad_bias : device array, shape (O,)
        Added into: the column sums of ``grad_out`` (rows in order).
    grad_x : device array, shape (R, I), or None
        Written: ``grad_out @ weight``; None skips that GEMM.

    Raises
    ------
    ValueError
        If a shape or dtype does not fit.
    """
    _ndim("x", x, 2)
    _ndim("weight", weight, 2)
    rows, features = x.shape
    width = weight.shape[0]
    dtype = (np.dtype(x.dtype),)
    named = {"x": (x, (rows, features), _FLOATS), "weight": (weight, (width, features), dtype),
             "grad_out": (grad_out, (rows, width), dtype),
             "grad_weight": (grad_weight, (width, features), dtype),
             "grad_bias": (grad_bias, (width,), dtype)}
    if grad_x is not None:
        named["grad_x"] = (grad_x, (rows, features), dtype)
    _check(named)
    if rows:
        gemm(grad_out, x, grad_weight, trans_a=True, accumulate=True)
    column_sums(grad_out, grad_bias)
    if grad_x is not None:
        gemm(grad_out, weight, grad_x)


# --------------------------------------------------------------------------- pooling kernels


@cuda.jit
def _put_columns_kernel(src, dst, col):
    i = cuda.grid(1)
    width = src.shape[1]
    if i < src.shape[0] * width:
        r = i // width
        dst[r, col + i - r * width] = src[r, i - r * width]


@cuda.jit
def _take_columns_kernel(src, col, dst):
    i = cuda.grid(1)
    width = dst.shape[1]
    if i < dst.shape[0] * width:
        r = i // width
        dst[r, i - r * width] = src[r, col + i - r * width]


@on_device(outputs=(1,))
def put_columns(src, dst, col):
    """``dst[:, col:col+W] = src`` for ``src`` ``(R, W)`` (see the CPU twin)."""
    _ndim("src", src, 2)
    _ndim("dst", dst, 2)
    if (src.shape[0] != dst.shape[0] or not 0 <= col <= dst.shape[1] - src.shape[1]
            or src.dtype != dst.dtype):
        raise ValueError(f"src {tuple(src.shape)} {src.dtype} does not fit columns {col}: of "
                         f"dst {tuple(dst.shape)} {dst.dtype}")
    if src.size:
        _put_columns_kernel[_launch(src.size)](src, dst, col)


@on_device(outputs=(2,))
def take_columns(src, col, dst):
    """``dst = src[:, col:col+W]`` for ``dst`` ``(R, W)`` (see the CPU twin)."""
    _ndim("src", src, 2)
    _ndim("dst", dst, 2)
    if (src.shape[0] != dst.shape[0] or not 0 <= col <= src.shape[1] - dst.shape[1]
            or src.dtype != dst.dtype):
        raise ValueError(f"dst {tuple(dst.shape)} {dst.dtype} does not fit columns {col}: of "
                         f"src {tuple(src.shape)} {src.dtype}")
    if dst.size:
        _take_columns_kernel[_launch(dst.size)](src, col, dst)


@cached_factory
def _pool_features_kernel(dtype):
    """LAST, MEAN and MAX: one thread per feature ``(n, w)``."""
    dt = numba_type(dtype)

    def kernel(mode, out, lengths, hidden, features, argmax):
        idx = cuda.grid(1)
        batch = out.shape[1]
        width = out.shape[2]
        if idx < batch * width:
            n = idx // width
            w = idx - n * width
            length = lengths[n]
            if length == 0:
                features[n, w] = dt(0.0)
                if mode != POOL_MEAN:
                    argmax[n, w] = -1
            elif mode == POOL_LAST:
                t = length - 1 if w < hidden else 0
                features[n, w] = out[t, n, w]
                argmax[n, w] = t
            elif mode == POOL_MEAN:
                total = out[0, n, w]
                for t in range(1, length):
                    total += out[t, n, w]
                features[n, w] = total / dt(length)
            else:
                best = out[0, n, w]
                arg = 0
                for t in range(1, length):
                    value = out[t, n, w]
                    if value > best:
                        best = value
                        arg = t
                features[n, w] = best
                argmax[n, w] = arg

    return cuda.jit(kernel)


@cached_factory
def _mean_weights_kernel(dtype):
    """MEAN: ``step_weights[t, n] = 1 / len`` for ``t < len``, else 0."""
    dt = numba_type(dtype)

    def kernel(lengths, step_weights):
        idx = cuda.grid(1)
        batch = step_weights.shape[1]
        if idx < step_weights.shape[0] * batch:
            t = idx // batch
            n = idx - t * batch
            length = lengths[n]
            if t < length:
                step_weights[t, n] = dt(1.0) / dt(length)
            else:
                step_weights[t, n] = dt(0.0)

    return cuda.jit(kernel)


@cached_factory
def _score_kernel(dtype):
    """ATTENTION: ``step_weights[t, n] = out[t, n] . attention`` (0 past the row's end)."""
    dt = numba_type(dtype)

    def kernel(out, lengths, attention, step_weights):
        idx = cuda.grid(1)
        batch = out.shape[1]
        width = out.shape[2]
        if idx < out.shape[0] * batch:
            t = idx // batch
            n = idx - t * batch
            score = dt(0.0)
            if t < lengths[n]:
                for w in range(width):
                    score += out[t, n, w] * attention[w]
            step_weights[t, n] = score

    return cuda.jit(kernel)


@cached_factory
def _softmax_steps_kernel(dtype):
    """ATTENTION: the scores of row ``n`` (``t < len``) replaced by their softmax, shifted by
    the row maximum; one thread per row."""
    dt = numba_type(dtype)

    def kernel(lengths, step_weights):
        n = cuda.grid(1)
        if n < step_weights.shape[1]:
            length = lengths[n]
            if length > 0:
                top = step_weights[0, n]
                for t in range(1, length):
                    if step_weights[t, n] > top:
                        top = step_weights[t, n]
                total = dt(0.0)
                for t in range(length):
                    e = dt(math.exp(step_weights[t, n] - top))
                    step_weights[t, n] = e
                    total += e
                for t in range(length):
                    step_weights[t, n] = step_weights[t, n] / total

    return cuda.jit(kernel)


@cached_factory
def _attention_features_kernel(dtype):
    """ATTENTION: ``features[n, w] = sum_t a[t, n] out[t, n, w]``, one thread per ``(n, w)``."""
    dt = numba_type(dtype)

    def kernel(out, lengths, step_weights, features):
        idx = cuda.grid(1)
        batch = out.shape[1]
        width = out.shape[2]
        if idx < batch * width:
            n = idx // width
            w = idx - n * width
            length = lengths[n]
            if length == 0:
                features[n, w] = dt(0.0)
            else:
                total = step_weights[0, n] * out[0, n, w]
                for t in range(1, length):
                    total += step_weights[t, n] * out[t, n, w]
                features[n, w] = total

    return cuda.jit(kernel)


@cached_factory
def _pool_grad_kernel(dtype):
    """LAST, MAX and MEAN backward: one thread per element of ``grad_out``."""
    dt = numba_type(dtype)

    def kernel(mode, lengths, step_weights, argmax, grad_features, grad_out):
        idx = cuda.grid(1)
        batch = grad_out.shape[1]
        width = grad_out.shape[2]
        if idx < grad_out.shape[0] * batch * width:
            rest = idx // width
            w = idx - rest * width
            t = rest // batch
            n = rest - t * batch
            value = dt(0.0)
            if mode == POOL_MEAN:
                if t < lengths[n]:
                    value = grad_features[n, w] * step_weights[t, n]
            elif argmax[n, w] == t:
                value = grad_features[n, w]
            grad_out[t, n, w] = value

    return cuda.jit(kernel)


@cached_factory
def _attention_dots_kernel(dtype):
    """ATTENTION backward: ``ds[t, n] = grad_features[n] . out[t, n]`` (0 past the end)."""
    dt = numba_type(dtype)

    def kernel(out, lengths, grad_features, ds):
        idx = cuda.grid(1)
        batch = out.shape[1]
        width = out.shape[2]
        if idx < out.shape[0] * batch:
            t = idx // batch
            n = idx - t * batch
            g = dt(0.0)
            if t < lengths[n]:
                for w in range(width):
                    g += grad_features[n, w] * out[t, n, w]
            ds[t, n] = g

    return cuda.jit(kernel)


@cuda.jit
def _attention_scores_grad_kernel(lengths, step_weights, ds):
    """ATTENTION backward: ``ds[t, n] = a (g - sum_t' a g)`` in place, one thread per row."""
    n = cuda.grid(1)
    if n < ds.shape[1]:
        length = lengths[n]
        if length > 0:
            mean = step_weights[0, n] * ds[0, n]
            for t in range(1, length):
                mean += step_weights[t, n] * ds[t, n]
            for t in range(length):
                ds[t, n] = step_weights[t, n] * (ds[t, n] - mean)


@cached_factory
def _attention_grad_kernel(dtype):
    """ATTENTION backward: ``grad_out[t, n, w] = a grad_features[n, w] + ds attention[w]``."""
    dt = numba_type(dtype)

    def kernel(lengths, attention, step_weights, ds, grad_features, grad_out):
        idx = cuda.grid(1)
        batch = grad_out.shape[1]
        width = grad_out.shape[2]
        if idx < grad_out.shape[0] * batch * width:
            rest = idx // width
            w = idx - rest * width
            t = rest // batch
            n = rest - t * batch
            value = dt(0.0)
            if t < lengths[n]:
                value = step_weights[t, n] * grad_features[n, w] + ds[t, n] * attention[w]
            grad_out[t, n, w] = value

    return cuda.jit(kernel)


@cached_factory
def _attention_vector_grad_kernel(dtype):
    """ATTENTION backward: ``grad_attention[w] += sum_n sum_{t < len} ds[t, n] out[t, n, w]``,
    one thread per column."""
    dt = numba_type(dtype)

    def kernel(out, lengths, ds, grad_attention):
        w = cuda.grid(1)
        if w < out.shape[2]:
            total = dt(0.0)
            for n in range(out.shape[1]):
                for t in range(lengths[n]):
                    total += ds[t, n] * out[t, n, w]
            grad_attention[w] += total

    return cuda.jit(kernel)


# --------------------------------------------------------------------------- pooling launchers


def _check_pool(mode, out, lengths, directions, attention, step_weights, argmax):
    """The checks shared by both pooling launchers; returns ``(steps, batch, width)``."""
    if mode not in (POOL_LAST, POOL_MEAN, POOL_MAX, POOL_ATTENTION):
        raise ValueError(f"unknown pooling mode {mode!r}")
    _ndim("out", out, 3)
    steps, batch, width = out.shape
    if directions not in (1, 2) or width % directions:
        raise ValueError(f"directions must be 1 or 2 and divide the output width {width}, "
                         f"got {directions!r}")
    dtype = (np.dtype(out.dtype),)
    weighted = mode in (POOL_MEAN, POOL_ATTENTION)
    _check({"out": (out, (steps, batch, width), _FLOATS), "lengths": (lengths, (batch,), _INT64),
            "attention": (attention, (width,) if mode == POOL_ATTENTION else (None,), dtype),
            "step_weights": (step_weights, (steps, batch) if weighted else (None, None), dtype),
            "argmax": (argmax, (None, None) if weighted else (batch, width), _INT64)})
    return steps, batch, width


@on_device(outputs=(5, 6, 7))
def pool_forward(mode, out, lengths, directions, attention, features, step_weights, argmax):
    """Pool a time-major recurrent output over each row's steps.

    Parameters
    ----------
    mode : int
        ``POOL_LAST``, ``POOL_MEAN``, ``POOL_MAX`` or ``POOL_ATTENTION``.
    out : device array, shape (T, N, W)
        Recurrent output (float32 or float64), ``W = directions * H``.
    lengths : device array of int64, shape (N,)
        Steps used per row, in ``0..T`` (not checked).
    directions : int
        1, or 2 when columns ``H:2H`` are a reverse direction.
    attention : device array, shape (W,)
        Scoring vector of ``POOL_ATTENTION`` (any 1-D placeholder of the dtype otherwise).
    features : device array, shape (N, W)
        Written.
    step_weights : device array, shape (T, N)
        Written by MEAN and ATTENTION (any 2-D placeholder of the dtype otherwise).
    argmax : device array of int64, shape (N, W)
        Written by LAST and MAX (any 2-D int64 placeholder otherwise).

    Raises
    ------
    ValueError
        If the mode, ``directions``, a shape or a dtype does not fit.
    """
    steps, batch, width = _check_pool(mode, out, lengths, directions, attention, step_weights,
                                      argmax)
    _check({"features": (features, (batch, width), (np.dtype(out.dtype),))})
    key = np.dtype(out.dtype).str
    if mode in (POOL_MEAN, POOL_ATTENTION) and steps * batch:
        if mode == POOL_MEAN:
            _mean_weights_kernel(key)[_launch(steps * batch)](lengths, step_weights)
        else:
            _score_kernel(key)[_launch(steps * batch)](out, lengths, attention, step_weights)
            _softmax_steps_kernel(key)[_launch(batch)](lengths, step_weights)
    if batch * width == 0:
        return
    if mode == POOL_ATTENTION:
        _attention_features_kernel(key)[_launch(batch * width)](out, lengths, step_weights,
                                                                features)
    else:
        _pool_features_kernel(key)[_launch(batch * width)](
            int(mode), out, lengths, width // directions, features, argmax)


@on_device(outputs=(8, 9))
def pool_backward(mode, out, lengths, directions, attention, step_weights, argmax,
                  grad_features, grad_out, grad_attention):
    """Gradient of :func:`pool_forward` with respect to ``out`` (and ``attention``).

    Parameters
    ----------
    mode, out, lengths, directions, attention :
        As given to :func:`pool_forward`.
    step_weights, argmax : device arrays
        As written by :func:`pool_forward` (placeholders where the mode does not use them).
    grad_features : device array, shape (N, W)
        Gradient with respect to the pooled features.
    grad_out : device array, shape (T, N, W)
        Written in full (zeros where no gradient flows).
    grad_attention : device array, shape (W,)
        ``POOL_ATTENTION``: added into. Any 1-D placeholder of the dtype otherwise.

    Raises
    ------
    ValueError
        If the mode, ``directions``, a shape or a dtype does not fit.
    """
    steps, batch, width = _check_pool(mode, out, lengths, directions, attention, step_weights,
                                      argmax)
    dtype = (np.dtype(out.dtype),)
    scored = mode == POOL_ATTENTION
    _check({"grad_features": (grad_features, (batch, width), dtype),
            "grad_out": (grad_out, (steps, batch, width), dtype),
            "grad_attention": (grad_attention, (width,) if scored else (None,), dtype)})
    key = np.dtype(out.dtype).str
    if not scored:
        if grad_out.size:
            _pool_grad_kernel(key)[_launch(grad_out.size)](int(mode), lengths, step_weights,
                                                           argmax, grad_features, grad_out)
        return
    if steps * batch == 0:
        return
    ds = _jit.workspace((steps, batch), out.dtype, "attention score gradients")
    _attention_dots_kernel(key)[_launch(steps * batch)](out, lengths, grad_features, ds)
    _attention_scores_grad_kernel[_launch(batch)](lengths, step_weights, ds)
    if grad_out.size:
        _attention_grad_kernel(key)[_launch(grad_out.size)](lengths, attention, step_weights,
                                                            ds, grad_features, grad_out)
        _attention_vector_grad_kernel(key)[_launch(width)](out, lengths, ds, grad_attention)
