"""GRU on the CPU, PyTorch's gate order r, z, n with the reset gate applied to ``W_hn h + b_hn``."""

import numpy as np

from ._jit import kernel, gru_point, gru_point_backward
from ._state import (copy_rows, copy_vector, optional_workspace, recurrent_gradient, step_product,
                     step_weights, through_cache, time_major_view, unmanaged)
from ._threads import run_over_rows

GATES = 3


def cache_width(hidden_size):
    """Columns of ``cache`` per step: r, z, n after activation, then ``W_hn h + b_hn``."""
    return 4 * hidden_size


def forward_sequence(proj, w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache, h_n, c_n):
    """Run the recurrence of one layer and direction; see :mod:`rnnumba.kernels`. ``proj`` may
    be the gate columns of ``cache``."""
    steps, batch, _ = proj.shape
    hid = w_hh.shape[1]
    rec = np.empty((batch, GATES * hid), dtype=proj.dtype)
    w_hh_t, transposed = step_weights(w_hh)
    proj, over_cache = through_cache(proj, cache)
    loop = (steps, batch, GATES * hid, hid)
    run_over_rows(_forward_rows, loop, proj, over_cache, w_hh, w_hh_t, transposed, b_hh, h0,
                  lengths, reverse, out, col, cache, h_n, rec)


def backward_sequence(w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache,
                      grad_out, grad_h_n, grad_c_n, d_ih, d_hh, grad_h0, grad_c0):
    """BPTT of one layer and direction; ``d_ih`` and ``d_hh`` differ in the n gate. ``d_ih``
    may be the gate columns of ``cache``, ``d_hh`` then its last ``H`` columns, the n gate
    only (see :mod:`rnnumba.kernels`)."""
    steps, batch, _ = out.shape
    hid = w_hh.shape[1]
    dh_rec = np.empty((batch, hid), dtype=out.dtype)
    w_hh_t, transposed = step_weights(w_hh, backward=True)
    d_ih, over_cache = through_cache(d_ih, cache)
    if over_cache:
        if d_hh.shape != (steps, batch, hid) or not np.may_share_memory(d_hh, cache):
            raise ValueError("with d_ih in the gate columns of cache, d_hh must be "
                             "cache[:, :, 3*H:] (the n gate's recurrent gradient)")
        d_hh = d_ih  # placeholder: the kernel writes through cache
    grad_out, batch_major = time_major_view(grad_out)
    loop = (steps, batch, GATES * hid, hid)
    run_over_rows(_backward_rows, loop, w_hh, w_hh_t, transposed, h0, lengths, reverse, out, col,
                  cache, grad_out, batch_major, grad_h_n, d_ih, over_cache, d_hh, grad_h0, dh_rec)


@kernel
def _forward_rows(proj, over_cache, w_hh, w_hh_t, transposed, b_hh, h0, lengths, reverse, out, col,
                  cache, h_n, rec, start, stop):
    """The forward time loop over batch rows ``start:stop``; ``rec`` is workspace. Each
    step's projection goes through the gate columns of ``cache``, which the gates replace:
    copied there from ``proj``, or already there with ``over_cache`` (``proj`` unused)."""
    # row views of these carry no reference counts (see ``unmanaged``)
    proj, b_hh, out, cache = unmanaged(proj), unmanaged(b_hh), unmanaged(out), unmanaged(cache)
    h_n, rec = unmanaged(h_n), unmanaged(rec)
    steps = cache.shape[0]
    hid = w_hh.shape[1]
    copy_rows(h_n, h0, start, stop)
    h = h_n[start:stop]
    rec_rows = rec[start:stop]
    work = optional_workspace(transposed, rec.shape[1], stop - start, rec)
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        step_product(h, w_hh_t, w_hh, rec_rows, work)
        for n in range(start, stop):
            y = out[t, n, col:col + hid]
            if t < lengths[n]:
                if not over_cache:
                    copy_vector(cache[t, n, :3 * hid], proj[t, n])
                _forward_row(rec[n], b_hh, cache[t, n], h_n[n])
                copy_vector(y, h_n[n])
            else:
                y[:] = 0.0


@kernel
def _backward_rows(w_hh, w_hh_t, transposed, h0, lengths, reverse, out, col, cache, grad_out,
                   batch_major, grad_h_n, d_ih, over_cache, d_hh, grad_h0, dh_rec, start, stop):
    """The BPTT time loop over batch rows ``start:stop``; ``dh_rec`` is workspace.

    With ``over_cache`` the input-side gate gradients go over the gates in ``cache`` and the
    n gate's recurrent gradient over ``W_hn h + b_hn`` (``d_ih``, ``d_hh`` unused); the
    recurrent GEMM then reads this step's rows from a contiguous block.
    """
    # row views of these carry no reference counts (see ``unmanaged``)
    out, cache, grad_out = unmanaged(out), unmanaged(cache), unmanaged(grad_out)
    d_ih, d_hh, grad_h0 = unmanaged(d_ih), unmanaged(d_hh), unmanaged(grad_h0)
    steps = out.shape[0]
    hid = w_hh.shape[1]
    copy_rows(grad_h0, grad_h_n, start, stop)
    dh = grad_h0[start:stop]
    row_lengths = lengths[start:stop]
    work = optional_workspace(transposed, hid, stop - start, dh_rec)
    step_gates = optional_workspace(over_cache, stop - start, 3 * hid, dh_rec)
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        prev = t + 1 if reverse else t - 1
        dh_t = step_gates if over_cache else d_hh[t, start:stop]
        for n in range(start, stop):
            if t < lengths[n]:
                g_row = (grad_out[n, t, col:col + hid] if batch_major
                         else grad_out[t, n, col:col + hid])
                if 0 <= prev < lengths[n]:
                    h_prev = out[prev, n, col:col + hid]
                else:
                    h_prev = h0[n, :]
                if over_cache:
                    _backward_row_over_cache(grad_h0[n], g_row, cache[t, n], h_prev,
                                             dh_t[n - start])
                else:
                    _backward_row(grad_h0[n], g_row, cache[t, n], h_prev, d_ih[t, n],
                                  dh_t[n - start])
            else:
                if over_cache:
                    cache[t, n, :] = 0.0
                else:
                    d_ih[t, n, :] = 0.0
                dh_t[n - start, :] = 0.0
        recurrent_gradient(dh_t, w_hh, w_hh_t, t, row_lengths, False, dh_rec[start:stop], dh,
                           True, work)


@kernel
def _backward_row(dh_row, g, keep, h_prev, di, dr):
    """One row of the elementwise gradient: ``di`` for the input projection, ``dr`` for the
    recurrent one; ``dh_row`` receives the direct path to the previous state."""
    hid = dh_row.shape[0]
    k_r, k_z, k_n, k_hn = keep[:hid], keep[hid:2 * hid], keep[2 * hid:3 * hid], keep[3 * hid:]
    di_r, di_z, di_n = di[:hid], di[hid:2 * hid], di[2 * hid:]
    dr_r, dr_z, dr_n = dr[:hid], dr[hid:2 * hid], dr[2 * hid:]
    for j in range(hid):
        da_r, da_z, da_n, dhn, direct = gru_point_backward(
            dh_row[j] + g[j], k_r[j], k_z[j], k_n[j], k_hn[j], h_prev[j])
        di_r[j] = da_r
        di_z[j] = da_z
        di_n[j] = da_n
        dr_r[j] = da_r
        dr_z[j] = da_z
        dr_n[j] = dhn
        dh_row[j] = direct


@kernel
def _backward_row_over_cache(dh_row, g, keep, h_prev, dr):
    """:func:`_backward_row` with the input-side gate gradients written over the gates in
    ``keep`` and the n gate's recurrent one over ``W_hn h + b_hn`` (read before written,
    index by index, so the loop still vectorises)."""
    hid = dh_row.shape[0]
    k_r, k_z, k_n, k_hn = keep[:hid], keep[hid:2 * hid], keep[2 * hid:3 * hid], keep[3 * hid:]
    dr_r, dr_z, dr_n = dr[:hid], dr[hid:2 * hid], dr[2 * hid:]
    for j in range(hid):
        da_r, da_z, da_n, dhn, direct = gru_point_backward(
            dh_row[j] + g[j], k_r[j], k_z[j], k_n[j], k_hn[j], h_prev[j])
        k_r[j] = da_r
        k_z[j] = da_z
        k_n[j] = da_n
        dr_r[j] = da_r
        dr_z[j] = da_z
        dr_n[j] = dhn
        k_hn[j] = dhn
        dh_row[j] = direct


@kernel
def _forward_row(r, b_hh, keep, h_row):
    """One row of the elementwise pass: the projection is read from the gate columns of
    ``keep`` and the gates replace it (read before written, index by index); the new state
    goes into ``h_row``.

    Each gate block is its own 1-D view: with one array and offsets ``k*hid + j`` LLVM sees
    stores at an unknown distance and does not vectorise the loop.
    """
    hid = h_row.shape[0]
    r_r, r_z, r_n = r[:hid], r[hid:2 * hid], r[2 * hid:]
    b_r, b_z, b_n = b_hh[:hid], b_hh[hid:2 * hid], b_hh[2 * hid:]
    k_r, k_z, k_n, k_hn = keep[:hid], keep[hid:2 * hid], keep[2 * hid:3 * hid], keep[3 * hid:]
    for j in range(hid):
        hn = r_n[j] + b_n[j]
        rj, zj, nj, hj = gru_point(k_r[j] + r_r[j] + b_r[j], k_z[j] + r_z[j] + b_z[j], k_n[j],
                                   hn, h_row[j])
        k_r[j] = rj
        k_z[j] = zj
        k_n[j] = nj
        k_hn[j] = hn
        h_row[j] = hj
