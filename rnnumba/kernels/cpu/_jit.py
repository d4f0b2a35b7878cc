"""The CPU compilation settings shared by every cell module."""

from numba import njit

from ..._config import FASTMATH, JIT_OPTIONS
from ..gates import compile_for

#: Decorator for the time-loop kernels (cached on disk, GIL released).
kernel = njit(**JIT_OPTIONS)

# The scalar gate math compiled for the CPU; LLVM inlines it into the kernels. Numba
# resolves only module-level names inside kernels, hence one name per function.
_points = compile_for(njit(nogil=True, fastmath=FASTMATH))
rnn_point = _points.rnn_point
rnn_point_backward = _points.rnn_point_backward
lstm_point = _points.lstm_point
lstm_point_backward = _points.lstm_point_backward
gru_point = _points.gru_point
gru_point_backward = _points.gru_point_backward
