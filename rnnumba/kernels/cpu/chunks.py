"""BPTT a chunk of time steps at a time, for gate gradients that have no cache to go over.

The LSTM and GRU write their gate gradients over their gate cache; the RNN has none (its
output is the state), and a gate-gradient buffer for all ``T`` steps would double the
memory of its training step. Its BPTT therefore runs :func:`.common.chunk_steps` steps at
a time into a buffer of that many steps, and the weight-gradient GEMMs take each chunk as
soon as it is done, the state each chunk started from standing in for ``h0``.
"""

import contextlib

import numpy as np

from .common import chunk_column_block, chunk_steps, weight_gradients
from .rnn import backward_chunks


def gate_gradient_buffer(steps, batch, hidden, layers, dtype):
    """The buffer :func:`backward_in_chunks` takes, for ``layers`` layers and directions
    (each chunk a ``1 / TIME_CHUNKS`` share of their activations, not of one layer's)."""
    return np.empty((chunk_steps(steps, layers), batch, hidden), dtype=dtype)


@contextlib.contextmanager
def _no_clock(name):
    yield


def backward_in_chunks(weights, grads, x, out, col, h0, lengths, reverse, act, grad_out,
                       grad_h_n, grad_h0, grad_x, buffer, clock=_no_clock):
    """BPTT and weight gradients of one RNN layer and direction, chunk by chunk.

    Arguments as :func:`.rnn.backward_sequence` and :func:`.common.weight_gradients` take
    them; ``weights`` and ``grads`` map ``weight_ih``, ``weight_hh``, ``bias_ih``,
    ``bias_hh`` to this layer and direction's arrays; ``buffer`` holds a chunk's gate
    gradients (:func:`gate_gradient_buffer`). Adds into ``grads`` and ``grad_x`` (None:
    not needed), writes ``grad_h0``. ``clock(phase)`` wraps each chunk's BPTT
    (``"bptt_recurrence"``) and weight gradients (``"weight_gradients"``).
    """
    column_block = chunk_column_block(x.shape[2], h0.shape[1])
    chunks = backward_chunks(weights["weight_hh"], lengths, reverse, act, out, col, grad_out,
                             grad_h_n, buffer, grad_h0)
    while True:
        with clock("bptt_recurrence"):
            bounds = next(chunks, None)
        if bounds is None:
            return
        first, last = bounds
        d = buffer[:last - first]
        with clock("weight_gradients"):
            weight_gradients(x[first:last], out[first:last], col,
                             _state_before(out, col, h0, lengths, reverse, first, last),
                             _lengths_in(lengths, first, last), reverse, d, d,
                             weights["weight_ih"], grads["weight_ih"], grads["weight_hh"],
                             grads["bias_ih"], grads["bias_hh"],
                             None if grad_x is None else grad_x[first:last], column_block)


def _state_before(out, col, h0, lengths, reverse, first, last):
    """Each row's state before its first step in ``first:last``, for the rows that have one
    there: the output of the step before in the direction's order, or ``h0`` where the
    row's recurrence starts inside the chunk."""
    hidden = h0.shape[1]
    if not reverse:
        return h0 if first == 0 else out[first - 1, :, col:col + hidden]
    if last == out.shape[0]:
        return h0
    # Reversed, a row starts at its own last step: inside the chunk unless it runs past it.
    return np.where((lengths > last)[:, None], out[last, :, col:col + hidden], h0)


def _lengths_in(lengths, first, last):
    """Each row's active steps within ``first:last`` (``np.clip`` costs 10 us a call here)."""
    inside = np.minimum(lengths, last)
    inside -= first
    return np.maximum(inside, 0, out=inside)
