"""CPU kernels: ``@njit`` recurrences per cell and NumPy/BLAS GEMM phases in ``common``."""

from . import gru, lstm, rnn
from ._threads import single_threaded_blas

__all__ = ["CELLS", "single_threaded_blas"]

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru}
