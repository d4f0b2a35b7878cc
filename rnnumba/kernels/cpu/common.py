"""GEMM phases shared by every cell on the CPU.

The ``T*N`` rows are split into blocks, one per thread (see ``_threads``), each running
single-threaded BLAS through ``np.matmul``, which releases the GIL (SciPy's f2py BLAS
wrappers hold it, so their calls from several threads ran one after another).
"""

import numpy as np

from . import _threads
from ._threads import row_blocks, run_blocks, single_threaded_blas

#: Rows per product when adding into the input gradient: bounds the buffer of each thread.
_INPUT_GRAD_ROWS = 1024


def project_input(x, w_ih, b_ih, proj):
    """``proj = x @ w_ih.T + b_ih`` over all ``T*N`` rows (one GEMM, split by rows)."""
    rows = x.shape[0] * x.shape[1]
    x2 = x.reshape(rows, x.shape[2])
    flat = proj.reshape(rows, proj.shape[2])

    def block(start, stop):
        np.matmul(x2[start:stop], w_ih.T, out=flat[start:stop])
        flat[start:stop] += b_ih

    _split_rows(block, rows, x.shape[2] * proj.shape[2])


def weight_gradients(x, out, col, h0, lengths, reverse, d_ih, d_hh, w_ih, grad_w_ih, grad_w_hh,
                     grad_b_ih, grad_b_hh, grad_x):
    """Add the weight, bias and input gradients of one layer and direction (GEMMs).

    ``grad_w_hh`` pairs each step's gate gradients with the state it started from: the
    output one step earlier (later when ``reverse``), read in place, and ``h0`` for each
    row's first step. Each thread sums its block of rows into weight-sized buffers, added in
    block order at the end (so results do not depend on timing); ``grad_x`` rows are its own.
    """
    steps, batch = x.shape[0], x.shape[1]
    rows = steps * batch
    hidden = h0.shape[1]
    d_ih2 = d_ih.reshape(rows, d_ih.shape[2])
    d_hh2 = d_hh.reshape(rows, d_hh.shape[2])
    x2 = x.reshape(rows, x.shape[2])
    # State rows (t, n); gate row r pairs with state row r - shift.
    states = out.reshape(rows, out.shape[2])[:, col:col + hidden]
    shift = -batch if reverse else batch
    grad_x2 = None if grad_x is None else grad_x.reshape(rows, grad_x.shape[2])
    ones = np.ones(rows, dtype=d_ih2.dtype)
    sums = {}

    def block(start, stop):
        d_i, d_h = d_ih2[start:stop], d_hh2[start:stop]
        low, high = (start, min(stop, rows - batch)) if reverse else (max(start, batch), stop)
        recurrent = (d_hh2[low:high].T @ states[low - shift:high - shift] if high > low
                     else np.zeros(grad_w_hh.shape, dtype=grad_w_hh.dtype))
        sums[start] = (d_i.T @ x2[start:stop], recurrent,
                       # column sums as a GEMV with ones: several times faster than sum(axis=0)
                       ones[start:stop] @ d_i, ones[start:stop] @ d_h)
        if grad_x2 is None:  # the caller does not need the input gradient
            return
        buffer = np.empty((min(_INPUT_GRAD_ROWS, stop - start), grad_x2.shape[1]), x2.dtype)
        for first in range(start, stop, _INPUT_GRAD_ROWS):
            last = min(first + _INPUT_GRAD_ROWS, stop)
            part = buffer[:last - first]
            np.matmul(d_i[first - start:last - start], w_ih, out=part)
            grad_x2[first:last] += part

    gates = d_ih.shape[2]
    _split_rows(block, rows, gates * (x.shape[2] * (1 if grad_x is None else 2) + hidden))
    for start in sorted(sums):
        for total, part in zip((grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh), sums[start]):
            total += part
    # Each row's first step started from h0: t = 0, or its last step when reversed.
    started = np.flatnonzero(lengths > 0)
    first_steps = lengths[started] - 1 if reverse else np.zeros(started.size, dtype=np.int64)
    grad_w_hh += d_hh[first_steps, started].T @ h0[started]


def _split_rows(block, rows, macs_per_row):
    """``block(start, stop)`` over row blocks, one per thread, with single-threaded BLAS."""
    min_rows = -(-_threads.GEMM_MIN_BLOCK_MACS // max(1, macs_per_row))
    with single_threaded_blas() as threads:
        run_blocks(block, row_blocks(rows, threads, min_rows))
