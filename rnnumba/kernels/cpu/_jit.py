"""The CPU compilation settings shared by every cell module."""

from numba import njit

from ..._config import FASTMATH, JIT_OPTIONS
from ..gates import compile_for
from ._fastmath import sigmoid, tanh

#: Decorator for the time-loop kernels (cached on disk, GIL released).
kernel = njit(**JIT_OPTIONS)

# The scalar gate math compiled for the CPU and inlined by Numba (too big for LLVM's own
# inliner, and a call in the loop stops vectorisation). Numba
# resolves only module-level names inside kernels, hence one name per function. Kernels
# index 1-D row views inside their inner loops: LLVM vectorises those, not 2-D indexing.
_points = compile_for(njit(inline="always", nogil=True, fastmath=FASTMATH, error_model="numpy"),
                      {"sigmoid": sigmoid, "tanh": tanh})
rnn_point = _points.rnn_point
rnn_point_backward = _points.rnn_point_backward
lstm_point = _points.lstm_point
lstm_point_backward = _points.lstm_point_backward
gru_point = _points.gru_point
gru_point_backward = _points.gru_point_backward
