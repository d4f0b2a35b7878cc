"""CPU kernels: ``@njit`` recurrences per cell and NumPy/BLAS GEMM phases in ``common``."""

from . import gru, lstm, rnn

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru}
