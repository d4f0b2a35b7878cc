"""GRU on the CPU, PyTorch's gate order r, z, n with the reset gate applied to ``W_hn h + b_hn``."""

import numpy as np

from ._jit import kernel, gru_point, gru_point_backward
from ._state import gather_previous, recurrent_gradient

GATES = 3


def cache_width(hidden_size):
    """Columns of ``cache`` per step: r, z, n after activation, then ``W_hn h + b_hn``."""
    return 4 * hidden_size


@kernel
def forward_sequence(proj, w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache, h_n, c_n):
    """Run the recurrence of one layer and direction; see :mod:`rnnumba.kernels`."""
    steps, batch, _ = proj.shape
    hid = w_hh.shape[1]
    h = h_n
    h[:, :] = h0
    rec = np.empty((batch, 3 * hid), dtype=proj.dtype)
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
                h_row = h[n]
                for j in range(hid):
                    hn = r[2 * hid + j] + b_hh[2 * hid + j]
                    rj, zj, nj, hj = gru_point(
                        p[j] + r[j] + b_hh[j],
                        p[hid + j] + r[hid + j] + b_hh[hid + j],
                        p[2 * hid + j], hn, h_row[j])
                    keep[j] = rj
                    keep[hid + j] = zj
                    keep[2 * hid + j] = nj
                    keep[3 * hid + j] = hn
                    h_row[j] = hj
                y[:] = h_row
            else:
                y[:] = 0.0


@kernel
def backward_sequence(w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache,
                      grad_out, grad_h_n, grad_c_n, h_prev, d_ih, d_hh, grad_h0, grad_c0):
    """BPTT of one layer and direction; ``d_ih`` and ``d_hh`` differ in the n gate."""
    steps, batch, _ = out.shape
    hid = w_hh.shape[1]
    gather_previous(out, col, h0, lengths, reverse, h_prev)
    dh = grad_h0
    dh[:, :] = grad_h_n
    dh_rec = np.empty((batch, hid), dtype=out.dtype)
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        di_t = d_ih[t]
        dh_t = d_hh[t]
        for n in range(batch):
            if t < lengths[n]:
                keep = cache[t, n]
                di = di_t[n]
                dr = dh_t[n]
                dh_row = dh[n]
                g = grad_out[t, n, col:col + hid]
                hp = h_prev[t, n]
                for j in range(hid):
                    da_r, da_z, da_n, dhn, direct = gru_point_backward(
                        dh_row[j] + g[j],
                        keep[j], keep[hid + j], keep[2 * hid + j], keep[3 * hid + j], hp[j])
                    di[j] = da_r
                    di[hid + j] = da_z
                    di[2 * hid + j] = da_n
                    dr[j] = da_r
                    dr[hid + j] = da_z
                    dr[2 * hid + j] = dhn
                    dh_row[j] = direct
            else:
                di_t[n, :] = 0.0
                dh_t[n, :] = 0.0
        recurrent_gradient(dh_t, w_hh, t, lengths, False, dh_rec, dh, True)
