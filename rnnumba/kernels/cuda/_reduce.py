"""Deterministic float64 sums on the device, in two launches and without atomics.

A first kernel (one per use: sum of squares, loss rows, ...) has each thread add a strided
slice of the items in order, tree-sums the block's values in shared memory
(:func:`block_sum_into`) and writes one partial sum per block; :func:`finish` then sums the
partials in one block, in the same fixed order, and writes the result into a float64 device
array (``stats[i]``, ``loss[0]``): no host round trip. The order depends only on the
launch constants below, so a sum gives the same bits on every run.

The constants are read at launch time (tests lower them to reach several blocks and the
strided loops with tiny inputs).
"""

import math

import numpy as np
from numba import cuda, float64

from . import _jit
from ._jit import blocks, cached_factory

#: Threads per block of the reductions (a power of two).
REDUCE_BLOCK = 128
#: Most blocks of a first-stage reduction (threads loop over a strided slice beyond that).
REDUCE_MAX_BLOCKS = 1024

# What :func:`finish` does with the total (``out[index]`` is float64).
OP_SET = 0  # out[index] = total * value
OP_ADD = 1  # out[index] += value * total
OP_DIV = 2  # out[index] = total / value
OP_SQRT = 3  # out[index] = sqrt(total)
OP_IS_ZERO = 4  # out[index] = 1.0 if total == 0 else 0.0


@cuda.jit(device=True)
def tree_sum(shared, tid, block):
    """Tree-sum ``shared[:block]`` (one value per thread, already stored) into ``shared[0]``
    in a fixed order; ``block`` is a power of two. Every thread of the block must call it."""
    cuda.syncthreads()
    width = block // 2
    while width > 0:
        if tid < width:
            shared[tid] += shared[tid + width]
        cuda.syncthreads()
        width //= 2


@cuda.jit(device=True)
def block_sum_into(partials, shared, tid, block):
    """:func:`tree_sum`, then thread 0 writes the block's sum to ``partials[blockIdx.x]``."""
    tree_sum(shared, tid, block)
    if tid == 0:
        partials[cuda.blockIdx.x] = shared[0]


@cached_factory
def _finish_kernel(block):
    def kernel(partials, out, index, op, value):
        shared = cuda.shared.array(block, dtype=float64)
        tid = cuda.threadIdx.x
        total = float64(0.0)
        for i in range(tid, partials.shape[0], block):
            total += partials[i]
        shared[tid] = total
        tree_sum(shared, tid, block)
        if tid == 0:
            total = shared[0]
            if op == OP_SET:
                out[index] = total * value
            elif op == OP_ADD:
                out[index] += value * total
            elif op == OP_DIV:
                out[index] = total / value
            elif op == OP_SQRT:
                out[index] = math.sqrt(total)
            else:
                out[index] = 1.0 if total == 0.0 else 0.0

    return cuda.jit(kernel)


def geometry(count):
    """``(grid, block)`` of a first-stage reduction over ``count`` items (grid >= 1)."""
    block = REDUCE_BLOCK
    if block < 1 or block & (block - 1):
        raise ValueError(f"REDUCE_BLOCK must be a power of two, got {block}")
    return min(blocks(count, block), max(1, REDUCE_MAX_BLOCKS)), block


def partials(grid):
    """A float64 device workspace for ``grid`` partial sums."""
    return _jit.workspace((grid,), np.float64, "reduction partial sums")


def finish(sums, out, index, op, value=0.0):
    """Sum the partial sums ``sums`` in one block and apply ``op`` to ``out[index]``."""
    block = REDUCE_BLOCK
    _finish_kernel(block)[1, block](sums, out, int(index), int(op), float(value))
