"""GRU on the GPU, PyTorch's gate order r, z, n with the reset gate applied to ``W_hn h + b_hn``.

Same functions and signatures as :mod:`rnnumba.kernels.cpu.gru`; the launchers take device
arrays (host NumPy arrays also work, copied in and out). The kernels themselves are the
generic recurrences of :mod:`._recurrence`, specialised by cell id.
"""

from ._jit import CELL_GRU
from ._recurrence import make_cell

GATES = 3
CELL = CELL_GRU


def cache_width(hidden_size):
    """Columns of ``cache`` per step: r, z, n after activation, then ``W_hn h + b_hn``."""
    return 4 * hidden_size


forward_sequence, backward_sequence = make_cell(CELL, cache_width)
