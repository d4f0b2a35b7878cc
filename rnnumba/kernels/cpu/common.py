"""GEMM phases shared by every cell on the CPU.

Each phase is split into blocks, one per thread (see ``_threads``), each running
single-threaded BLAS through ``np.matmul``, which releases the GIL (SciPy's f2py BLAS
wrappers hold it, so their calls from several threads ran one after another).
"""

import numba
import numpy as np

from . import _threads
from ._blas import gemm
from ._jit import kernel
from ._threads import row_blocks, run_blocks, single_threaded_blas

#: Elements of each product added into the input gradient (whole time steps at a time), and
#: gate columns per product of the weight gradients: bound each thread's temporary arrays.
#: Smaller products cost time: OpenBLAS packs ``w_ih`` again for each (1024-row chunks made
#: the input gradient alone 28% slower at 512 units on one thread; 2^18 to 2^20 elements
#: made no difference to the whole phase on two).
_INPUT_GRAD_ELEMENTS = 1 << 18
_GATE_COLUMNS = 512
#: Elements of each thread's temporary weight-gradient product when the caller bounds them
#: (``column_block``): the RNN's chunks (:mod:`.chunks`), whose products are small and
#: whose temporaries would otherwise weigh as much as a chunk's gate gradients.
CHUNK_PRODUCT_ELEMENTS = 1 << 15
#: Chunks of the time axis for the phases that would otherwise need memory for every step:
#: staging a batch-major input in time-major order, and the RNN's gate gradients
#: (:mod:`.chunks`). Each chunk holds about ``1 / TIME_CHUNKS`` of a layer's steps.
TIME_CHUNKS = 10
#: Elements a chunk of a staged input may hold beyond its ``1 / TIME_CHUNKS`` share of the
#: steps (64 KiB of float32), up to a ``1 / TIME_CHUNKS`` share of the projection it feeds:
#: a small input is staged in one or a few GEMMs and bias passes, where ten chunks of a few
#: steps each cost more in calls than in arithmetic.
STAGE_MIN_ELEMENTS = 1 << 14


def project_input(x, w_ih, b_ih, proj):
    """``proj = x @ w_ih.T + b_ih`` over all ``T*N`` rows (one GEMM, split by whole steps).

    ``x`` may be the time-major view of a C-contiguous batch-major array (the caller's
    input, which is then not copied as a whole): each thread copies a chunk of steps at a
    time (:func:`stage_steps`) into time-major order for its GEMM.
    """
    steps, batch, features = x.shape
    x2 = x.reshape(steps * batch, features) if x.flags.c_contiguous else None
    flat = proj.reshape(steps * batch, proj.shape[2])
    full = _whole_rows(proj)
    chunk = steps if x2 is not None else stage_steps(steps, batch, features, proj.shape[2])

    def block(first, last):
        staged = None if x2 is not None else np.empty((min(chunk, last - first), batch,
                                                      features), dtype=x.dtype)
        for a in range(first, last, chunk):
            b = min(a + chunk, last)
            if staged is None:
                source = x2[a * batch:b * batch]
            else:
                staged[:b - a] = x[a:b]
                source = staged[:b - a].reshape((b - a) * batch, features)
            np.matmul(source, w_ih.T, out=flat[a * batch:b * batch])
            if full is None:
                flat[a * batch:b * batch] += b_ih
            else:
                add_to_leading_columns(full[a * batch:b * batch], b_ih)

    _split(block, steps, batch * features * proj.shape[2])


def chunk_steps(steps, layers=1):
    """Steps per chunk where a phase works through the time axis a chunk at a time to bound
    its memory: about ``1 / TIME_CHUNKS`` of the steps of ``layers`` layers and directions
    (a buffer shared by several of them may be as large as that share of all of them)."""
    return min(steps, max(1, -(-steps * layers // TIME_CHUNKS)))


def stage_steps(steps, batch, features, width):
    """Steps per chunk where :func:`project_input` stages a batch-major input for a
    projection ``width`` columns wide: a :func:`chunk_steps` share, or more steps where
    they hold at most ``STAGE_MIN_ELEMENTS`` and a ``1 / TIME_CHUNKS`` share of the
    projection's elements (the staged copy never weighs more than that next to it)."""
    elements = min(STAGE_MIN_ELEMENTS, steps * batch * width // TIME_CHUNKS)
    return min(steps, max(chunk_steps(steps), elements // max(1, batch * features)))


def in_place_buffers(cell, cache, out, col, hidden):
    """``(proj, d_ih, d_hh)`` of one layer and direction without buffers of their own
    (kernel contract): the projection goes into what the recurrence writes over it (the
    LSTM's and GRU's gate columns of ``cache``, the RNN's output columns), and, once the
    activations are spent, the gate gradients over the gate cache (the GRU's ``d_hh`` over
    its last ``H`` columns). None where a buffer is needed: the RNN's gate gradients."""
    if cell == "rnn":
        return out[:, :, col:col + hidden], None, None
    gates = cache[:, :, :cache.shape[2] - hidden]  # LSTM: c follows; GRU: W_hn h + b_hn
    return gates, gates, cache[:, :, gates.shape[2]:] if cell == "gru" else gates


def _whole_rows(view):
    """``view`` ``(T, N, K)``, C-contiguous or the first ``K`` columns of a C-contiguous
    ``(T, N, W)`` array (the gate columns of the cache), as the C-contiguous ``(T*N, W)``
    array of its whole rows; None for any other layout."""
    steps, batch, width = view.shape
    item = view.itemsize
    if view.flags.c_contiguous:
        return view.reshape(steps * batch, width)
    row = view.strides[1] // item
    if view.strides != (batch * row * item, row * item, item) or row < width:
        return None
    owner = view
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    start = view.__array_interface__["data"][0]
    end = owner.__array_interface__["data"][0] + owner.nbytes
    if not owner.flags.c_contiguous or start + steps * batch * row * item > end:
        return None  # the last row would reach past the memory behind the view
    return np.lib.stride_tricks.as_strided(view, shape=(steps * batch, row),
                                           strides=(row * item, item))


@kernel
def add_to_leading_columns(matrix, vector):
    """``matrix[:, :len(vector)] += vector`` on a C-contiguous matrix: 4x as fast as NumPy's
    broadcast add on the strided gate columns at 32 units, 2.3x at 512 (a strided array in
    the kernel does not vectorise)."""
    for n in range(matrix.shape[0]):
        row = matrix[n]
        for j in range(vector.shape[0]):
            row[j] += vector[j]


def weight_gradients(x, out, col, h0, lengths, reverse, d_ih, d_hh, w_ih, grad_w_ih, grad_w_hh,
                     grad_b_ih, grad_b_hh, grad_x, column_block=None):
    """Add the weight, bias and input gradients of one layer and direction (GEMMs).

    ``grad_w_hh`` pairs each step's gate gradients with the state it started from: the
    output one step earlier (later when ``reverse``), read in place, and ``h0`` for each
    row's first step. The weight gradients are split by gate columns (each thread owns its
    rows of ``grad_w_*``: no partial sums, results independent of timing) and computed
    ``column_block`` at a time (default ``_GATE_COLUMNS``; each product's temporary has
    that many rows); ``grad_x`` (any strides, e.g. a view of batch-major storage) by whole
    time steps. ``d_hh`` may hold only its last gate columns (the GRU's n gate), the others
    being ``d_ih``'s.

    A phase too small for the pool of Python threads to split (``GEMM_MIN_BLOCK_MACS`` per
    thread) runs as one compiled kernel instead (:func:`_gradient_blocks`): no Python per
    product, no temporaries, and its blocks handed to Numba's TBB threads where that layer
    runs the time loops. Above that size the NumPy products win: the BLAS a kernel can call
    (SciPy's) ran the large transposed products 10-25% slower than NumPy's.
    """
    steps, batch = x.shape[0], x.shape[1]
    rows = steps * batch
    hidden = h0.shape[1]
    column_block = column_block or _GATE_COLUMNS
    gates = d_ih.shape[2]
    d_ih2 = d_ih.reshape(rows, gates)
    d_hh2 = d_hh.reshape(rows, d_hh.shape[2])
    # A narrower d_hh (the GRU's n gate alone) shares its first gate columns with d_ih.
    shared = gates - d_hh.shape[2]
    x2 = x.reshape(rows, x.shape[2])
    # State rows (t, n); gate row r pairs with state row r - shift.
    states = out.reshape(rows, out.shape[2])[:, col:col + hidden]
    shift = -batch if reverse else batch
    low, high = (0, rows - batch) if reverse else (batch, rows)
    # Each row's first step started from h0: t = 0, or its last step when reversed.
    if not reverse and lengths.all():
        first_rows, h0_started = slice(0, batch), h0  # every row starts at t = 0: no copies
    else:
        started = np.flatnonzero(lengths)
        first_steps = lengths[started] - 1 if reverse else 0
        first_rows, h0_started = first_steps * batch + started, h0[started]
    ones = _ones(rows, d_ih2.dtype)

    def gate_columns(first, last):
        cuts = set(range(first, last, column_block)) | {last}
        if first < shared < last:
            cuts.add(shared)  # no chunk straddles the first column of a narrow d_hh
        bounds = sorted(cuts)
        for a, b in zip(bounds[:-1], bounds[1:]):
            d_i = d_ih2[:, a:b]
            d_h = d_i if b <= shared else d_hh2[:, a - shared:b - shared]
            grad_w_ih[a:b] += d_i.T @ x2
            if high > low:
                grad_w_hh[a:b] += d_h[low:high].T @ states[low - shift:high - shift]
            grad_w_hh[a:b] += d_h[first_rows].T @ h0_started
            # column sums as a GEMV with ones: several times faster than sum(axis=0)
            sums = ones @ d_i
            grad_b_ih[a:b] += sums
            grad_b_hh[a:b] += sums if d_h is d_i else ones @ d_h

    def input_steps(first, last):
        chunk = max(1, _INPUT_GRAD_ELEMENTS // (batch * x.shape[2]))
        for a in range(first, last, chunk):
            b = min(a + chunk, last)
            part = d_ih2[a * batch:b * batch] @ w_ih
            grad_x[a:b] += part.reshape(b - a, batch, part.shape[1])

    macs = rows * gates * (x.shape[2] + hidden + (0 if grad_x is None else x.shape[2]))
    with single_threaded_blas() as threads:
        count = _block_count(macs, threads)
        if count == 1 and not numba.config.DISABLE_JIT and _unit_columns(
                d_ih2, d_hh2, states, h0_started, w_ih, grad_w_ih, grad_w_hh):
            first_ih, first_hh = d_ih2[first_rows], d_hh2[first_rows]
            _compiled_gradients(d_ih2, d_hh2, np.ascontiguousarray(x2),
                                states[low - shift:high - shift], low, high, first_ih,
                                first_hh, h0_started, ones.reshape(1, rows), w_ih, grad_w_ih,
                                grad_w_hh, grad_b_ih, grad_b_hh, grad_x, batch, macs, threads)
            return
        if count == 1:
            gate_columns(0, gates)
            if grad_x is not None:
                input_steps(0, steps)
            return
        # One block of gate columns and one of time steps per thread, in the same call
        # (no time steps without an input gradient: the caller does not need it).
        columns = row_blocks(gates, count, 1)
        time_steps = [] if grad_x is None else row_blocks(steps, count, 1)

        def both(k, _):
            if k < len(columns):
                gate_columns(*columns[k])
            if k < len(time_steps):
                input_steps(*time_steps[k])

        run_blocks(both, [(k, k + 1) for k in range(max(len(columns), len(time_steps)))])


def _unit_columns(*matrices):
    """Whether every matrix has contiguous elements within its rows (BLAS's requirement)."""
    return all(m.strides[1] == m.itemsize or m.shape[1] <= 1 for m in matrices)


def _compiled_gradients(d_ih, d_hh, x, states, low, high, first_ih, first_hh, h0_started, ones,
                        w_ih, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_x, batch, macs,
                        threads):
    """:func:`weight_gradients` of a small phase through :func:`_gradient_blocks`: split
    in a ``prange`` where Numba's threading layer is TBB and each block gets
    ``PRANGE_GEMM_MIN_BLOCK_MACS``, else one call. ``x`` is ``(T*N, I)`` rows, ``ones`` a
    ``(1, T*N)`` row, ``grad_x`` ``(T, N, I)`` or None; every matrix has contiguous rows."""
    steps = x.shape[0] // batch
    count = (_block_count(macs, threads, _threads.PRANGE_GEMM_MIN_BLOCK_MACS)
             if _threads.prange_loops() else 1)
    added_x = grad_x
    if grad_x is None:
        added_x, steps = np.empty((0, 0, 0), dtype=d_ih.dtype), 0
    elif grad_x.strides[2] != grad_x.itemsize and grad_x.shape[2] > 1:
        added_x = np.zeros(grad_x.shape, dtype=grad_x.dtype)  # BLAS needs contiguous rows
    args = (d_ih, d_hh, x, states, low, high, first_ih, first_hh, h0_started, ones, w_ih,
            grad_w_ih, grad_w_hh, grad_b_ih[np.newaxis, :], grad_b_hh[np.newaxis, :], added_x,
            batch, _bounds(d_ih.shape[1], count), _bounds(steps, count))
    if count > 1:
        _threads.run_in_prange(_gradient_blocks, [(k, k + 1) for k in range(count)], args)
    else:
        _gradient_blocks(*args, 0, 1)
    if added_x is not grad_x:
        grad_x += added_x


def _bounds(length, count):
    """``count + 1`` ascending bounds of near-equal blocks of ``range(length)``."""
    return np.array([length * k // count for k in range(count + 1)], dtype=np.int64)


@kernel
def _at(matrix):
    """``(address, leading dimension)`` of a row-major matrix for :func:`._blas.gemm`: the
    row stride in elements, at least the width and 1 (a single row's may be anything)."""
    return matrix.ctypes.data, max(matrix.strides[0] // matrix.itemsize, matrix.shape[1], 1)


@kernel
def _gradient_blocks(d_ih, d_hh, x, states, low, high, first_ih, first_hh, h0_started, ones,
                     w_ih, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_x, batch, columns,
                     time_steps, start, stop):
    """Blocks ``start:stop`` of a small :func:`weight_gradients`: block ``k`` adds gate
    columns ``columns[k]:columns[k+1]`` of the weight and bias gradients and time steps
    ``time_steps[k]:time_steps[k+1]`` of the input gradient, each product straight into its
    gradient (:func:`._blas.gemm` on addresses, ``beta = 1``: taking views here instead
    made this kernel take about 2 s to compile). ``d_hh`` holds the last
    ``d_hh.shape[1]`` gate columns (the others are ``d_ih``'s); gate rows ``low:high`` pair
    with ``states``, ``first_*`` (the rows of each row's first step) with ``h0_started``."""
    item = d_ih.itemsize
    double = item == 8
    rows, gates = d_ih.shape
    features, hidden, started = x.shape[1], h0_started.shape[1], first_ih.shape[0]
    shared = gates - d_hh.shape[1]
    p_ih, ld_ih = _at(d_ih)
    p_hh, ld_hh = _at(d_hh)
    p_x, ld_x = _at(x)
    p_states, ld_states = _at(states)
    p_fih, ld_fih = _at(first_ih)
    p_fhh, ld_fhh = _at(first_hh)
    p_h0, ld_h0 = _at(h0_started)
    p_ones, ld_ones = _at(ones)
    p_gih, ld_gih = _at(grad_w_ih)
    p_ghh, ld_ghh = _at(grad_w_hh)
    p_gbih, ld_gbih = _at(grad_b_ih)
    p_gbhh, ld_gbhh = _at(grad_b_hh)
    p_w, ld_w = _at(w_ih)
    p_gx = grad_x.ctypes.data
    step_stride = grad_x.strides[0] // item
    ld_gx = max(grad_x.strides[1] // item, features, 1)
    for k in range(start, stop):
        a, b = columns[k], columns[k + 1]
        cut = min(max(shared, a), b)  # no product straddles the first column of a narrow d_hh
        for lo, hi in ((a, cut), (cut, b)):
            width = hi - lo
            if width <= 0:
                continue
            d_i = p_ih + lo * item
            if hi <= shared:
                d_h, ld_h, f_h, ld_f = d_i, ld_ih, p_fih + lo * item, ld_fih
            else:
                d_h, ld_h = p_hh + (lo - shared) * item, ld_hh
                f_h, ld_f = p_fhh + (lo - shared) * item, ld_fhh
            # grad_w_ih[lo:hi] += d_i.T @ x;  grad_b_ih[lo:hi] += ones @ d_i
            gemm(double, True, False, width, features, rows, d_i, ld_ih, p_x, ld_x, 1.0,
                 p_gih + lo * ld_gih * item, ld_gih)
            gemm(double, False, False, 1, width, rows, p_ones, ld_ones, d_i, ld_ih, 1.0,
                 p_gbih + lo * item, ld_gbih)
            # grad_w_hh[lo:hi] += d_h[low:high].T @ states + f_h.T @ h0; grad_b_hh += ones @ d_h
            gemm(double, True, False, width, hidden, high - low, d_h + low * ld_h * item,
                 ld_h, p_states, ld_states, 1.0, p_ghh + lo * ld_ghh * item, ld_ghh)
            gemm(double, True, False, width, hidden, started, f_h, ld_f, p_h0, ld_h0, 1.0,
                 p_ghh + lo * ld_ghh * item, ld_ghh)
            gemm(double, False, False, 1, width, rows, p_ones, ld_ones, d_h, ld_h, 1.0,
                 p_gbhh + lo * item, ld_gbhh)
        for t in range(time_steps[k], time_steps[k + 1]):
            # grad_x[t] += d_ih[t * batch:(t + 1) * batch] @ w_ih
            gemm(double, False, False, batch, features, gates, p_ih + t * batch * ld_ih * item,
                 ld_ih, p_w, ld_w, 1.0, p_gx + t * step_stride * item, ld_gx)


def chunk_column_block(features, hidden):
    """``column_block`` for :func:`weight_gradients` on a chunk of steps: temporaries of at
    most about ``CHUNK_PRODUCT_ELEMENTS`` per thread (64 gate columns at 512 units)."""
    return max(16, min(_GATE_COLUMNS, CHUNK_PRODUCT_ELEMENTS // max(features, hidden)))


def _ones(length, dtype):
    """A read-only vector of ``length`` ones (the column sums' GEMV), kept between calls up
    to :data:`_KEPT_ONES` elements (a new one costs as much as the GEMV at small sizes)."""
    if length > _KEPT_ONES:
        return np.ones(length, dtype=dtype)
    key = np.dtype(dtype)
    ones = _ONES.get(key)
    if ones is None or ones.shape[0] < length:
        ones = np.ones(max(length, 1024), dtype=key)
        ones.flags.writeable = False
        _ONES[key] = ones
    return ones[:length]


_KEPT_ONES = 1 << 16
_ONES = {}


def _block_count(macs, threads, min_block_macs=None):
    """Blocks a GEMM phase of ``macs`` multiply-adds is split into: one per thread, each of
    at least ``min_block_macs`` (default ``GEMM_MIN_BLOCK_MACS``)."""
    return max(1, min(threads, macs // (min_block_macs or _threads.GEMM_MIN_BLOCK_MACS)))


def _split(block, rows, macs_per_row):
    """``block(start, stop)`` over row blocks, one per thread, with single-threaded BLAS."""
    with single_threaded_blas() as threads:
        run_blocks(block, row_blocks(rows, _block_count(rows * macs_per_row, threads), 1))
