"""Optimizer steps and gradient clipping on flat device arrays.

Device twins of :mod:`rnnumba.optim` for a training loop that keeps parameters and gradients
on the GPU: the same update rules, evaluated in the same precision and order as the host
code (moments in float64; the update cast to the parameter dtype before it is applied), so
a device step equals a host step up to rounding (the device may fuse multiply-adds). Every
function takes 1-D
C-contiguous device arrays and launches one elementwise kernel per buffer; the norm is a
deterministic block reduction (fixed summation order, no atomics).
"""

import math

import numpy as np
from numba import cuda, float64

from . import _jit
from ._jit import blocks, cached_factory, numba_type

#: Threads per block of the sum-of-squares reduction.
REDUCE_BLOCK = 128
#: Most blocks of one reduction (each thread loops over a strided slice beyond that).
REDUCE_MAX_BLOCKS = 1024


@cached_factory
def _sgd_kernel(dtype):
    dt = numba_type(dtype)

    def kernel(p, g, v, lr, momentum, nesterov):
        i = cuda.grid(1)
        if i < p.shape[0]:
            scaled = dt(dt(lr) * g[i])  # host: ``lr * g`` in the gradient dtype
            vi = v[i] * momentum - scaled
            v[i] = vi
            if nesterov:
                p[i] += dt(momentum * vi - scaled)
            else:
                p[i] += dt(vi)

    return cuda.jit(kernel)


@cached_factory
def _adam_kernel(dtype):
    dt = numba_type(dtype)

    def kernel(p, g, m, v, step, beta_1, beta_2, epsilon):
        i = cuda.grid(1)
        if i < p.shape[0]:
            gi = g[i]
            m[i] = m[i] * beta_1 + dt(dt(1.0 - beta_1) * gi)
            v[i] = v[i] * beta_2 + (1.0 - beta_2) * (float64(gi) * float64(gi))
            update = m[i] / (math.sqrt(v[i]) + epsilon)
            update *= step
            p[i] -= dt(update)

    return cuda.jit(kernel)


@cached_factory
def _scale_kernel(dtype):
    dt = numba_type(dtype)

    def kernel(g, factor):
        i = cuda.grid(1)
        if i < g.shape[0]:
            g[i] *= dt(factor)

    return cuda.jit(kernel)


@cuda.jit(device=True)
def _block_sum_into(partials, shared, tid, block):
    """Tree-sum the block's ``shared[:block]`` (one value per thread, already stored) into
    ``partials[blockIdx.x]``; ``block`` is a power of two."""
    cuda.syncthreads()
    width = block // 2
    while width > 0:
        if tid < width:
            shared[tid] += shared[tid + width]
        cuda.syncthreads()
        width //= 2
    if tid == 0:
        partials[cuda.blockIdx.x] = shared[0]


@cached_factory
def _sum_squares_kernel(block):
    def kernel(g, partials):
        shared = cuda.shared.array(block, dtype=float64)
        tid = cuda.threadIdx.x
        total = float64(0.0)
        stride = cuda.gridDim.x * block
        for i in range(cuda.blockIdx.x * block + tid, g.shape[0], stride):
            value = float64(g[i])
            total += value * value
        shared[tid] = total
        _block_sum_into(partials, shared, tid, block)

    return cuda.jit(kernel)


def _launch(size):
    block = _jit.ELEMENTWISE_BLOCK
    return blocks(size, block), block


def sgd_step(params, grads, velocities, learning_rate, momentum=0.9, nesterov=True):
    """One SGD step as :class:`rnnumba.optim.SGD` on device buffers (float64 velocities)."""
    for p, g, v in zip(params, grads, velocities):
        if p.size:
            kernel = _sgd_kernel(p.dtype.str)[_launch(p.size)]
            kernel(p, g, v, float(learning_rate), float(momentum), bool(nesterov))


def adam_step(params, grads, ms, vs, t, learning_rate, beta_1=0.9, beta_2=0.999,
              epsilon=1e-8):
    """Adam step number ``t`` (1-based) as :class:`rnnumba.optim.Adam` on device buffers."""
    step = learning_rate * math.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t)
    for p, g, m, v in zip(params, grads, ms, vs):
        if p.size:
            kernel = _adam_kernel(p.dtype.str)[_launch(p.size)]
            kernel(p, g, m, v, float(step), float(beta_1), float(beta_2), float(epsilon))


def reduce_blocks(size):
    """Blocks of the reductions over ``size`` elements (the length of their partial sums)."""
    return min(blocks(size, REDUCE_BLOCK), REDUCE_MAX_BLOCKS)


def _partials(grid, workspace, what):
    if workspace is not None and workspace.size >= grid:
        return workspace[:grid]
    return _jit.device_empty(grid, np.float64, what)


def sum_of_squares(g, workspace=None):
    """``sum(g**2)`` in float64 with a fixed reduction order (deterministic).

    ``workspace``: an optional float64 device array of at least ``reduce_blocks(g.size)``
    elements for the partial sums (else one is allocated per call).
    """
    if g.size == 0:
        return 0.0
    block = REDUCE_BLOCK
    if block & (block - 1):
        raise ValueError(f"REDUCE_BLOCK must be a power of two, got {block}")
    grid = reduce_blocks(g.size)
    partials = _partials(grid, workspace, "norm partial sums")
    _sum_squares_kernel(block)[grid, block](g, partials)
    return float(np.sum(partials.copy_to_host()))


def global_norm(grads):
    """Euclidean norm over a list of device arrays (float)."""
    return math.sqrt(sum(sum_of_squares(g) for g in grads))


def clip_grad_norm(grads, max_norm):
    """Scale device ``grads`` in place to a global norm of at most ``max_norm``.

    Same contract as :func:`rnnumba.optim.clip_grad_norm`: returns the norm before clipping,
    ``max_norm=None`` only measures, a non-finite norm leaves the gradients untouched.
    """
    norm = global_norm(grads)
    if max_norm is not None and math.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for g in grads:
            if g.size:
                _scale_kernel(g.dtype.str)[_launch(g.size)](g, float(scale))
    return norm


# --------------------------------------------------------------------------- training helpers


@cached_factory
def _masked_kernel(dtype):
    def kernel(p, mask, out):
        i = cuda.grid(1)
        if i < p.shape[0]:
            out[i] = p[i] * mask[i]

    return cuda.jit(kernel)


@cached_factory
def _axpy_kernel(dtype):
    dt = numba_type(dtype)

    def kernel(y, x, factor):
        i = cuda.grid(1)
        if i < y.shape[0]:
            y[i] += dt(x[i] * dt(factor))  # host: ``x *= factor; y += x`` in the dtype

    return cuda.jit(kernel)


@cached_factory
def _finite_probe_kernel(block):
    def kernel(g, partials):
        shared = cuda.shared.array(block, dtype=float64)
        tid = cuda.threadIdx.x
        total = float64(0.0)
        stride = cuda.gridDim.x * block
        for i in range(cuda.blockIdx.x * block + tid, g.shape[0], stride):
            total += float64(g[i]) * 0.0  # NaN for NaN or inf, else 0
        shared[tid] = total
        _block_sum_into(partials, shared, tid, block)

    return cuda.jit(kernel)


def add_l2(params, grads, masks, workspaces, coef, partials=None):
    """L2 penalty on device buffers, as the host training loop computes it::

        pm = p * mask;  penalty += sum(pm**2);  g += pm * coef

    ``masks`` are device arrays of the parameter dtype (1 for weights, 0 for biases),
    ``workspaces`` device arrays of the same sizes, ``partials`` as in
    :func:`sum_of_squares`. Returns the float64 ``sum(pm**2)``.
    """
    penalty = 0.0
    for p, g, m, w in zip(params, grads, masks, workspaces):
        if p.size:
            grid = _launch(p.size)
            _masked_kernel(p.dtype.str)[grid](p, m, w)
            penalty += sum_of_squares(w, partials)
            _axpy_kernel(p.dtype.str)[grid](g, w, float(coef))
    return penalty


def all_finite(arrays, workspace=None):
    """Whether every element of the device ``arrays`` is finite (one scalar per array comes
    back); ``workspace`` as in :func:`sum_of_squares`."""
    for g in arrays:
        if g.size == 0:
            continue
        block = REDUCE_BLOCK
        grid = reduce_blocks(g.size)
        partials = _partials(grid, workspace, "finite-check partial sums")
        _finite_probe_kernel(block)[grid, block](g, partials)
        if not np.isfinite(np.sum(partials.copy_to_host())):
            return False
    return True


def scale(grads, factor):
    """``g *= factor`` for every device buffer (in the buffer dtype, as the host does)."""
    for g in grads:
        if g.size:
            _scale_kernel(g.dtype.str)[_launch(g.size)](g, float(factor))


def add(target, other):
    """``target += other`` elementwise for lists of device buffers of equal sizes."""
    for y, x in zip(target, other):
        if y.size:
            _axpy_kernel(y.dtype.str)[_launch(y.size)](y, x, 1.0)
