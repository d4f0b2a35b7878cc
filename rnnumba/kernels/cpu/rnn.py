"""Vanilla RNN (tanh or relu) on the CPU: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``."""

import numpy as np

from ._jit import kernel, rnn_point, rnn_point_backward
from ._state import gather_previous, recurrent_gradient

GATES = 1


def cache_width(hidden_size):
    """Columns of ``cache`` per step: none, the output holds the state."""
    return 0


@kernel
def forward_sequence(proj, w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache, h_n, c_n):
    """Run the recurrence of one layer and direction; see :mod:`rnnumba.kernels`."""
    steps, batch, _ = proj.shape
    hidden = w_hh.shape[1]
    h = h_n
    h[:, :] = h0
    rec = np.empty((batch, hidden), dtype=proj.dtype)
    w_hh_t = w_hh.T
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        np.dot(h, w_hh_t, rec)
        for n in range(batch):
            y = out[t, n, col:col + hidden]
            if t < lengths[n]:
                _forward_row(proj[t, n], rec[n], b_hh, act, h[n])
                y[:] = h[n]
            else:
                y[:] = 0.0


@kernel
def backward_sequence(w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache,
                      grad_out, grad_h_n, grad_c_n, h_prev, d_ih, d_hh, grad_h0, grad_c0):
    """BPTT of one layer and direction; writes ``d_ih`` only (``d_hh`` is the same)."""
    steps, batch, _ = out.shape
    hidden = w_hh.shape[1]
    gather_previous(out, col, h0, lengths, reverse, h_prev)
    dh = grad_h0
    dh[:, :] = grad_h_n
    dh_rec = np.empty((batch, hidden), dtype=out.dtype)
    shortest = lengths.min()
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        d_t = d_ih[t]
        for n in range(batch):
            if t < lengths[n]:
                _backward_row(dh[n], grad_out[t, n, col:col + hidden],
                              out[t, n, col:col + hidden], act, d_t[n])
            else:
                d_t[n, :] = 0.0
        recurrent_gradient(d_t, w_hh, t, lengths, t < shortest, dh_rec, dh, False)


@kernel
def _forward_row(p, r, b_hh, act, h_row):
    """One row of the elementwise pass: ``h = act(p + r + b_hh)``."""
    for j in range(h_row.shape[0]):
        h_row[j] = rnn_point(p[j] + r[j] + b_hh[j], act)


@kernel
def _backward_row(dh_row, g, y, act, d):
    """One row of the elementwise gradient: ``d = (dh + g) * act'``."""
    for j in range(d.shape[0]):
        d[j] = rnn_point_backward(dh_row[j] + g[j], y[j], act)
