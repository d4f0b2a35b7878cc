"""Small ``@njit`` helpers shared by the CPU cell kernels."""

import numpy as np

from ._jit import kernel


@kernel
def gather_previous(src, col, init, lengths, reverse, dst, start, stop):
    """Fill ``dst[t, start:stop]`` with the state step ``t`` started from.

    That is ``src[t-1]`` (``src[t+1]`` when ``reverse``) where that step was active, else the
    initial state ``init``; ``src`` columns ``col:col+H`` hold this direction's states.
    """
    steps, _, hidden = dst.shape
    for t in range(steps):
        prev = t + 1 if reverse else t - 1
        for n in range(start, stop):
            if 0 <= prev < lengths[n]:
                for j in range(hidden):
                    dst[t, n, j] = src[prev, n, col + j]
            else:
                for j in range(hidden):
                    dst[t, n, j] = init[n, j]


@kernel
def recurrent_gradient(d_gates, w_hh, t, lengths, all_active, dh_rec, dh, accumulate):
    """Carry the gradient to the previous state: ``dh[n] (+)= d_gates[n] @ w_hh`` for active rows.

    Rows whose step ``t`` is inactive keep ``dh`` unchanged (their state passed through).
    """
    if all_active and not accumulate:
        np.dot(d_gates, w_hh, dh)
        return
    np.dot(d_gates, w_hh, dh_rec)
    for n in range(dh.shape[0]):
        if t < lengths[n]:
            if accumulate:
                for j in range(dh.shape[1]):
                    dh[n, j] += dh_rec[n, j]
            else:
                for j in range(dh.shape[1]):
                    dh[n, j] = dh_rec[n, j]
