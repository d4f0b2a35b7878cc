"""Small ``@njit`` helpers shared by the CPU cell kernels."""

import numpy as np

from ._jit import kernel


# Kernels copy arrays through these loops, not slice assignment (``a[:] = b``): the
# assignment compiles NumPy's shape-mismatch error path, with its string formatting, into
# every kernel that uses it (about 6 of the 9 s that compiling a cell took).


@kernel
def copy_vector(dst, src):
    """``dst[:] = src`` for 1-D arrays of the same length."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@kernel
def copy_rows(dst, src, start, stop):
    """``dst[start:stop] = src[start:stop]`` for 2-D arrays of the same width."""
    for n in range(start, stop):
        copy_vector(dst[n], src[n])


@kernel
def shortest(lengths):
    """``lengths.min()`` as a loop (the NumPy reduction compiles its own machinery)."""
    low = lengths[0]
    for length in lengths:
        low = min(low, length)
    return low


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
