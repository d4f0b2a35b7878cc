"""Optimizer steps, clipping, L2 and buffer helpers on flat parameter buffers, on the CPU
(the contract; :mod:`..cuda.optim` has the same functions and signatures)::

    add_l2(params, grads, mask, coef, scale, stats)       # grads += coef * params * mask
    clip_grad_norm(grads, max_norm, stats)                # stats[1] = norm; scale grads
    check_finite(params, stats)                           # stats[2] = all finite
    sgd_step(params, grads, velocity, learning_rate, momentum, nesterov)
    adam_step(params, grads, m, v, t, learning_rate, beta_1, beta_2, epsilon)
    accumulate(dst, src)                                  # dst += src
    copy(dst, src)                                        # dst[:] = src
    fill(array, value)                                    # array[:] = value

Every array is 1-D and C-contiguous (one flat buffer); ``params``, ``grads``, ``mask``,
``dst`` and ``src`` share one float dtype, ``velocity``, ``m`` and ``v`` are float64 (the
optimizer state, whatever the parameter dtype). ``stats`` is a float64 ``(4,)`` array kept
where the buffers are (host here, device on CUDA) so that a training step needs no
transfer: ``[loss, grad_norm, params_finite, unused]``. Sums of squares run in float64.

The updates are those of :mod:`rnnumba.optim` (``SGD._update``, ``Adam._update``) bit for
bit: the same NumPy expressions in the same order and precision.
"""

import numpy as np

from ._jit import kernel

__all__ = ["add_l2", "clip_grad_norm", "check_finite", "sgd_step", "adam_step",
           "accumulate", "copy", "fill"]


def _sum_squares(a):
    # einsum, not np.dot: no BLAS call, and float64 accumulation for float32 buffers
    return float(np.einsum("i,i->", a, a, dtype=np.float64))


def add_l2(params, grads, mask, coef, scale, stats):
    """Add an L2 penalty on the masked parameters to the gradients and the loss.

    Parameters
    ----------
    params : ndarray, shape (P,)
        Parameters.
    grads : ndarray, shape (P,)
        Added into: ``coef * params * mask``, in the dtype of ``grads``.
    mask : ndarray, shape (P,)
        1 for penalised parameters (weights), 0 for the others (biases); the parameter
        dtype.
    coef : float
        Gradient coefficient of the penalty.
    scale : float
        Loss coefficient: ``stats[0] += scale * sum((params * mask)**2)`` (float64 sum).
    stats : ndarray of float64, shape (4,)
        Training statistics; ``stats[0]`` (the loss) is added into.
    """
    pm = params * mask
    stats[0] += float(scale) * _sum_squares(pm)
    pm *= grads.dtype.type(coef)
    grads += pm


def clip_grad_norm(grads, max_norm, stats):
    """Measure the gradient norm and scale the gradients down to at most ``max_norm``.

    Parameters
    ----------
    grads : ndarray, shape (P,)
        Gradients, scaled in place by ``max_norm / (norm + 1e-12)`` (in their dtype) when
        ``max_norm > 0`` and the norm is finite and larger than ``max_norm``.
    max_norm : float
        Largest norm kept; ``<= 0`` only measures.
    stats : ndarray of float64, shape (4,)
        ``stats[1]`` is written: the Euclidean norm before clipping (float64 sum).
    """
    norm = float(np.sqrt(_sum_squares(grads)))
    stats[1] = norm
    max_norm = float(max_norm)
    if max_norm > 0 and np.isfinite(norm) and norm > max_norm:
        grads *= grads.dtype.type(max_norm / (norm + 1e-12))


def check_finite(params, stats):
    """Write ``stats[2] = 1.0`` if every element of ``params`` is finite, else ``0.0``.

    Parameters
    ----------
    params : ndarray, shape (P,)
        Buffer to check.
    stats : ndarray of float64, shape (4,)
        ``stats[2]`` is written.
    """
    stats[2] = 1.0 if np.isfinite(params).all() else 0.0


def sgd_step(params, grads, velocity, learning_rate, momentum, nesterov):
    """One step of SGD with (Nesterov) momentum, as :class:`rnnumba.optim.SGD`::

        v <- momentum * v - lr * g
        p <- p + (momentum * v - lr * g)   if nesterov else   p <- p + v

    Parameters
    ----------
    params : ndarray, shape (P,)
        Updated in place (the update cast to their dtype).
    grads : ndarray, shape (P,)
        Gradients.
    velocity : ndarray of float64, shape (P,)
        Momentum buffer, updated in place.
    learning_rate, momentum : float
        Step size and momentum.
    nesterov : bool
        Nesterov's variant.
    """
    lr, mu = float(learning_rate), float(momentum)
    velocity *= mu
    velocity -= lr * grads
    if nesterov:
        params += (mu * velocity - lr * grads).astype(params.dtype, copy=False)
    else:
        params += velocity.astype(params.dtype, copy=False)


def adam_step(params, grads, m, v, t, learning_rate, beta_1, beta_2, epsilon):
    """Adam step number ``t`` (1-based, already counted), as :class:`rnnumba.optim.Adam`::

        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
        p <- p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

    Parameters
    ----------
    params : ndarray, shape (P,)
        Updated in place (the update cast to their dtype).
    grads : ndarray, shape (P,)
        Gradients.
    m, v : ndarray of float64, shape (P,)
        First and second moments, updated in place.
    t : int
        Step number, from 1.
    learning_rate, beta_1, beta_2, epsilon : float
        Adam's hyper-parameters.
    """
    b1, b2 = float(beta_1), float(beta_2)
    step = float(learning_rate) * np.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
    _adam_update(params, grads, m, v, float(step), b1, b2, float(epsilon))


@kernel
def _adam_update(params, grads, m, v, step, beta_1, beta_2, epsilon):
    """:func:`adam_step`'s update in one pass: the NumPy expressions of
    :class:`rnnumba.optim.Adam` element by element, each operation in the same order and
    precision (``(1 - b1) * g`` in the gradients' dtype, as NumPy computes a Python float
    times an array; no fused multiply-adds), so the results are the same bit for bit. The
    NumPy form made ten passes over the buffers with temporaries: 2.8x slower on 20,000
    parameters, a tenth of a training step at that size."""
    one_minus_b1 = grads.dtype.type(1.0 - beta_1)
    one_minus_b2 = 1.0 - beta_2
    for i in range(params.shape[0]):
        g = grads[i]
        g64 = np.float64(g)
        mi = m[i] * beta_1 + np.float64(one_minus_b1 * g)
        vi = v[i] * beta_2 + one_minus_b2 * (g64 * g64)
        m[i] = mi
        v[i] = vi
        update = mi / (np.sqrt(vi) + epsilon)
        update *= step
        params[i] -= params.dtype.type(update)


def accumulate(dst, src):
    """``dst += src`` (two buffers of one shape and dtype)."""
    dst += src


def copy(dst, src):
    """``dst[:] = src`` (two buffers of one shape and dtype)."""
    np.copyto(dst, src)


def fill(array, value):
    """Set every element of ``array`` to ``value``."""
    array.fill(value)
