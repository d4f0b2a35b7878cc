"""CPU kernels: ``@njit`` recurrences per cell and NumPy/BLAS GEMM phases in ``common``."""

from . import gru, lstm, rnn
from ._threads import single_threaded_blas
from .chunks import backward_in_chunks
from .common import chunk_steps

__all__ = ["CELLS", "backward_in_chunks", "chunk_steps", "single_threaded_blas"]

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru}
