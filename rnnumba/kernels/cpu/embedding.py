"""The embedding input layer on the CPU: lookup forward and a deterministic backward.

Two functions with the same names and signatures as their CUDA twins in
:mod:`rnnumba.kernels.cuda.embedding`::

    embedding_forward(ids, weight, out)                           # out[t, n] = weight[ids[t, n]]
    embedding_backward(order, bounds, grad_out, grad_weight)      # grad_weight += ...

Conventions (one float dtype per call, float32 or float64):

- ``ids`` is ``int64 (T, N)`` with values in ``0..V-1``, ``weight`` is ``(V, E)``, ``out``
  and ``grad_out`` are ``(T, N, E)``. The caller validates the ids; the kernels do not
  check bounds.
- The backward pass is a sorted segment sum, not a scatter: ``order`` (``int64 (K,)``)
  lists the flat rows ``r = t*N + n`` of ``grad_out`` that take part (padding rows left
  out, so ``K <= T*N``), grouped by token id ascending and by position ascending within an
  id; ``bounds`` (``int64 (V+1,)``) delimits each id's slice of ``order``
  (:func:`rnnumba.inputs.embedding_index` builds both from host ids). Then ::

      grad_weight[v] += grad_out_rows[order[lo]] + grad_out_rows[order[lo+1]] + ...

  summed left to right over ``lo = bounds[v]`` to ``bounds[v+1] - 1`` and added once, so
  the result is bitwise identical on every run, at every thread count and on the CUDA
  simulator. Rows of ``grad_weight`` with no occurrence are left untouched.
- On the CPU, ``ids``, ``out`` and ``grad_out`` may have any strides (e.g. the time-major
  view ``a.transpose(1, 0, 2)`` of a batch-major array); ``weight``, ``grad_weight``,
  ``order`` and ``bounds`` are C-contiguous.

The backward pass splits the vocabulary over threads when it has enough work: each thread
owns whole rows of ``grad_weight`` and sums each of them alone, so the split changes which
thread computes a row, never how.
"""

import numpy as np

from . import _threads
from ._jit import kernel

#: Fewest additions (occurrences times embedding width) a thread's share of the backward
#: pass gets; smaller passes run on the calling thread alone. A hand-off to another thread
#: costs tens of microseconds, as much as summing a few hundred thousand numbers.
BACKWARD_MIN_BLOCK_WORK = 1 << 21


def embedding_forward(ids, weight, out):
    """Look up the embedding of every position: ``out[t, n] = weight[ids[t, n]]``.

    Parameters
    ----------
    ids : ndarray of int64, shape (T, N)
        Token ids in ``0..V-1`` (not checked).
    weight : ndarray of float32 or float64, shape (V, E)
        The embedding table.
    out : ndarray, shape (T, N, E), the dtype of ``weight``
        Written in full.
    """
    if out.size:
        _forward(ids, weight, out)


def embedding_backward(order, bounds, grad_out, grad_weight):
    """Add the gradient of the embedding table: a deterministic sorted segment sum.

    Parameters
    ----------
    order : ndarray of int64, shape (K,)
        Flat rows ``t*N + n`` of ``grad_out`` grouped by token id (see
        :func:`rnnumba.inputs.embedding_index`), ``K <= T*N``.
    bounds : ndarray of int64, shape (V+1,)
        ``order[bounds[v]:bounds[v+1]]`` holds the rows of id ``v``.
    grad_out : ndarray of float32 or float64, shape (T, N, E)
        Gradient with respect to the looked-up embeddings.
    grad_weight : ndarray, shape (V, E), the dtype of ``grad_out``
        Added into: row ``v`` gets the sum, in ``order``, of its rows of ``grad_out``.
    """
    occurrences = order.shape[0]
    vocab, width = grad_weight.shape
    if occurrences == 0 or vocab == 0 or width == 0:
        return
    args = (order, bounds, grad_out, grad_weight)
    work = occurrences * width
    if work < 2 * BACKWARD_MIN_BLOCK_WORK:
        _backward_rows(*args, 0, vocab)
        return
    with _threads.single_threaded_blas() as threads:
        blocks = vocabulary_blocks(bounds, min(threads, work // BACKWARD_MIN_BLOCK_WORK))
        if len(blocks) > 1 and _threads.prange_loops():
            _threads.run_in_prange(_backward_rows, blocks, args)
        else:
            _threads.run_blocks(lambda start, stop: _backward_rows(*args, start, stop),
                                blocks)


def vocabulary_blocks(bounds, count):
    """Split the vocabulary into at most ``count`` blocks of about equal occurrences.

    Parameters
    ----------
    bounds : ndarray of int64, shape (V+1,)
        As for :func:`embedding_backward`.
    count : int
        Blocks wanted (threads).

    Returns
    -------
    list of (int, int)
        ``[(start, stop), ...]``: vocabulary rows ``start:stop``, in order, each with at
        least one occurrence; together they cover every row that has one. A block ends at
        the first id whose slice starts at or past its share of ``order``.
    """
    vocab = bounds.shape[0] - 1
    total = int(bounds[-1])
    count = max(1, min(int(count), total))
    targets = [total * j // count for j in range(1, count)]
    cuts = [0] + [int(c) for c in np.searchsorted(bounds, targets, side="left")] + [vocab]
    return [(start, stop) for start, stop in zip(cuts[:-1], cuts[1:])
            if start < stop and bounds[stop] > bounds[start]]


@kernel
def _forward(ids, weight, out):
    steps, batch = ids.shape
    width = weight.shape[1]
    for t in range(steps):
        for n in range(batch):
            src = weight[ids[t, n]]
            dst = out[t, n]
            for e in range(width):
                dst[e] = src[e]


@kernel
def _backward_rows(order, bounds, grad_out, grad_weight, start, stop):
    """Rows ``start:stop`` of ``grad_weight`` (see :func:`embedding_backward`)."""
    batch = grad_out.shape[1]
    width = grad_weight.shape[1]
    total = np.empty(width, dtype=grad_weight.dtype)
    for v in range(start, stop):
        first = bounds[v]
        last = bounds[v + 1]
        if first >= last:
            continue
        r = order[first]
        t = r // batch
        src = grad_out[t, r - t * batch]
        for e in range(width):
            total[e] = src[e]
        for k in range(first + 1, last):
            r = order[k]
            t = r // batch
            src = grad_out[t, r - t * batch]
            for e in range(width):
                total[e] += src[e]
        dst = grad_weight[v]
        for e in range(width):
            dst[e] += total[e]
