"""Small ``@njit`` helpers shared by the CPU cell kernels."""

import numpy as np
from numba import carray, types
from numba.extending import intrinsic, overload

from ._jit import kernel


# Kernels copy arrays through these loops, not slice assignment (``a[:] = b``): the
# assignment compiles NumPy's shape-mismatch error path, with its string formatting, into
# every kernel that uses it (about 6 of the 9 s that compiling a cell took).


def unmanaged(array):
    """``array`` as a view that Numba does not reference-count (a C-contiguous array; any
    other layout is returned as it is). Only for arrays the caller keeps alive for the whole
    call: a kernel's arguments, never arrays it allocates.

    Every row view a time loop takes (``cache[t, n]``, ``out[t, n, a:b]``) costs a call to
    ``NRT_incref`` and one to ``NRT_decref``, each an out-of-line atomic add, that LLVM can
    neither remove nor inline: at 32 units they took about a quarter of the LSTM's forward
    elementwise pass. Views of an unmanaged array carry no reference count, and those
    calls return at once.
    """
    return array


@intrinsic
def _data_pointer(typingctx, array):
    """The data pointer of ``array``, typed."""
    def codegen(context, builder, signature, args):
        return context.make_array(signature.args[0])(context, builder, args[0]).data
    return types.CPointer(array.dtype)(array), codegen


@overload(unmanaged, inline="always")
def _unmanaged_overload(array):
    if isinstance(array, types.Array) and array.layout == "C":
        return lambda array: carray(_data_pointer(array), array.shape)
    return lambda array: array


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


#: From this hidden size on, the per-step products run transposed (``W @ h.T``, then
#: transposed back): at 32 rows per thread OpenBLAS runs that form about 25% faster
#: (65 -> 82 GFLOP/s at 512 units), and LSTM/GRU forward+backward took 5-12% less time at
#: 128 and 512 units; at 32 units the transpose costs more than it saves.
TRANSPOSED_MIN_HIDDEN = 128


def step_weights(w_hh, backward=False):
    """``(w_hh_t, transposed)`` for :func:`step_product`: whether this hidden size runs the
    per-step products transposed, and a C-ordered copy of ``W_hh.T`` where they use it: the
    forward's direct form ``h @ W_hh.T`` (1.3-2x faster in OpenBLAS than on the transposed
    view) and the backward's transposed form ``W_hh.T @ d.T`` (the F-ordered view made the
    RNN's backward 12% slower at 512 units). Elsewhere ``w_hh`` itself stands in, unused."""
    transposed = w_hh.shape[1] >= TRANSPOSED_MIN_HIDDEN
    if transposed == backward:
        return np.ascontiguousarray(w_hh.T), transposed
    return w_hh, transposed


def time_major_view(array):
    """``(base, batch_major)``: a C-contiguous ``(T, N, K)`` array as it is (``False``), or,
    for the time-major view of a C-contiguous ``(N, T, K)`` array, that array (``True``);
    kernels then index ``base[n, t]`` (C layout either way: reading a strided view inside
    the elementwise passes stopped their vectorisation). Any other layout is copied."""
    if array.flags.c_contiguous:
        return array, False
    base = array.transpose(1, 0, 2)
    if base.flags.c_contiguous:
        return base, True
    return np.ascontiguousarray(array), False


def through_cache(array, cache):
    """``(placeholder, True)`` when ``array`` is (a view of) ``cache``'s gate columns (or, for
    the RNN, the output's), which the kernel then reads or writes through ``cache`` itself
    (a strided array would compile a second specialisation); else ``(array, False)``."""
    if np.may_share_memory(array, cache):
        return np.empty((0, 0, 0), dtype=cache.dtype), True
    return array, False


@kernel
def optional_workspace(needed, rows, cols, like):
    """A ``(rows, cols)`` workspace of ``like``'s dtype when ``needed``, else an empty one
    (one array type either way); e.g. ``out.T``'s shape for :func:`step_product`."""
    if needed:
        return np.empty((rows, cols), dtype=like.dtype)
    return np.empty((0, 0), dtype=like.dtype)


@kernel
def step_product(a, b, b_t, out, out_t):
    """``out = a @ b`` for C-ordered ``b`` and ``b_t = b.T``; computed as ``out_t = b_t @ a.T``
    and transposed when ``out_t`` is a workspace of ``out.T``'s shape, directly when empty."""
    if out_t.shape[0] == 0:
        np.dot(a, b, out)
        return
    np.dot(b_t, a.T, out_t)
    for n in range(out.shape[0]):
        for k in range(out.shape[1]):
            out[n, k] = out_t[k, n]


@kernel
def recurrent_gradient(d_gates, w_hh, w_hh_t, t, lengths, all_active, dh_rec, dh, accumulate,
                       work):
    """Carry the gradient to the previous state: ``dh[n] (+)= d_gates[n] @ w_hh`` for active rows.

    Rows whose step ``t`` is inactive keep ``dh`` unchanged (their state passed through).
    ``w_hh_t`` and ``work`` as :func:`step_product` takes them.
    """
    if all_active and not accumulate:
        step_product(d_gates, w_hh, w_hh_t, dh, work)
        return
    step_product(d_gates, w_hh, w_hh_t, dh_rec, work)
    for n in range(dh.shape[0]):
        if t < lengths[n]:
            if accumulate:
                for j in range(dh.shape[1]):
                    dh[n, j] += dh_rec[n, j]
            else:
                for j in range(dh.shape[1]):
                    dh[n, j] = dh_rec[n, j]
