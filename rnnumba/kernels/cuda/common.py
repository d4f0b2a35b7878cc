"""GEMM phases shared by every cell on the GPU: a tiled shared-memory GEMM written in Numba.

``gemm`` computes ``C (+)= op(A) @ op(B) (+ bias)`` with ``op`` an optional transpose, in
``GEMM_TILE x GEMM_TILE`` tiles staged through shared memory; each thread owns one element of
``C`` and sums its products in a fixed order, so results are deterministic (no atomics).
``project_input`` and ``weight_gradients`` have the signatures of their CPU twins and take
device arrays (host NumPy arrays also work; they are copied in and out).
"""

from numba import cuda

from . import _jit
from ._jit import blocks, cached_factory, numba_type, on_device


@cached_factory
def _gemm_kernel(tile, dtype):
    dt = numba_type(dtype)
    padded = tile + 1  # sizes of shared arrays must be compile-time constants

    def gemm(a, b, c, bias, trans_a, trans_b, accumulate, use_bias):
        # One padding column keeps the transposed stores free of bank conflicts.
        tile_a = cuda.shared.array((tile, padded), dtype=dt)
        tile_b = cuda.shared.array((tile, padded), dtype=dt)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row0 = cuda.blockIdx.y * tile
        col0 = cuda.blockIdx.x * tile
        row = row0 + ty
        col = col0 + tx
        rows = c.shape[0]
        cols = c.shape[1]
        depth = a.shape[0] if trans_a else a.shape[1]
        acc = dt(0.0)
        for k0 in range(0, depth, tile):
            # tile_a[i, kk] = A(row0 + i, k0 + kk), tile_b[kk, j] = B(k0 + kk, col0 + j), zero
            # outside the matrices; consecutive threads (tx) always read consecutive addresses.
            if trans_a:
                value = dt(0.0)
                if row0 + tx < rows and k0 + ty < depth:
                    value = a[k0 + ty, row0 + tx]
                tile_a[tx, ty] = value
            else:
                value = dt(0.0)
                if row < rows and k0 + tx < depth:
                    value = a[row, k0 + tx]
                tile_a[ty, tx] = value
            if trans_b:
                value = dt(0.0)
                if col0 + ty < cols and k0 + tx < depth:
                    value = b[col0 + ty, k0 + tx]
                tile_b[tx, ty] = value
            else:
                value = dt(0.0)
                if col < cols and k0 + ty < depth:
                    value = b[k0 + ty, col]
                tile_b[ty, tx] = value
            cuda.syncthreads()
            for kk in range(tile):
                acc += tile_a[ty, kk] * tile_b[kk, tx]
            cuda.syncthreads()
        if row < rows and col < cols:
            if use_bias:
                acc += bias[col]
            if accumulate:
                c[row, col] += acc
            else:
                c[row, col] = acc

    return cuda.jit(gemm)


@cuda.jit
def _column_sums_kernel(d, out):
    """``out[j] += sum_i d[i, j]``: one thread per column, rows in order (deterministic)."""
    j = cuda.grid(1)
    if j < d.shape[1]:
        total = d[0, j]
        for i in range(1, d.shape[0]):
            total += d[i, j]
        out[j] += total


def gemm(a, b, c, trans_a=False, trans_b=False, accumulate=False, bias=None):
    """``c (+)= op(a) @ op(b) (+ bias)`` on 2-D C-contiguous device arrays of one dtype."""
    rows, cols = c.shape
    if rows == 0 or cols == 0:
        return
    tile = _jit.GEMM_TILE
    kernel = _gemm_kernel(tile, c.dtype)
    use_bias = bias is not None
    kernel[(blocks(cols, tile), blocks(rows, tile)), (tile, tile)](
        a, b, c, bias if use_bias else c[0], trans_a, trans_b, accumulate, use_bias)


def column_sums(d, out):
    """``out += d.sum(axis=0)`` for a 2-D device array ``d``."""
    if d.shape[0] and d.shape[1]:
        block = _jit.ELEMENTWISE_BLOCK
        _column_sums_kernel[blocks(d.shape[1], block), block](d, out)


def _rows(array):
    """View a C-contiguous ``(T, N, K)`` array as ``(T*N, K)``."""
    return array.reshape(array.shape[0] * array.shape[1], array.shape[2])


def _check(named, dtype):
    """Shapes and dtypes before a launch (the kernels do not check bounds)."""
    for name, (array, shape) in named.items():
        if tuple(array.shape) != tuple(shape) or array.dtype != dtype:
            raise ValueError(f"{name} must have shape {tuple(shape)} and dtype {dtype}, got "
                             f"{tuple(array.shape)} and {array.dtype}")


@on_device(outputs=(3,))
def project_input(x, w_ih, b_ih, proj):
    """``proj = x @ w_ih.T + b_ih`` over all ``T*N`` rows at once (one GEMM launch)."""
    steps, batch, features = x.shape
    width = w_ih.shape[0]
    _check({"x": (x, x.shape), "w_ih": (w_ih, (width, features)), "b_ih": (b_ih, (width,)),
            "proj": (proj, (steps, batch, width))}, x.dtype)
    gemm(_rows(x), w_ih, _rows(proj), trans_b=True, bias=b_ih)


@cuda.jit
def _first_step_rows_kernel(d, lengths, reverse, out):
    """``out[n] = d[first step of row n, n]``: ``t = 0``, or ``lengths[n] - 1`` when
    ``reverse``; zeros for a row with no step."""
    idx = cuda.grid(1)
    batch = out.shape[0]
    width = out.shape[1]
    if idx < batch * width:
        n = idx // width
        g = idx - n * width
        t = lengths[n] - 1 if reverse else 0
        out[n, g] = d[t, n, g] if lengths[n] > 0 else 0.0


@on_device(outputs=(9, 10, 11, 12, 13))
def weight_gradients(x, out, col, h0, lengths, reverse, d_ih, d_hh, w_ih, grad_w_ih, grad_w_hh,
                     grad_b_ih, grad_b_hh, grad_x):
    """Add the weight, bias and input gradients of one layer and direction (GEMMs);
    ``grad_x=None`` skips the input gradient."""
    steps, batch, features = x.shape
    width, hidden = d_ih.shape[2], h0.shape[1]
    named = {"x": (x, x.shape), "out": (out, (steps, batch, out.shape[2])),
             "h0": (h0, (batch, hidden)), "d_ih": (d_ih, (steps, batch, width)),
             "d_hh": (d_hh, (steps, batch, width)), "w_ih": (w_ih, (width, features)),
             "grad_w_ih": (grad_w_ih, (width, features)),
             "grad_w_hh": (grad_w_hh, (width, hidden)), "grad_b_ih": (grad_b_ih, (width,)),
             "grad_b_hh": (grad_b_hh, (width,))}
    if grad_x is not None:  # None: the input gradient is not needed (skip its GEMM)
        named["grad_x"] = (grad_x, x.shape)
    _check(named, x.dtype)
    if not 0 <= col <= out.shape[2] - hidden or tuple(lengths.shape) != (batch,):
        raise ValueError(f"col {col} and lengths of shape {tuple(lengths.shape)} do not fit "
                         f"out {tuple(out.shape)}, hidden size {hidden} and batch {batch}")
    parameter_gradients(x, out, col, h0, lengths, reverse, d_ih, d_hh, grad_w_ih, grad_w_hh,
                        grad_b_ih, grad_b_hh)
    if grad_x is not None:
        gemm(_rows(d_ih), w_ih, _rows(grad_x), accumulate=True)


def parameter_gradients(x, out, col, h0, lengths, reverse, d_ih, d_hh, grad_w_ih, grad_w_hh,
                        grad_b_ih, grad_b_hh):
    """:func:`weight_gradients` without the input gradient (device arrays, shapes checked by
    the caller): what a first layer needs when nobody asks for ``dX``.

    ``grad_w_hh`` pairs each step's gate gradients with the state it started from: the output
    one step earlier (later when ``reverse``), read in place, plus ``h0`` for each row's
    first step (see :mod:`rnnumba.kernels`).
    """
    steps, batch = x.shape[0], x.shape[1]
    rows, hidden = steps * batch, h0.shape[1]
    x2, di2, dh2 = _rows(x), _rows(d_ih), _rows(d_hh)
    states = _rows(out)[:, col:col + hidden]
    gemm(di2, x2, grad_w_ih, trans_a=True, accumulate=True)
    if steps > 1:
        if reverse:
            gemm(dh2[:rows - batch], states[batch:], grad_w_hh, trans_a=True, accumulate=True)
        else:
            gemm(dh2[batch:], states[:rows - batch], grad_w_hh, trans_a=True, accumulate=True)
    first = _jit.workspace((batch, d_hh.shape[2]), d_hh.dtype, "first-step gradients")
    block = _jit.ELEMENTWISE_BLOCK
    _first_step_rows_kernel[blocks(first.size, block), block](d_hh, lengths, bool(reverse),
                                                              first)
    gemm(first, h0, grad_w_hh, trans_a=True, accumulate=True)
    column_sums(di2, grad_b_ih)
    column_sums(dh2, grad_b_hh)
