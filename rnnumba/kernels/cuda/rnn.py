"""Vanilla RNN (tanh or relu) on the GPU: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``.

Same functions and signatures as :mod:`rnnumba.kernels.cpu.rnn`; the launchers take device
arrays (host NumPy arrays also work, copied in and out). The kernels themselves are the
generic recurrences of :mod:`._recurrence`, specialised by cell id.
"""

from ._jit import CELL_RNN
from ._recurrence import make_cell

GATES = 1
CELL = CELL_RNN


def cache_width(hidden_size):
    """Columns of ``cache`` per step: none, the output holds the state."""
    return 0


forward_sequence, backward_sequence = make_cell(CELL, cache_width)
