"""LSTM on the CPU, PyTorch's gate order i, f, g, o."""

import numpy as np

from ._jit import kernel, lstm_point, lstm_point_backward
from ._state import (copy_rows, copy_vector, optional_workspace, recurrent_gradient, shortest,
                     step_product, step_weights, through_cache, time_major_view, unmanaged)
from ._threads import run_over_rows

GATES = 4


def cache_width(hidden_size):
    """Columns of ``cache`` per step: i, f, g, o after activation, then c."""
    return 5 * hidden_size


def forward_sequence(proj, w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache, h_n, c_n):
    """Run the recurrence of one layer and direction; see :mod:`rnnumba.kernels`. ``proj`` may
    be the gate columns of ``cache``."""
    steps, batch, _ = proj.shape
    hid = w_hh.shape[1]
    rec = np.empty((batch, GATES * hid), dtype=proj.dtype)
    w_hh_t, transposed = step_weights(w_hh)
    proj, over_cache = through_cache(proj, cache)
    loop = (steps, batch, GATES * hid, hid)
    run_over_rows(_forward_rows, loop, proj, over_cache, w_hh, w_hh_t, transposed, b_hh, h0, c0,
                  lengths, reverse, out, col, cache, h_n, c_n, rec)


def backward_sequence(w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache,
                      grad_out, grad_h_n, grad_c_n, d_ih, d_hh, grad_h0, grad_c0):
    """BPTT of one layer and direction; writes ``d_ih`` only (``d_hh`` is the same), which may
    be the gate columns of ``cache`` (see :mod:`rnnumba.kernels`)."""
    steps, batch, _ = out.shape
    hid = w_hh.shape[1]
    dh_rec = np.empty((batch, hid), dtype=out.dtype)
    w_hh_t, transposed = step_weights(w_hh, backward=True)
    d_ih, over_cache = through_cache(d_ih, cache)
    grad_out, batch_major = time_major_view(grad_out)
    loop = (steps, batch, GATES * hid, hid)
    run_over_rows(_backward_rows, loop, w_hh, w_hh_t, transposed, h0, c0, lengths, reverse, out,
                  col, cache, grad_out, batch_major, grad_h_n, grad_c_n, d_ih, over_cache, grad_h0,
                  grad_c0, dh_rec)


@kernel
def _forward_rows(proj, over_cache, w_hh, w_hh_t, transposed, b_hh, h0, c0, lengths, reverse, out,
                  col, cache, h_n, c_n, rec, start, stop):
    """The forward time loop over batch rows ``start:stop``; ``rec`` is workspace. Each
    step's projection is read from ``proj``, or with ``over_cache`` from the gate columns of
    ``cache`` (``proj`` unused); the gates go into those columns."""
    # row views of these carry no reference counts (see ``unmanaged``)
    proj, out, cache, h_n = unmanaged(proj), unmanaged(out), unmanaged(cache), unmanaged(h_n)
    c_n, rec = unmanaged(c_n), unmanaged(rec)
    steps = cache.shape[0]
    hid = w_hh.shape[1]
    copy_rows(h_n, h0, start, stop)
    h = h_n[start:stop]
    copy_rows(c_n, c0, start, stop)
    rec_rows = rec[start:stop]
    work = optional_workspace(transposed, rec.shape[1], stop - start, rec)
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        step_product(h, w_hh_t, w_hh, rec_rows, work)
        for n in range(start, stop):
            y = out[t, n, col:col + hid]
            if t < lengths[n]:
                keep = cache[t, n]
                _forward_row(keep if over_cache else proj[t, n], rec[n], b_hh, keep, c_n[n],
                             h_n[n])
                copy_vector(keep[4 * hid:5 * hid], c_n[n])
                copy_vector(y, h_n[n])
            else:
                y[:] = 0.0


@kernel
def _backward_rows(w_hh, w_hh_t, transposed, h0, c0, lengths, reverse, out, col, cache, grad_out,
                   batch_major, grad_h_n, grad_c_n, d_ih, over_cache, grad_h0, grad_c0, dh_rec,
                   start, stop):
    """The BPTT time loop over batch rows ``start:stop``; ``dh_rec`` is workspace.

    With ``over_cache`` the gate gradients go over the gate columns of ``cache`` (``d_ih`` is
    then unused) and, for the recurrent GEMM, into a contiguous block of this step's rows.
    """
    # row views of these carry no reference counts (see ``unmanaged``)
    cache, grad_out, d_ih = unmanaged(cache), unmanaged(grad_out), unmanaged(d_ih)
    grad_h0, grad_c0 = unmanaged(grad_h0), unmanaged(grad_c0)
    steps = out.shape[0]
    hid = w_hh.shape[1]
    copy_rows(grad_h0, grad_h_n, start, stop)
    dh = grad_h0[start:stop]
    copy_rows(grad_c0, grad_c_n, start, stop)
    row_lengths = lengths[start:stop]
    work = optional_workspace(transposed, hid, stop - start, dh_rec)
    step_gates = optional_workspace(over_cache, stop - start, 4 * hid, dh_rec)
    all_active_until = shortest(row_lengths)
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        prev = t + 1 if reverse else t - 1
        d_t = step_gates if over_cache else d_ih[t, start:stop]
        for n in range(start, stop):
            if t < lengths[n]:
                g_row = (grad_out[n, t, col:col + hid] if batch_major
                         else grad_out[t, n, col:col + hid])
                if 0 <= prev < lengths[n]:
                    c_prev = cache[prev, n, 4 * hid:5 * hid]
                else:
                    c_prev = c0[n, :]
                _backward_row(grad_h0[n], g_row, grad_c0[n], cache[t, n], c_prev,
                              d_t[n - start])
                if over_cache:
                    # a separate copy: written over the gates inside the loop above, the
                    # nine arrays it then writes made it run at half the speed
                    copy_vector(cache[t, n, :4 * hid], d_t[n - start])
            else:
                d_t[n - start, :] = 0.0
                if over_cache:
                    cache[t, n, :4 * hid] = 0.0
        recurrent_gradient(d_t, w_hh, w_hh_t, t, row_lengths, t < all_active_until,
                           dh_rec[start:stop], dh, False, work)


@kernel
def _backward_row(dh_row, g, dc_row, keep, c_prev, d):
    """One row of the elementwise gradient: pre-activation gradients into ``d``, and ``dc``
    carried to the previous step in place (gate blocks as separate views, see above)."""
    hid = dh_row.shape[0]
    k_i, k_f, k_g, k_o = keep[:hid], keep[hid:2 * hid], keep[2 * hid:3 * hid], keep[3 * hid:4 * hid]
    k_c = keep[4 * hid:]
    d_i, d_f, d_g, d_o = d[:hid], d[hid:2 * hid], d[2 * hid:3 * hid], d[3 * hid:]
    for j in range(hid):
        da_i, da_f, da_g, da_o, dc_prev = lstm_point_backward(
            dh_row[j] + g[j], dc_row[j], k_i[j], k_f[j], k_g[j], k_o[j], k_c[j], c_prev[j])
        d_i[j] = da_i
        d_f[j] = da_f
        d_g[j] = da_g
        d_o[j] = da_o
        dc_row[j] = dc_prev


@kernel
def _forward_row(p, r, b_hh, keep, c_row, h_row):
    """One row of the elementwise pass: the pre-activations ``p + (r + b_hh)`` (PyTorch's
    order) go into ``r``, then the gates into the gate columns of ``keep`` (``p`` may be
    those columns) and the new state into ``h_row`` and ``c_row``.

    Each gate block is its own 1-D view: with one array and offsets ``k*hid + j`` LLVM sees
    stores at an unknown distance and does not vectorise the loop. Summing first leaves the
    gate loop 5 arrays to read instead of 13, and it ran 15% faster at 32 units.
    """
    hid = h_row.shape[0]
    for j in range(4 * hid):
        r[j] = p[j] + (r[j] + b_hh[j])
    r_i, r_f, r_g, r_o = r[:hid], r[hid:2 * hid], r[2 * hid:3 * hid], r[3 * hid:]
    k_i, k_f, k_g, k_o = keep[:hid], keep[hid:2 * hid], keep[2 * hid:3 * hid], keep[3 * hid:4 * hid]
    for j in range(hid):
        i, f, g, o, cj, hj = lstm_point(r_i[j], r_f[j], r_g[j], r_o[j], c_row[j])
        k_i[j] = i
        k_f[j] = f
        k_g[j] = g
        k_o[j] = o
        c_row[j] = cj
        h_row[j] = hj
