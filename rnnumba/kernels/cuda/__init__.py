"""CUDA kernels: the same functions and signatures as :mod:`rnnumba.kernels.cpu`.

Importing this package imports ``numba.cuda``; :func:`rnnumba.backend.cell_kernels` does so
only when a CUDA path is asked for. Launchers take device arrays (``numba.cuda`` device
arrays; host NumPy arrays are accepted and copied in and out, for tests and one-off calls).
"""

from . import common, gru, lstm, rnn  # noqa: F401  (common is the GEMM phase module)

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru}
