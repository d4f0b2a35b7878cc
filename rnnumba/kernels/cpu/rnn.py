"""Vanilla RNN (tanh or relu) on the CPU: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``."""

import numpy as np

from ._jit import kernel, rnn_point, rnn_point_backward
from ._state import (copy_rows, copy_vector, optional_workspace, recurrent_gradient, shortest,
                     step_product, step_weights, through_cache, time_major_view, unmanaged)
from ._threads import run_over_rows

GATES = 1


def cache_width(hidden_size):
    """Columns of ``cache`` per step: none, the output holds the state."""
    return 0


def forward_sequence(proj, w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache, h_n, c_n):
    """Run the recurrence of one layer and direction; see :mod:`rnnumba.kernels`. ``proj`` may
    be this direction's columns of ``out``."""
    steps, batch, _ = proj.shape
    hidden = w_hh.shape[1]
    rec = np.empty((batch, hidden), dtype=proj.dtype)
    w_hh_t, transposed = step_weights(w_hh)
    proj, over_out = through_cache(proj, out)
    loop = (steps, batch, hidden, hidden)
    run_over_rows(_forward_rows, loop, proj, over_out, w_hh, w_hh_t, transposed, b_hh, h0, lengths,
                  reverse, act, out, col, h_n, rec)


def backward_sequence(w_hh, b_hh, h0, c0, lengths, reverse, act, out, col, cache,
                      grad_out, grad_h_n, grad_c_n, d_ih, d_hh, grad_h0, grad_c0):
    """BPTT of one layer and direction; writes ``d_ih`` only (``d_hh`` is the same)."""
    for _ in backward_chunks(w_hh, lengths, reverse, act, out, col, grad_out, grad_h_n, d_ih,
                             grad_h0):
        pass


def backward_chunks(w_hh, lengths, reverse, act, out, col, grad_out, grad_h_n, buffer,
                    grad_h0):
    """BPTT of one layer and direction ``len(buffer)`` steps at a time, in BPTT order.

    Yields ``(first, last)`` once ``buffer[t - first]`` holds the gate gradients of each
    step ``t`` in ``first:last`` and ``grad_h0`` the gradient at the state before them (at
    ``h0`` after the last chunk). A buffer of all ``T`` steps makes one chunk
    (:func:`backward_sequence`); a shorter one lets the caller take the weight gradients
    chunk by chunk (:mod:`.chunks`) instead of keeping gate gradients for every step.
    """
    steps, batch, _ = out.shape
    hidden = w_hh.shape[1]
    chunk = buffer.shape[0]
    if chunk == 0 or buffer.shape[1:] != (batch, hidden):
        raise ValueError(f"gate gradient buffer of shape {buffer.shape} does not fit "
                         f"({batch}, {hidden}) rows per step")
    dh_rec = np.empty((batch, hidden), dtype=out.dtype)
    w_hh_t, transposed = step_weights(w_hh, backward=True)
    grad_out, batch_major = time_major_view(grad_out)
    starts = range(0, steps, chunk)
    carried = grad_h_n
    # Against the direction of the recurrence: the forward one from its last chunk back.
    for first in (starts if reverse else reversed(starts)):
        last = min(first + chunk, steps)
        run_over_rows(_backward_rows, (last - first, batch, hidden, hidden), w_hh, w_hh_t,
                      transposed, lengths, reverse, act, out, col, grad_out, batch_major,
                      carried, buffer, grad_h0, dh_rec, first, last)
        carried = grad_h0
        yield first, last


@kernel
def _forward_rows(proj, over_out, w_hh, w_hh_t, transposed, b_hh, h0, lengths, reverse, act, out,
                  col, h_n, rec, start, stop):
    """The forward time loop over batch rows ``start:stop``; ``rec`` is workspace. With
    ``over_out`` each step's projection is read from the output it becomes (``proj``
    unused)."""
    # row views of these carry no reference counts (see ``unmanaged``)
    proj, out, h_n, rec = unmanaged(proj), unmanaged(out), unmanaged(h_n), unmanaged(rec)
    steps = out.shape[0]
    hidden = w_hh.shape[1]
    copy_rows(h_n, h0, start, stop)
    h = h_n[start:stop]
    rec_rows = rec[start:stop]
    work = optional_workspace(transposed, rec.shape[1], stop - start, rec)
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        step_product(h, w_hh_t, w_hh, rec_rows, work)
        for n in range(start, stop):
            y = out[t, n, col:col + hidden]
            if t < lengths[n]:
                _forward_row(y if over_out else proj[t, n], rec[n], b_hh, act, h_n[n])
                copy_vector(y, h_n[n])
            else:
                y[:] = 0.0


@kernel
def _backward_rows(w_hh, w_hh_t, transposed, lengths, reverse, act, out, col, grad_out,
                   batch_major, grad_h_n, d_ih, grad_h0, dh_rec, first, last, start, stop):
    """The BPTT time loop over steps ``first:last`` and batch rows ``start:stop``; step
    ``t``'s gate gradients go to ``d_ih[t - first]``; ``dh_rec`` is workspace."""
    # row views of these carry no reference counts (see ``unmanaged``)
    out, grad_out, d_ih = unmanaged(out), unmanaged(grad_out), unmanaged(d_ih)
    grad_h0 = unmanaged(grad_h0)
    hidden = w_hh.shape[1]
    copy_rows(grad_h0, grad_h_n, start, stop)
    dh = grad_h0[start:stop]
    row_lengths = lengths[start:stop]
    work = optional_workspace(transposed, hidden, stop - start, dh_rec)
    all_active_until = shortest(row_lengths)
    for s in range(last - first):
        t = first + s if reverse else last - 1 - s
        d_t = d_ih[t - first]
        for n in range(start, stop):
            if t < lengths[n]:
                g_row = (grad_out[n, t, col:col + hidden] if batch_major
                         else grad_out[t, n, col:col + hidden])
                _backward_row(grad_h0[n], g_row, out[t, n, col:col + hidden], act, d_t[n])
            else:
                d_t[n, :] = 0.0
        recurrent_gradient(d_t[start:stop], w_hh, w_hh_t, t, row_lengths, t < all_active_until,
                           dh_rec[start:stop], dh, False, work)


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
