"""GEMM phases shared by every cell on the CPU, through the BLAS that SciPy links, and the
BLAS thread setting of the time loops."""

import contextlib

import numpy as np
from scipy.linalg.blas import get_blas_funcs

#: Networks whose per-step recurrent GEMM has at most this many multiply-adds run forward
#: and backward on one BLAS thread: waking threads for every small product costs more than
#: it saves (a 128-unit RNN forward took 20 ms on 2 threads against 4.6 ms on one, on 2
#: cores). Larger networks keep every thread.
SERIAL_STEP_MAX_MACS = 1 << 23

_blas_pools = None


def blas_threads_for(batch, gate_rows, hidden):
    """Context for a forward or backward: a single BLAS thread when the per-step GEMM is small."""
    global _blas_pools
    if batch * gate_rows * hidden > SERIAL_STEP_MAX_MACS:
        return contextlib.nullcontext()
    if _blas_pools is None:
        from threadpoolctl import ThreadpoolController
        _blas_pools = ThreadpoolController().select(user_api="blas")
    return _blas_pools.limit(limits=1)


def project_input(x, w_ih, b_ih, proj):
    """``proj = x @ w_ih.T + b_ih`` over all ``T*N`` rows at once (one GEMM)."""
    rows = x.shape[0] * x.shape[1]
    flat = proj.reshape(rows, proj.shape[2])
    np.matmul(x.reshape(rows, x.shape[2]), w_ih.T, out=flat)
    flat += b_ih


def weight_gradients(x, h_prev, d_ih, d_hh, w_ih, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh,
                     grad_x):
    """Add the weight, bias and input gradients of one layer and direction (GEMMs).

    ``gemm`` with ``beta=1`` accumulates straight into the C-ordered outputs through their
    Fortran-ordered transposes, so no ``(T*N, ...)`` temporary is allocated.
    """
    rows = x.shape[0] * x.shape[1]
    d_ih2 = d_ih.reshape(rows, d_ih.shape[2])
    d_hh2 = d_hh.reshape(rows, d_hh.shape[2])
    x2 = x.reshape(rows, x.shape[2])
    # grad_w_ih += d_ih2.T @ x2, computed as grad_w_ih.T += x2.T @ d_ih2
    _add_product(x2.T, d_ih2.T, grad_w_ih.T, trans_b=1)
    _add_product(h_prev.reshape(rows, h_prev.shape[2]).T, d_hh2.T, grad_w_hh.T, trans_b=1)
    # Column sums as a GEMV with ones: several times faster than sum(axis=0) here.
    ones = np.ones(rows, dtype=d_ih2.dtype)
    bias_ih = ones @ d_ih2
    grad_b_ih += bias_ih
    grad_b_hh += bias_ih if d_hh is d_ih else ones @ d_hh2
    if grad_x is None:  # the caller does not need the input gradient
        return
    # grad_x += d_ih2 @ w_ih, computed as grad_x.T += w_ih.T @ d_ih2.T
    _add_product(w_ih.T, d_ih2.T, grad_x.reshape(rows, grad_x.shape[2]).T)


def _add_product(a, b, c, trans_b=0):
    """``c += op(a) @ op(b)`` in place for a Fortran-ordered ``c`` (BLAS gemm, beta=1)."""
    gemm = get_blas_funcs("gemm", (a, b, c))
    result = gemm(1.0, a, b, beta=1.0, c=c, overwrite_c=True, trans_b=trans_b)
    if not np.shares_memory(result, c):  # f2py had to copy c: write the sum back
        c[...] = result
