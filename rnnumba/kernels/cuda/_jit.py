"""CUDA compilation settings, launch constants and device-memory helpers shared by the kernels.

Importing this module imports ``numba.cuda``; only the CUDA backend imports it, lazily.

Launch constants are module attributes read at *launch* time, so tests (and tuners) can lower
them to make tiny problems span several blocks and reach both recurrence paths. Kernels whose
shared or local arrays need compile-time sizes or dtypes are built by small factories cached
per ``(dtype, constants)``.
"""

import functools
import os

import numpy as np
from numba import config, cuda, from_dtype

from ..gates import compile_for

# Numba warns on every grid under 128 blocks; the persistent kernels use small grids on
# purpose (one block per few rows), so that warning is noise here. Respect an explicit choice.
if "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS" not in os.environ:
    config.CUDA_LOW_OCCUPANCY_WARNINGS = 0

#: Tile edge of the shared-memory GEMM (blocks of ``GEMM_TILE x GEMM_TILE`` threads).
GEMM_TILE = 16
#: Threads per block of the elementwise (one thread per batch row x hidden unit) kernels.
ELEMENTWISE_BLOCK = 128
#: The persistent recurrence (one launch for all time steps, ``W_hh`` in shared memory) runs
#: when ``W_hh`` plus the per-block state fits in this many bytes of shared memory; larger
#: layers take one recurrent GEMM plus one fused elementwise launch per step. 48 KiB is what
#: every CUDA device gives a block without an opt-in.
PERSISTENT_MAX_BYTES = 48 * 1024
#: Batch rows per block of the persistent kernels (each ``W_hh`` load from shared memory is
#: reused for this many rows).
PERSISTENT_ROWS = 4
#: Largest block (threads = hidden units) of the persistent kernels.
MAX_THREADS = 1024

# Cell ids passed to the generic recurrence kernels.
CELL_RNN = 0
CELL_LSTM = 1
CELL_GRU = 2

# The scalar gate math compiled as device functions. Numba resolves only module-level names
# inside kernels, hence one name per function.
_points = compile_for(cuda.jit(device=True))
rnn_point = _points.rnn_point
rnn_point_backward = _points.rnn_point_backward
lstm_point = _points.lstm_point
lstm_point_backward = _points.lstm_point_backward
gru_point = _points.gru_point
gru_point_backward = _points.gru_point_backward


class DeviceMemoryError(MemoryError):
    """The GPU could not provide an allocation; the message names the bytes asked for."""


def numba_type(dtype):
    """The Numba scalar type of a NumPy dtype (float32 or float64)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"CUDA kernels take float32 or float64 arrays, got {dtype}")
    return from_dtype(dtype)


def cached_factory(fn):
    """Cache a kernel factory on its (hashable) arguments."""
    return functools.lru_cache(maxsize=None)(fn)


def _is_oom(exc):
    text = f"{type(exc).__name__} {exc}".upper()
    return "OUT_OF_MEMORY" in text or "OUT OF MEMORY" in text


def device_empty(shape, dtype, what="array"):
    """``cuda.device_array`` that turns an out-of-memory failure into a clear error."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in (shape if isinstance(shape, tuple) else (shape,)))
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    try:
        return cuda.device_array(shape, dtype=dtype)
    except Exception as exc:  # CudaAPIError (driver) or cuda.core errors, by version
        if _is_oom(exc):
            raise DeviceMemoryError(
                f"CUDA out of memory: could not allocate {nbytes} bytes "
                f"({nbytes / 2**20:.1f} MiB) for {what} of shape {shape} and dtype {dtype}; "
                "use a smaller batch_size or shorter sequences, or device='cpu'") from exc
        raise


_workspaces = {}


def workspace(shape, dtype, what="workspace"):
    """A reusable device scratch array of this shape and dtype (no allocation per call once
    warm; at most 16 kept). Callers must not hold one across another call that may reuse it."""
    key = (tuple(int(s) for s in shape), np.dtype(dtype).str)
    array = _workspaces.get(key)
    if array is None:
        if len(_workspaces) >= 16:
            _workspaces.clear()
        array = _workspaces[key] = device_empty(key[0], dtype, what)
    return array


def to_device(array, what="array"):
    """Copy a host array to a new device array (clear error when out of memory)."""
    array = np.ascontiguousarray(array)
    out = device_empty(array.shape, array.dtype, what)
    if array.size:
        out.copy_to_device(array)
    return out


def blocks(count, block):
    """Number of blocks of ``block`` threads that cover ``count`` items (at least one)."""
    return max(1, (int(count) + block - 1) // block)


@cuda.jit
def _fill_kernel(flat, value):
    i = cuda.grid(1)
    if i < flat.shape[0]:
        flat[i] = value


@cuda.jit
def _scale_kernel(flat, factor):
    """``flat *= factor`` elementwise (both 1-D, same length)."""
    i = cuda.grid(1)
    if i < flat.shape[0]:
        flat[i] *= factor[i]


@cuda.jit
def _product_kernel(a, b, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] * b[i]


def _flat(array):
    return array.reshape(array.size)


def fill(array, value):
    """Set every element of a contiguous device array to ``value``."""
    if array.size:
        _fill_kernel[blocks(array.size, ELEMENTWISE_BLOCK), ELEMENTWISE_BLOCK](
            _flat(array), value)


def multiply_inplace(array, factor):
    """``array *= factor`` for two contiguous device arrays of the same shape."""
    if array.size:
        _scale_kernel[blocks(array.size, ELEMENTWISE_BLOCK), ELEMENTWISE_BLOCK](
            _flat(array), _flat(factor))


def multiply(a, b, out):
    """``out = a * b`` for contiguous device arrays of the same shape."""
    if out.size:
        _product_kernel[blocks(out.size, ELEMENTWISE_BLOCK), ELEMENTWISE_BLOCK](
            _flat(a), _flat(b), _flat(out))


def copy(dst, src):
    """Device-to-device copy between two contiguous arrays of the same size."""
    if dst.size:
        dst.copy_to_device(src)


def on_device(outputs):
    """Let a launcher take host NumPy arrays too.

    Host arrays among the arguments are copied to the device once; after the call, those at
    the positions in ``outputs`` are copied back into the caller's arrays. Device arrays pass
    through untouched (the fast path: no transfer at all).
    """
    def wrap(fn):
        @functools.wraps(fn)
        def launcher(*args):
            moved = []
            device_args = []
            copies = {}  # the same host array passed twice maps to one device array
            for position, arg in enumerate(args):
                if isinstance(arg, np.ndarray):
                    dev = copies.get(id(arg))
                    if dev is None:
                        dev = copies[id(arg)] = to_device(arg)
                    if position in outputs and all(host is not arg for host, _ in moved):
                        moved.append((arg, dev))
                    device_args.append(dev)
                else:
                    device_args.append(arg)
            result = fn(*device_args)
            for host, dev in moved:
                if host.size:
                    dev.copy_to_host(host)
            return result
        return launcher
    return wrap
