"""LSTM on the CPU, PyTorch's gate order i, f, g, o."""

import numpy as np

from ._jit import kernel, lstm_point, lstm_point_backward
from ._state import gather_previous, recurrent_gradient

GATES = 4


def cache_width(hidden_size):
    """Columns of ``cache`` per step: i, f, g, o after activation, then c."""
    return 5 * hidden_size


@kernel
def forward_sequence(proj, w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache, h_n, c_n):
    """Run the recurrence of one layer and direction; see :mod:`rnnumba.kernels`."""
    steps, batch, _ = proj.shape
    hid = w_hh.shape[1]
    h = h_n
    c = c_n
    h[:, :] = h0
    c[:, :] = c0
    rec = np.empty((batch, 4 * hid), dtype=proj.dtype)
    w_hh_t = w_hh.T
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        np.dot(h, w_hh_t, rec)
        for n in range(batch):
            y = out[t, n, col:col + hid]
            if t < lengths[n]:
                p = proj[t, n]
                r = rec[n]
                keep = cache[t, n]
                c_row = c[n]
                h_row = h[n]
                for j in range(hid):
                    i, f, g, o, cj, hj = lstm_point(
                        p[j] + r[j] + b_hh[j],
                        p[hid + j] + r[hid + j] + b_hh[hid + j],
                        p[2 * hid + j] + r[2 * hid + j] + b_hh[2 * hid + j],
                        p[3 * hid + j] + r[3 * hid + j] + b_hh[3 * hid + j],
                        c_row[j])
                    keep[j] = i
                    keep[hid + j] = f
                    keep[2 * hid + j] = g
                    keep[3 * hid + j] = o
                    c_row[j] = cj
                    h_row[j] = hj
                # Separate copies keep the loop above to few stored streams (vectorised).
                keep[4 * hid:5 * hid] = c_row
                y[:] = h_row
            else:
                y[:] = 0.0


@kernel
def backward_sequence(w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache,
                      grad_out, grad_h_n, grad_c_n, h_prev, d_ih, d_hh, grad_h0, grad_c0):
    """BPTT of one layer and direction; writes ``d_ih`` only (``d_hh`` is the same)."""
    steps, batch, _ = out.shape
    hid = w_hh.shape[1]
    gather_previous(out, col, h0, lengths, reverse, h_prev)
    dh = grad_h0
    dc = grad_c0
    dh[:, :] = grad_h_n
    dc[:, :] = grad_c_n
    dh_rec = np.empty((batch, hid), dtype=out.dtype)
    shortest = lengths.min()
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        prev = t + 1 if reverse else t - 1
        d_t = d_ih[t]
        for n in range(batch):
            if t < lengths[n]:
                keep = cache[t, n]
                d = d_t[n]
                dh_row = dh[n]
                dc_row = dc[n]
                g = grad_out[t, n, col:col + hid]
                if 0 <= prev < lengths[n]:
                    c_prev = cache[prev, n, 4 * hid:5 * hid]
                else:
                    c_prev = c0[n, :]
                for j in range(hid):
                    da_i, da_f, da_g, da_o, dc_prev = lstm_point_backward(
                        dh_row[j] + g[j], dc_row[j],
                        keep[j], keep[hid + j], keep[2 * hid + j], keep[3 * hid + j],
                        keep[4 * hid + j], c_prev[j])
                    d[j] = da_i
                    d[hid + j] = da_f
                    d[2 * hid + j] = da_g
                    d[3 * hid + j] = da_o
                    dc_row[j] = dc_prev
            else:
                d_t[n, :] = 0.0
        recurrent_gradient(d_t, w_hh, t, lengths, t < shortest, dh_rec, dh, False)
