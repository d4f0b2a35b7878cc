"""Scalar gate math, written once as plain Python and compiled for every target.

The CPU modules wrap these with ``numba.njit(inline="always")`` and the CUDA modules with
``numba.cuda.jit(device=True)``, so both backends run the same arithmetic. Each cell has a
pointwise forward (pre-activations in, activations and new state out) and a pointwise
backward (upstream gradients in, pre-activation gradients out). Arguments named ``a_*`` are
pre-activations; ``dh``/``dc`` are the total gradients reaching ``h_t``/``c_t``.
"""

import math
import types

ACT_TANH = 0
ACT_RELU = 1


def sigmoid(x):
    # exp(-x) overflows to inf for very negative x, and 1/inf is the right limit 0.
    return 1.0 / (1.0 + math.exp(-x))


def tanh(x):
    return math.tanh(x)


def rnn_point(a, act):
    """Vanilla RNN: ``h = tanh(a)`` or ``relu(a)``."""
    if act == ACT_RELU:
        return max(a, 0.0)
    return tanh(a)


def rnn_point_backward(dh, h, act):
    """Gradient at the pre-activation of a vanilla RNN step, from ``h`` after activation."""
    if act == ACT_RELU:
        return dh if h > 0.0 else 0.0
    return dh * (1.0 - h * h)


def lstm_point(a_i, a_f, a_g, a_o, c_prev):
    """LSTM step: returns ``(i, f, g, o, c, h)``."""
    i = sigmoid(a_i)
    f = sigmoid(a_f)
    g = tanh(a_g)
    o = sigmoid(a_o)
    c = f * c_prev + i * g
    h = o * tanh(c)
    return i, f, g, o, c, h


def lstm_point_backward(dh, dc, i, f, g, o, c, c_prev):
    """LSTM step backward: returns ``(da_i, da_f, da_g, da_o, dc_prev)``."""
    tanh_c = tanh(c)
    dc_total = dc + dh * o * (1.0 - tanh_c * tanh_c)
    da_i = dc_total * g * i * (1.0 - i)
    da_f = dc_total * c_prev * f * (1.0 - f)
    da_g = dc_total * i * (1.0 - g * g)
    da_o = dh * tanh_c * o * (1.0 - o)
    return da_i, da_f, da_g, da_o, dc_total * f


def gru_point(a_r, a_z, a_n, hn, h_prev):
    """GRU step as PyTorch/cuDNN: ``n = tanh(a_n + r * hn)`` with ``hn = W_hn h + b_hn``.

    ``a_n`` holds only the input part ``W_in x + b_in``. Returns ``(r, z, n, h)``.
    """
    r = sigmoid(a_r)
    z = sigmoid(a_z)
    n = tanh(a_n + r * hn)
    h = (1.0 - z) * n + z * h_prev
    return r, z, n, h


def gru_point_backward(dh, r, z, n, hn, h_prev):
    """GRU step backward: returns ``(da_r, da_z, da_n, dhn, dh_prev_direct)``.

    ``da_n`` multiplies the input projection, ``dhn`` the recurrent one; the gradient that
    reaches ``h_prev`` is ``dh_prev_direct`` plus the recurrent GEMM of ``(da_r, da_z, dhn)``.
    """
    da_n = dh * (1.0 - z) * (1.0 - n * n)
    da_r = da_n * hn * r * (1.0 - r)
    da_z = dh * (h_prev - n) * z * (1.0 - z)
    return da_r, da_z, da_n, da_n * r, dh * z


_PRIMITIVES = ("sigmoid", "tanh")
_GATE_FUNCTIONS = (
    "rnn_point",
    "rnn_point_backward",
    "lstm_point",
    "lstm_point_backward",
    "gru_point",
    "gru_point_backward",
)


def compile_for(decorator, primitives=None):
    """Compile every gate function with ``decorator`` (e.g. ``njit`` or ``cuda.jit(device=True)``).

    The functions are cloned into one namespace so that each calls the *compiled* versions of
    the others. ``primitives`` may replace ``sigmoid``/``tanh`` with a target's own compiled
    versions (the CPU uses vectorisable float32 approximations). Returns the namespace.
    """
    namespace = {"math": math, "ACT_TANH": ACT_TANH, "ACT_RELU": ACT_RELU}
    primitives = dict(primitives or {})
    for name in _PRIMITIVES:
        if name not in primitives:
            source = globals()[name]
            primitives[name] = decorator(types.FunctionType(source.__code__, namespace, name))
    namespace.update(primitives)
    for name in _GATE_FUNCTIONS:
        source = globals()[name]
        namespace[name] = decorator(types.FunctionType(source.__code__, namespace, name))
    return types.SimpleNamespace(**{name: namespace[name]
                                    for name in _PRIMITIVES + _GATE_FUNCTIONS})
