"""The embedding input layer on the GPU: the same functions and signatures as
:mod:`rnnumba.kernels.cpu.embedding` (whose docstring states the contract).

``embedding_forward`` runs one thread per element of ``out``; ``embedding_backward`` one
thread per element of ``grad_weight``, which sums its id's rows of ``grad_out`` in the
order given by ``order`` and adds the total once: no atomics, so the result is the same on
every run and equals the CPU kernel's bit for bit. Consecutive threads take consecutive
columns, so each warp reads whole rows of ``weight`` and ``grad_out``.

The launchers take device arrays (host NumPy arrays too, copied in and out) and check
shapes and dtypes before a launch; the ids, ``order`` and ``bounds`` are not checked (the
caller builds them with :func:`rnnumba.kernels.cpu.embedding.embedding_index` from
validated ids). ``embedding_index`` itself is a host helper and lives on the CPU side only.
"""

import numpy as np
from numba import cuda

from . import _jit
from ._jit import blocks, on_device

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_INT64 = np.dtype(np.int64)


def _check(named):
    """Shapes and dtypes before a launch: ``{name: (array, shape, dtypes)}``."""
    for name, (array, shape, dtypes) in named.items():
        if tuple(array.shape) != tuple(shape) or np.dtype(array.dtype) not in dtypes:
            wanted = " or ".join(str(d) for d in dtypes)
            raise ValueError(f"{name} must have shape {tuple(shape)} and dtype {wanted}, got "
                             f"{tuple(array.shape)} and {array.dtype}")


def _check_ndim(named):
    for name, (array, ndim) in named.items():
        if len(array.shape) != ndim:
            raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(array.shape)}")


@cuda.jit
def _forward_kernel(ids, weight, out):
    """``out[t, n, e] = weight[ids[t, n], e]``, one thread per element of ``out``."""
    idx = cuda.grid(1)
    batch = out.shape[1]
    width = out.shape[2]
    if idx < out.shape[0] * batch * width:
        r = idx // width
        e = idx - r * width
        t = r // batch
        n = r - t * batch
        out[t, n, e] = weight[ids[t, n], e]


@cuda.jit
def _backward_kernel(order, bounds, grad_out, grad_weight):
    """``grad_weight[v, e] += sum of grad_out rows order[bounds[v]:bounds[v+1]]`` at column
    ``e``, left to right; one thread per element of ``grad_weight``."""
    idx = cuda.grid(1)
    batch = grad_out.shape[1]
    width = grad_weight.shape[1]
    if idx < grad_weight.shape[0] * width:
        v = idx // width
        e = idx - v * width
        first = bounds[v]
        last = bounds[v + 1]
        if first < last:
            r = order[first]
            t = r // batch
            total = grad_out[t, r - t * batch, e]
            for k in range(first + 1, last):
                r = order[k]
                t = r // batch
                total += grad_out[t, r - t * batch, e]
            grad_weight[v, e] += total


@on_device(outputs=(2,))
def embedding_forward(ids, weight, out):
    """Look up the embedding of every position: ``out[t, n] = weight[ids[t, n]]``.

    Parameters
    ----------
    ids : device array of int64, shape (T, N)
        Token ids in ``0..V-1`` (not checked).
    weight : device array of float32 or float64, shape (V, E)
        The embedding table.
    out : device array, shape (T, N, E), the dtype of ``weight``
        Written in full.

    Raises
    ------
    ValueError
        If a shape or dtype does not fit.
    """
    _check_ndim({"ids": (ids, 2), "weight": (weight, 2)})
    steps, batch = ids.shape
    vocab, width = weight.shape
    _check({"ids": (ids, (steps, batch), (_INT64,)),
            "weight": (weight, (vocab, width), _FLOATS),
            "out": (out, (steps, batch, width), (np.dtype(weight.dtype),))})
    if out.size:
        block = _jit.ELEMENTWISE_BLOCK
        _forward_kernel[blocks(out.size, block), block](ids, weight, out)


@on_device(outputs=(3,))
def embedding_backward(order, bounds, grad_out, grad_weight):
    """Add the gradient of the embedding table: a deterministic sorted segment sum.

    Parameters
    ----------
    order : device array of int64, shape (K,)
        Flat rows ``t*N + n`` of ``grad_out`` grouped by token id, ``K <= T*N`` (contents
        not checked).
    bounds : device array of int64, shape (V+1,)
        ``order[bounds[v]:bounds[v+1]]`` holds the rows of id ``v`` (not checked).
    grad_out : device array of float32 or float64, shape (T, N, E)
        Gradient with respect to the looked-up embeddings.
    grad_weight : device array, shape (V, E), the dtype of ``grad_out``
        Added into: row ``v`` gets the sum, in ``order``, of its rows of ``grad_out``.

    Raises
    ------
    ValueError
        If a shape or dtype does not fit, or ``order`` is longer than ``T*N``.
    """
    _check_ndim({"order": (order, 1), "grad_out": (grad_out, 3),
                 "grad_weight": (grad_weight, 2)})
    steps, batch, width = grad_out.shape
    vocab = grad_weight.shape[0]
    occurrences = order.shape[0]
    _check({"order": (order, (occurrences,), (_INT64,)),
            "bounds": (bounds, (vocab + 1,), (_INT64,)),
            "grad_out": (grad_out, (steps, batch, width), _FLOATS),
            "grad_weight": (grad_weight, (vocab, width), (np.dtype(grad_out.dtype),))})
    if occurrences > steps * batch:
        raise ValueError(f"order has {occurrences} entries, more than the {steps * batch} "
                         f"rows of grad_out {(steps, batch, width)}")
    if occurrences and grad_weight.size:
        block = _jit.ELEMENTWISE_BLOCK
        _backward_kernel[blocks(grad_weight.size, block), block](order, bounds, grad_out,
                                                                 grad_weight)
