"""Optimizer steps, clipping, L2 and buffer helpers on flat device buffers: the same functions
and signatures as :mod:`rnnumba.kernels.cpu.optim` (whose docstring states the contract).

The training statistics ``stats`` (float64 ``(4,)``: loss, gradient norm, parameters
finite, unused) stay on the device: the sums of squares are deterministic two-stage block
reductions (:mod:`._reduce`, no atomics) whose results are written into ``stats`` by a
kernel, and :func:`clip_grad_norm` reads the norm back from ``stats[1]`` inside its scaling
kernel. Nothing here copies to the host, so a training step can run without a
synchronisation; the caller reads ``stats`` when it wants the numbers.

The updates evaluate the host expressions in the same precision and order (moments in
float64, the update cast to the parameter dtype before it is applied), so a device step
equals the CPU step up to rounding (the device may fuse a multiply and an add).

The launchers take device arrays (host NumPy arrays too, copied in and out) and check
shapes and dtypes before a launch.
"""

import math

import numpy as np
from numba import cuda, float64

from . import _jit, _reduce
from ._jit import blocks, cached_factory, numba_type, on_device

__all__ = ["add_l2", "clip_grad_norm", "check_finite", "sgd_step", "adam_step",
           "accumulate", "copy", "fill"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_F64 = (np.dtype(np.float64),)


def _check(named):
    """Shapes and dtypes before a launch: ``{name: (array, shape, dtypes)}``."""
    for name, (array, shape, dtypes) in named.items():
        if tuple(array.shape) != tuple(shape) or np.dtype(array.dtype) not in dtypes:
            wanted = " or ".join(str(d) for d in dtypes)
            raise ValueError(f"{name} must have shape {tuple(shape)} and dtype {wanted}, got "
                             f"{tuple(array.shape)} and {array.dtype}")


def _size(name, array):
    if len(array.shape) != 1:
        raise ValueError(f"{name} must be 1-D (a flat buffer), got shape {tuple(array.shape)}")
    return array.shape[0]


def _launch(size):
    block = _jit.ELEMENTWISE_BLOCK
    return blocks(size, block), block


# --------------------------------------------------------------------------- kernels


@cached_factory
def _l2_kernel(dtype, block):
    dt = numba_type(dtype)

    def kernel(p, g, mask, coef, partials):
        shared = cuda.shared.array(block, dtype=float64)
        tid = cuda.threadIdx.x
        total = float64(0.0)
        factor = dt(coef)
        for i in range(cuda.blockIdx.x * block + tid, p.shape[0], cuda.gridDim.x * block):
            pm = p[i] * mask[i]
            value = float64(pm)
            total += value * value
            g[i] += pm * factor
        shared[tid] = total
        _reduce.block_sum_into(partials, shared, tid, block)

    return cuda.jit(kernel)


@cached_factory
def _sum_squares_kernel(block):
    def kernel(g, partials):
        shared = cuda.shared.array(block, dtype=float64)
        tid = cuda.threadIdx.x
        total = float64(0.0)
        for i in range(cuda.blockIdx.x * block + tid, g.shape[0], cuda.gridDim.x * block):
            value = float64(g[i])
            total += value * value
        shared[tid] = total
        _reduce.block_sum_into(partials, shared, tid, block)

    return cuda.jit(kernel)


@cached_factory
def _finite_probe_kernel(block):
    def kernel(p, partials):
        shared = cuda.shared.array(block, dtype=float64)
        tid = cuda.threadIdx.x
        total = float64(0.0)
        for i in range(cuda.blockIdx.x * block + tid, p.shape[0], cuda.gridDim.x * block):
            if not math.isfinite(p[i]):
                total += 1.0  # counts the non-finite elements
        shared[tid] = total
        _reduce.block_sum_into(partials, shared, tid, block)

    return cuda.jit(kernel)


@cached_factory
def _clip_kernel(dtype):
    dt = numba_type(dtype)

    def kernel(g, max_norm, stats):
        i = cuda.grid(1)
        if i < g.shape[0]:
            norm = stats[1]
            if math.isfinite(norm) and norm > max_norm:
                g[i] *= dt(max_norm / (norm + 1e-12))

    return cuda.jit(kernel)


@cached_factory
def _sgd_kernel(dtype):
    dt = numba_type(dtype)

    def kernel(p, g, v, lr, momentum, nesterov):
        i = cuda.grid(1)
        if i < p.shape[0]:
            scaled = dt(lr) * g[i]  # the host's ``lr * g``: in the gradient dtype
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
            mi = m[i] * beta_1 + dt(1.0 - beta_1) * gi  # host: ``(1 - b1) * g`` in the dtype
            vi = v[i] * beta_2 + (1.0 - beta_2) * (float64(gi) * float64(gi))
            m[i] = mi
            v[i] = vi
            update = mi / (math.sqrt(vi) + epsilon)
            update *= step
            p[i] -= dt(update)

    return cuda.jit(kernel)


@cuda.jit
def _add_kernel(dst, src):
    i = cuda.grid(1)
    if i < dst.shape[0]:
        dst[i] += src[i]


# --------------------------------------------------------------------------- launchers


@on_device(outputs=(1, 5))
def add_l2(params, grads, mask, coef, scale, stats):
    """Add an L2 penalty on the masked parameters to the gradients and the loss.

    Parameters
    ----------
    params : device array, shape (P,)
        Parameters (float32 or float64).
    grads : device array, shape (P,), the dtype of ``params``
        Added into: ``coef * params * mask``, in their dtype.
    mask : device array, shape (P,), the dtype of ``params``
        1 for penalised parameters (weights), 0 for the others (biases).
    coef : float
        Gradient coefficient of the penalty.
    scale : float
        Loss coefficient: ``stats[0] += scale * sum((params * mask)**2)`` (float64 sum).
    stats : device array of float64, shape (4,)
        Training statistics; ``stats[0]`` (the loss) is added into on the device.

    Raises
    ------
    ValueError
        If a shape or dtype does not fit.
    """
    size = _size("params", params)
    dtype = np.dtype(params.dtype)
    _check({"params": (params, (size,), _FLOATS), "grads": (grads, (size,), (dtype,)),
            "mask": (mask, (size,), (dtype,)), "stats": (stats, (4,), _F64)})
    grid, block = _reduce.geometry(size)
    sums = _reduce.partials(grid)
    _l2_kernel(dtype.str, block)[grid, block](params, grads, mask, float(coef), sums)
    _reduce.finish(sums, stats, 0, _reduce.OP_ADD, float(scale))


@on_device(outputs=(0, 2))
def clip_grad_norm(grads, max_norm, stats):
    """Measure the gradient norm and scale the gradients down to at most ``max_norm``.

    Parameters
    ----------
    grads : device array, shape (P,)
        Gradients (float32 or float64), scaled in place by ``max_norm / (norm + 1e-12)``
        (in their dtype) when ``max_norm > 0`` and the norm is finite and larger.
    max_norm : float
        Largest norm kept; ``<= 0`` only measures.
    stats : device array of float64, shape (4,)
        ``stats[1]`` is written on the device: the Euclidean norm before clipping; the
        scaling kernel reads it from there.

    Raises
    ------
    ValueError
        If a shape or dtype does not fit.
    """
    size = _size("grads", grads)
    _check({"grads": (grads, (size,), _FLOATS), "stats": (stats, (4,), _F64)})
    grid, block = _reduce.geometry(size)
    sums = _reduce.partials(grid)
    _sum_squares_kernel(block)[grid, block](grads, sums)
    _reduce.finish(sums, stats, 1, _reduce.OP_SQRT)
    max_norm = float(max_norm)
    if max_norm > 0 and size:
        _clip_kernel(np.dtype(grads.dtype).str)[_launch(size)](grads, max_norm, stats)


@on_device(outputs=(1,))
def check_finite(params, stats):
    """Write ``stats[2] = 1.0`` on the device if every element of ``params`` is finite,
    else ``0.0``.

    Parameters
    ----------
    params : device array, shape (P,)
        Buffer to check (float32 or float64).
    stats : device array of float64, shape (4,)
        ``stats[2]`` is written.

    Raises
    ------
    ValueError
        If a shape or dtype does not fit.
    """
    size = _size("params", params)
    _check({"params": (params, (size,), _FLOATS), "stats": (stats, (4,), _F64)})
    grid, block = _reduce.geometry(size)
    sums = _reduce.partials(grid)
    _finite_probe_kernel(block)[grid, block](params, sums)
    _reduce.finish(sums, stats, 2, _reduce.OP_IS_ZERO)


@on_device(outputs=(0, 2))
def sgd_step(params, grads, velocity, learning_rate, momentum, nesterov):
    """One step of SGD with (Nesterov) momentum, as :func:`rnnumba.kernels.cpu.optim.sgd_step`.

    Parameters
    ----------
    params : device array, shape (P,)
        Updated in place (float32 or float64; the update cast to their dtype).
    grads : device array, shape (P,), the dtype of ``params``
        Gradients.
    velocity : device array of float64, shape (P,)
        Momentum buffer, updated in place.
    learning_rate, momentum : float
        Step size and momentum.
    nesterov : bool
        Nesterov's variant.

    Raises
    ------
    ValueError
        If a shape or dtype does not fit.
    """
    size = _size("params", params)
    dtype = np.dtype(params.dtype)
    _check({"params": (params, (size,), _FLOATS), "grads": (grads, (size,), (dtype,)),
            "velocity": (velocity, (size,), _F64)})
    if size:
        _sgd_kernel(dtype.str)[_launch(size)](params, grads, velocity, float(learning_rate),
                                              float(momentum), bool(nesterov))


@on_device(outputs=(0, 2, 3))
def adam_step(params, grads, m, v, t, learning_rate, beta_1, beta_2, epsilon):
    """Adam step number ``t`` (1-based, already counted), as
    :func:`rnnumba.kernels.cpu.optim.adam_step`.

    Parameters
    ----------
    params : device array, shape (P,)
        Updated in place (float32 or float64; the update cast to their dtype).
    grads : device array, shape (P,), the dtype of ``params``
        Gradients.
    m, v : device arrays of float64, shape (P,)
        First and second moments, updated in place.
    t : int
        Step number, from 1.
    learning_rate, beta_1, beta_2, epsilon : float
        Adam's hyper-parameters.

    Raises
    ------
    ValueError
        If a shape or dtype does not fit.
    """
    size = _size("params", params)
    dtype = np.dtype(params.dtype)
    _check({"params": (params, (size,), _FLOATS), "grads": (grads, (size,), (dtype,)),
            "m": (m, (size,), _F64), "v": (v, (size,), _F64)})
    b1, b2 = float(beta_1), float(beta_2)
    # the host's ``lr * np.sqrt(...) / (...)``: both square roots are correctly rounded
    step = float(learning_rate) * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
    if size:
        _adam_kernel(dtype.str)[_launch(size)](params, grads, m, v, step, b1, b2,
                                               float(epsilon))


@on_device(outputs=(0,))
def accumulate(dst, src):
    """``dst += src`` for two device buffers of one shape and dtype.

    Raises
    ------
    ValueError
        If a shape or dtype does not fit.
    """
    size = _size("dst", dst)
    _check({"dst": (dst, (size,), _FLOATS), "src": (src, (size,), (np.dtype(dst.dtype),))})
    if size:
        _add_kernel[_launch(size)](dst, src)


@on_device(outputs=(0,))
def copy(dst, src):
    """``dst[:] = src`` for two device buffers of one shape and dtype (device to device).

    Raises
    ------
    ValueError
        If a shape or dtype does not fit.
    """
    size = _size("dst", dst)
    _check({"dst": (dst, (size,), (np.dtype(dst.dtype),)),
            "src": (src, (size,), (np.dtype(dst.dtype),))})
    if size:
        dst.copy_to_device(src)


@on_device(outputs=(0,))
def fill(array, value):
    """Set every element of a contiguous device ``array`` to ``value``."""
    _jit.fill(array, value)
