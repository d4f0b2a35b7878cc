"""LSTM on the GPU, PyTorch's gate order i, f, g, o.

Same functions and signatures as :mod:`rnnumba.kernels.cpu.lstm`; the launchers take device
arrays (host NumPy arrays also work, copied in and out). The kernels themselves are the
generic recurrences of :mod:`._recurrence`, specialised by cell id.
"""

from ._jit import CELL_LSTM
from ._recurrence import make_cell

GATES = 4
CELL = CELL_LSTM


def cache_width(hidden_size):
    """Columns of ``cache`` per step: i, f, g, o after activation, then c."""
    return 5 * hidden_size


forward_sequence, backward_sequence = make_cell(CELL, cache_width)
