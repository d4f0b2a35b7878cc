"""The recurrences of all three cells on the GPU, written once and specialised by a cell id.

Two paths, chosen per call by :func:`use_persistent`:

- **persistent** (small hidden sizes): one launch runs all time steps. A block owns
  ``PERSISTENT_ROWS`` batch rows and has one thread per hidden unit; ``W_hh`` is staged once
  in shared memory (transposed for the forward so that threads read consecutive addresses,
  as stored for the backward), the rows' states live in shared memory (``h``) and registers
  (``c``, ``dh``, ``dc``), and ``__syncthreads`` separates reading the old state from writing
  the new one.
- **per step** (larger layers): each step is one tiled GEMM launch (``rec = h @ W_hh.T``
  forward, ``dh += dG @ W_hh`` backward) plus one fused elementwise launch over
  ``batch x hidden`` threads. The GEMM workspace is allocated once per call, outside the loop.

The pointwise math is the scalar gate code of :mod:`rnnumba.kernels.gates`, shared with the
CPU, wrapped by :func:`unit_forward` / :func:`unit_backward` so both paths run the same
device code. Everything is deterministic: no atomics, fixed summation orders.
"""

import numpy as np
from numba import cuda, int8

from . import _jit
from ._jit import (CELL_GRU, CELL_LSTM, CELL_RNN, blocks, cached_factory, copy, gru_point,
                   gru_point_backward, lstm_point, lstm_point_backward, numba_type, on_device,
                   rnn_point, rnn_point_backward, workspace)
from .common import gemm

GATES = {CELL_RNN: 1, CELL_LSTM: 4, CELL_GRU: 3}
CELL_OF_GATES = {gates: cell for cell, gates in GATES.items()}


# --------------------------------------------------------------------------- device functions


@cuda.jit(device=True)
def gate_inputs(cell, proj, b_hh, t, n, j, hid, s0, s1, s2, s3):
    """Pre-activations of unit ``j`` of row ``n`` at step ``t`` from the recurrent sums ``s*``.

    RNN: ``x0``; LSTM: ``x0..x3`` for i, f, g, o; GRU: ``x0``, ``x1`` for r, z, ``x2`` the input
    part of n and ``x3 = W_hn h + b_hn``. Unused outputs repeat ``x0``.
    """
    x0 = proj[t, n, j] + s0 + b_hh[j]
    x1 = x0
    x2 = x0
    x3 = x0
    if cell != CELL_RNN:
        x1 = proj[t, n, hid + j] + s1 + b_hh[hid + j]
        if cell == CELL_LSTM:
            x2 = proj[t, n, 2 * hid + j] + s2 + b_hh[2 * hid + j]
            x3 = proj[t, n, 3 * hid + j] + s3 + b_hh[3 * hid + j]
        else:
            x2 = proj[t, n, 2 * hid + j]
            x3 = s2 + b_hh[2 * hid + j]
    return x0, x1, x2, x3


@cuda.jit(device=True)
def unit_forward(cell, act, x0, x1, x2, x3, c_prev, h_prev, cache, t, n, j, hid):
    """One unit's step: writes ``cache[t, n]`` and returns ``(h, c)``."""
    if cell == CELL_LSTM:
        i, f, g, o, c, h = lstm_point(x0, x1, x2, x3, c_prev)
        cache[t, n, j] = i
        cache[t, n, hid + j] = f
        cache[t, n, 2 * hid + j] = g
        cache[t, n, 3 * hid + j] = o
        cache[t, n, 4 * hid + j] = c
        return h, c
    if cell == CELL_GRU:
        r, z, nn, h = gru_point(x0, x1, x2, x3, h_prev)
        cache[t, n, j] = r
        cache[t, n, hid + j] = z
        cache[t, n, 2 * hid + j] = nn
        cache[t, n, 3 * hid + j] = x3
        return h, c_prev
    h = rnn_point(x0, act)
    return h, c_prev


@cuda.jit(device=True)
def unit_backward(cell, act, dh, dc, h_prev, c_prev, out, col, cache, d_ih, d_hh, t, n, j, hid):
    """One unit's BPTT step: writes ``d_ih[t, n]`` (and the GRU's ``d_hh[t, n]``).

    Returns ``(q0, q1, q2, q3, direct, dc_prev)``: the gradients at the recurrent
    pre-activations (what multiplies ``W_hh``), the part of ``dh_prev`` that bypasses
    ``W_hh`` (GRU only) and the gradient at ``c_prev`` (LSTM only).
    """
    if cell == CELL_LSTM:
        da_i, da_f, da_g, da_o, dc_prev = lstm_point_backward(
            dh, dc, cache[t, n, j], cache[t, n, hid + j], cache[t, n, 2 * hid + j],
            cache[t, n, 3 * hid + j], cache[t, n, 4 * hid + j], c_prev)
        d_ih[t, n, j] = da_i
        d_ih[t, n, hid + j] = da_f
        d_ih[t, n, 2 * hid + j] = da_g
        d_ih[t, n, 3 * hid + j] = da_o
        return da_i, da_f, da_g, da_o, 0.0, dc_prev
    if cell == CELL_GRU:
        da_r, da_z, da_n, dhn, direct = gru_point_backward(
            dh, cache[t, n, j], cache[t, n, hid + j], cache[t, n, 2 * hid + j],
            cache[t, n, 3 * hid + j], h_prev)
        d_ih[t, n, j] = da_r
        d_ih[t, n, hid + j] = da_z
        d_ih[t, n, 2 * hid + j] = da_n
        d_hh[t, n, j] = da_r
        d_hh[t, n, hid + j] = da_z
        d_hh[t, n, 2 * hid + j] = dhn
        return da_r, da_z, dhn, 0.0, direct, dc
    d = rnn_point_backward(dh, out[t, n, col + j], act)
    d_ih[t, n, j] = d
    return d, 0.0, 0.0, 0.0, 0.0, dc


@cuda.jit(device=True)
def zero_unit(cell, d_ih, d_hh, t, n, j, hid, gates):
    """Inactive step: zero unit ``j``'s gate gradients."""
    for g in range(gates):
        d_ih[t, n, g * hid + j] = 0.0
        if cell == CELL_GRU:
            d_hh[t, n, g * hid + j] = 0.0


# --------------------------------------------------------------------------- persistent kernels


@cached_factory
def _forward_persistent(dtype, rows, gates):
    dt = numba_type(dtype)
    acc_size = rows * gates
    cell = CELL_OF_GATES[gates]  # a compile-time constant: the other cells' code folds away

    def kernel(proj, w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache, h_n, c_n):
        steps = proj.shape[0]
        batch = proj.shape[1]
        hid = w_hh.shape[1]
        width = gates * hid
        w_size = width * hid
        smem = cuda.shared.array(0, dtype=dt)  # [W_hh.T (H x G*H) | h (rows x H)]
        j = cuda.threadIdx.x
        n0 = cuda.blockIdx.x * rows
        for idx in range(j, w_size, cuda.blockDim.x):
            gj = idx // hid
            k = idx - gj * hid
            smem[k * width + gj] = w_hh[gj, k]
        acc = cuda.local.array(acc_size, dtype=dt)
        c_loc = cuda.local.array(rows, dtype=dt)
        h_new = cuda.local.array(rows, dtype=dt)
        for r in range(rows):
            n = n0 + r
            c_loc[r] = 0.0
            smem[w_size + r * hid + j] = h0[n, j] if n < batch else dt(0.0)
            if n < batch and cell == CELL_LSTM:
                c_loc[r] = c0[n, j]
        cuda.syncthreads()
        for s in range(steps):
            t = steps - 1 - s if reverse else s
            for q in range(acc_size):
                acc[q] = 0.0
            for k in range(hid):
                base = k * width + j
                for g in range(gates):
                    w = smem[base + g * hid]
                    for r in range(rows):
                        acc[r * gates + g] += w * smem[w_size + r * hid + k]
            for r in range(rows):
                n = n0 + r
                h_old = smem[w_size + r * hid + j]
                h_new[r] = h_old
                if n < batch:
                    if t < lengths[n]:
                        a = r * gates
                        x0, x1, x2, x3 = gate_inputs(
                            cell, proj, b_hh, t, n, j, hid, acc[a],
                            acc[a + 1] if gates > 1 else dt(0.0),
                            acc[a + 2] if gates > 2 else dt(0.0),
                            acc[a + 3] if gates > 3 else dt(0.0))
                        h, c = unit_forward(cell, act, x0, x1, x2, x3, c_loc[r], h_old, cache,
                                            t, n, j, hid)
                        c_loc[r] = c
                        h_new[r] = h
                        out[t, n, col + j] = h
                    else:
                        out[t, n, col + j] = 0.0
            cuda.syncthreads()
            for r in range(rows):
                smem[w_size + r * hid + j] = h_new[r]
            cuda.syncthreads()
        for r in range(rows):
            n = n0 + r
            if n < batch:
                h_n[n, j] = smem[w_size + r * hid + j]
                if cell == CELL_LSTM:
                    c_n[n, j] = c_loc[r]

    return cuda.jit(kernel)


@cached_factory
def _backward_persistent(dtype, rows, gates):
    dt = numba_type(dtype)
    cell = CELL_OF_GATES[gates]  # a compile-time constant: the other cells' code folds away

    def kernel(w_hh, h0, c0, lengths, reverse, act, out, col, cache, grad_out, grad_h_n,
               grad_c_n, d_ih, d_hh, grad_h0, grad_c0):
        steps = out.shape[0]
        batch = out.shape[1]
        hid = w_hh.shape[1]
        width = gates * hid
        w_size = width * hid
        smem = cuda.shared.array(0, dtype=dt)  # [W_hh (G*H x H) | dG (rows x G*H)]
        j = cuda.threadIdx.x
        n0 = cuda.blockIdx.x * rows
        for idx in range(j, w_size, cuda.blockDim.x):
            gj = idx // hid
            smem[idx] = w_hh[gj, idx - gj * hid]
        dh_loc = cuda.local.array(rows, dtype=dt)
        dc_loc = cuda.local.array(rows, dtype=dt)
        active = cuda.local.array(rows, dtype=int8)
        for r in range(rows):
            n = n0 + r
            dh_loc[r] = grad_h_n[n, j] if n < batch else dt(0.0)
            dc_loc[r] = 0.0
            if n < batch and cell == CELL_LSTM:
                dc_loc[r] = grad_c_n[n, j]
        cuda.syncthreads()
        for s in range(steps):
            t = s if reverse else steps - 1 - s
            prev = t + 1 if reverse else t - 1
            for r in range(rows):
                n = n0 + r
                active[r] = 0
                if n < batch:
                    has_prev = 0 <= prev and prev < lengths[n]
                    hp = out[prev, n, col + j] if has_prev else h0[n, j]
                    if t < lengths[n]:
                        cp = dt(0.0)
                        if cell == CELL_LSTM:
                            cp = cache[prev, n, 4 * hid + j] if has_prev else c0[n, j]
                        q0, q1, q2, q3, direct, dcp = unit_backward(
                            cell, act, dh_loc[r] + grad_out[t, n, col + j], dc_loc[r], hp, cp,
                            out, col, cache, d_ih, d_hh, t, n, j, hid)
                        base = w_size + r * width + j
                        smem[base] = q0
                        if gates > 1:
                            smem[base + hid] = q1
                        if gates > 2:
                            smem[base + 2 * hid] = q2
                        if gates > 3:
                            smem[base + 3 * hid] = q3
                        dh_loc[r] = direct
                        dc_loc[r] = dcp
                        active[r] = 1
                    else:
                        zero_unit(cell, d_ih, d_hh, t, n, j, hid, gates)
            cuda.syncthreads()
            for r in range(rows):
                if active[r]:
                    base = w_size + r * width
                    total = dt(0.0)
                    for gj in range(width):
                        total += smem[base + gj] * smem[gj * hid + j]
                    dh_loc[r] = dh_loc[r] + total
            cuda.syncthreads()
        for r in range(rows):
            n = n0 + r
            if n < batch:
                grad_h0[n, j] = dh_loc[r]
                if cell == CELL_LSTM:
                    grad_c0[n, j] = dc_loc[r]

    return cuda.jit(kernel)


# --------------------------------------------------------------------------- per-step kernels


@cuda.jit
def _forward_step(cell, proj, rec, b_hh, lengths, t, act, out, col, cache, h, c):
    """Step ``t`` after ``rec = h @ W_hh.T``: one thread per (row, unit)."""
    idx = cuda.grid(1)
    batch = h.shape[0]
    hid = h.shape[1]
    if idx < batch * hid:
        n = idx // hid
        j = idx - n * hid
        if t < lengths[n]:
            s0 = rec[n, j]
            s1 = rec[n, hid + j] if cell != CELL_RNN else s0
            s2 = rec[n, 2 * hid + j] if cell != CELL_RNN else s0
            s3 = rec[n, 3 * hid + j] if cell == CELL_LSTM else s0
            x0, x1, x2, x3 = gate_inputs(cell, proj, b_hh, t, n, j, hid, s0, s1, s2, s3)
            h_old = h[n, j]
            c_old = c[n, j] if cell == CELL_LSTM else h_old
            h_new, c_new = unit_forward(cell, act, x0, x1, x2, x3, c_old, h_old, cache, t, n, j,
                                        hid)
            h[n, j] = h_new
            if cell == CELL_LSTM:
                c[n, j] = c_new
            out[t, n, col + j] = h_new
        else:
            out[t, n, col + j] = 0.0


@cuda.jit
def _backward_step(cell, h0, c0, lengths, t, reverse, act, out, col, cache, grad_out, d_ih,
                   d_hh, dh, dc):
    """Step ``t`` before ``dh += dG[t] @ W_hh``: gate gradients and ``dc``."""
    idx = cuda.grid(1)
    batch = dh.shape[0]
    hid = dh.shape[1]
    if idx < batch * hid:
        n = idx // hid
        j = idx - n * hid
        prev = t + 1 if reverse else t - 1
        has_prev = 0 <= prev and prev < lengths[n]
        hp = out[prev, n, col + j] if has_prev else h0[n, j]
        if t < lengths[n]:
            cp = hp
            dc_in = hp
            if cell == CELL_LSTM:
                cp = cache[prev, n, 4 * hid + j] if has_prev else c0[n, j]
                dc_in = dc[n, j]
            q0, q1, q2, q3, direct, dcp = unit_backward(
                cell, act, dh[n, j] + grad_out[t, n, col + j], dc_in, hp, cp, out, col, cache,
                d_ih, d_hh, t, n, j, hid)
            dh[n, j] = direct
            if cell == CELL_LSTM:
                dc[n, j] = dcp
        else:
            zero_unit(cell, d_ih, d_hh, t, n, j, hid, d_ih.shape[2] // hid)


# --------------------------------------------------------------------------- launchers


def shared_bytes(gates, hidden, itemsize, rows=None):
    """Shared memory of the persistent kernels (the larger of forward and backward)."""
    rows = _jit.PERSISTENT_ROWS if rows is None else rows
    return (gates * hidden * hidden + rows * gates * hidden) * itemsize


def use_persistent(gates, hidden, dtype):
    """Whether a layer of this size runs the one-launch persistent recurrence."""
    return (hidden <= _jit.MAX_THREADS
            and shared_bytes(gates, hidden, np.dtype(dtype).itemsize) <= _jit.PERSISTENT_MAX_BYTES)


def _expect(array, shape, name, dtype):
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(array.shape)}")
    if array.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {array.dtype}")


def check_arguments(gates, cache_width, proj_shape, w_hh, b_hh, h0, c0, lengths, out, col,
                    cache, states, is_lstm):
    """Validate shapes and dtypes before a launch: the kernels do not check bounds."""
    steps, batch, width = proj_shape
    dtype = w_hh.dtype
    hid = w_hh.shape[1] if len(w_hh.shape) == 2 else -1
    _expect(w_hh, (gates * hid, hid), "w_hh", dtype)
    if width != gates * hid:
        raise ValueError(f"gate width {width} does not match w_hh {tuple(w_hh.shape)}")
    _expect(b_hh, (gates * hid,), "b_hh", dtype)
    cell_shape = (batch, hid) if is_lstm else (0, 0)
    _expect(h0, (batch, hid), "h0", dtype)
    _expect(c0, cell_shape, "c0", dtype)
    _expect(lengths, (batch,), "lengths", np.dtype(np.int64))
    if (len(out.shape) != 3 or tuple(out.shape[:2]) != (steps, batch)
            or not 0 <= col <= out.shape[2] - hid):
        raise ValueError(f"out of shape {tuple(out.shape)} cannot hold columns {col}:{col + hid}"
                         f" of {steps} steps x {batch} rows")
    _expect(out, out.shape, "out", dtype)
    _expect(cache, (steps, batch, cache_width), "cache", dtype)
    for name, array in states.items():
        _expect(array, cell_shape if name.startswith(("c_", "grad_c")) else (batch, hid), name,
                dtype)


def make_cell(cell, cache_width):
    """Build ``forward_sequence`` and ``backward_sequence`` launchers for one cell id."""
    gates = GATES[cell]
    is_lstm = cell == CELL_LSTM

    @on_device(outputs=(8, 10, 11, 12))
    def forward_sequence(proj, w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache, h_n,
                         c_n):
        """Run the recurrence of one layer and direction; see :mod:`rnnumba.kernels`."""
        steps, batch, _ = proj.shape
        hid = w_hh.shape[1]
        check_arguments(gates, cache_width(hid), proj.shape, w_hh, b_hh, h0, c0, lengths, out,
                        col, cache, {"h_n": h_n, "c_n": c_n}, is_lstm)
        _expect(proj, proj.shape, "proj", w_hh.dtype)
        if batch == 0 or steps == 0:
            copy(h_n, h0)
            if is_lstm:
                copy(c_n, c0)
            return
        reverse = bool(reverse)
        if use_persistent(gates, hid, proj.dtype):
            rows = _jit.PERSISTENT_ROWS
            kernel = _forward_persistent(np.dtype(proj.dtype).str, rows, gates)
            nbytes = shared_bytes(gates, hid, proj.dtype.itemsize, rows)
            kernel[blocks(batch, rows), hid, 0, nbytes](
                proj, w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache, h_n, c_n)
            return
        copy(h_n, h0)
        if is_lstm:
            copy(c_n, c0)
        rec = workspace((batch, gates * hid), proj.dtype)
        block = _jit.ELEMENTWISE_BLOCK
        grid = blocks(batch * hid, block)
        for s in range(steps):
            t = steps - 1 - s if reverse else s
            gemm(h_n, w_hh, rec, trans_b=True)
            _forward_step[grid, block](cell, proj, rec, b_hh, lengths, t, act, out, col, cache,
                                       h_n, c_n)

    @on_device(outputs=(13, 14, 15, 16))
    def backward_sequence(w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache, grad_out,
                          grad_h_n, grad_c_n, d_ih, d_hh, grad_h0, grad_c0):
        """BPTT of one layer and direction; see :mod:`rnnumba.kernels`."""
        steps, batch, _ = out.shape
        hid = w_hh.shape[1]
        check_arguments(gates, cache_width(hid), (steps, batch, gates * hid), w_hh, b_hh, h0, c0,
                        lengths, out, col, cache,
                        {"grad_h_n": grad_h_n, "grad_c_n": grad_c_n, "grad_h0": grad_h0,
                         "grad_c0": grad_c0}, is_lstm)
        for name, array in (("grad_out", grad_out), ("d_ih", d_ih), ("d_hh", d_hh)):
            width = out.shape[2] if name == "grad_out" else gates * hid
            _expect(array, (steps, batch, width), name, out.dtype)
        if batch == 0 or steps == 0:
            copy(grad_h0, grad_h_n)
            if is_lstm:
                copy(grad_c0, grad_c_n)
            return
        reverse = bool(reverse)
        if use_persistent(gates, hid, out.dtype):
            rows = _jit.PERSISTENT_ROWS
            kernel = _backward_persistent(np.dtype(out.dtype).str, rows, gates)
            nbytes = shared_bytes(gates, hid, out.dtype.itemsize, rows)
            kernel[blocks(batch, rows), hid, 0, nbytes](
                w_hh, h0, c0, lengths, reverse, act, out, col, cache, grad_out, grad_h_n,
                grad_c_n, d_ih, d_hh, grad_h0, grad_c0)
            return
        copy(grad_h0, grad_h_n)
        if is_lstm:
            copy(grad_c0, grad_c_n)
        d_rec = d_hh if cell == CELL_GRU else d_ih
        block = _jit.ELEMENTWISE_BLOCK
        grid = blocks(batch * hid, block)
        for s in range(steps):
            t = s if reverse else steps - 1 - s
            _backward_step[grid, block](cell, h0, c0, lengths, t, reverse, act, out, col, cache,
                                        grad_out, d_ih, d_hh, grad_h0, grad_c0)
            gemm(d_rec[t], w_hh, grad_h0, accumulate=True)

    return forward_sequence, backward_sequence
