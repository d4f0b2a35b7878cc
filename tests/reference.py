"""Pure NumPy reference for the recurrent cells: the oracle for every kernel.

Written from the cell equations with explicit loops over sequences and time steps, in
float64, taking weights as a PyTorch-style state dict (``weight_ih_l{k}``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}``, ``..._reverse``). Slow and readable on purpose.

Cell equations (``x`` the input, ``h``/``c`` the previous state)::

    rnn:   h' = act(W_ih x + b_ih + W_hh h + b_hh)              act = tanh or relu
    lstm:  i, f, g, o = split(W_ih x + b_ih + W_hh h + b_hh)    gate order i, f, g, o
           c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
           h' = sigmoid(o) * tanh(c')
    gru:   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)           gate order r, z, n
           z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
           n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
           h' = (1 - z) * n + z * h
"""

import numpy as np

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def sigmoid(a):
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-a))


def rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh"):
    """One vanilla RNN step for a single sequence; returns the new ``h``."""
    a = w_ih @ x + b_ih + w_hh @ h + b_hh
    if nonlinearity == "tanh":
        return np.tanh(a)
    if nonlinearity == "relu":
        return np.maximum(a, 0.0)
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step for a single sequence; returns ``(h, c)``."""
    a = w_ih @ x + b_ih + w_hh @ h + b_hh
    a_i, a_f, a_g, a_o = np.split(a, 4)
    c_new = sigmoid(a_f) * c + sigmoid(a_i) * np.tanh(a_g)
    h_new = sigmoid(a_o) * np.tanh(c_new)
    return h_new, c_new


def gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    """One GRU step for a single sequence (PyTorch/cuDNN variant); returns the new ``h``."""
    gi = w_ih @ x + b_ih
    gh = w_hh @ h + b_hh
    i_r, i_z, i_n = np.split(gi, 3)
    h_r, h_z, h_n = np.split(gh, 3)
    r = sigmoid(i_r + h_r)
    z = sigmoid(i_z + h_z)
    n = np.tanh(i_n + r * h_n)
    return (1.0 - z) * n + z * h


def _weights(state_dict, layer, reverse):
    """The four arrays of one layer and direction, as float64."""
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    return tuple(
        np.asarray(state_dict[name + suffix], dtype=np.float64)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    )


def _run_direction(cell, weights, xs, h, c, reverse, nonlinearity):
    """Run one direction over one sequence ``xs`` (L, I) of its own length.

    Returns the outputs ``(L, H)`` in time order and the final ``(h, c)``.
    """
    w_ih, w_hh, b_ih, b_hh = weights
    steps = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    outs = np.zeros((len(xs), h.shape[0]))
    for t in steps:
        if cell == "rnn":
            h = rnn_step(xs[t], h, w_ih, w_hh, b_ih, b_hh, nonlinearity)
        elif cell == "lstm":
            h, c = lstm_step(xs[t], h, c, w_ih, w_hh, b_ih, b_hh)
        elif cell == "gru":
            h = gru_step(xs[t], h, w_ih, w_hh, b_ih, b_hh)
        else:
            raise ValueError(f"unknown cell {cell!r}")
        outs[t] = h
    return outs, h, c


def reference_forward(cell, state_dict, X, lengths=None, hx=None, num_layers=1,
                      bidirectional=False, nonlinearity="tanh"):
    """Run a stacked, optionally bidirectional recurrent network, PyTorch semantics.

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}
    state_dict : dict
        PyTorch-style weights.
    X : array-like, shape (N, T, I)
        Batch-first input.
    lengths : array-like of int, shape (N,), optional
        Sequence ``n`` uses its first ``lengths[n]`` steps; outputs past the end are zero.
    hx : array or tuple of arrays, optional
        ``h0`` of shape (num_layers*D, N, H), or ``(h0, c0)`` for the LSTM. Zeros if None.
    num_layers, bidirectional, nonlinearity
        As in ``torch.nn.RNN``.

    Returns
    -------
    output : ndarray, shape (N, T, D*H)
    h_n : ndarray, shape (num_layers*D, N, H)
    c_n : ndarray of the same shape for the LSTM, else None
    """
    X = np.asarray(X, dtype=np.float64)
    N, T, _ = X.shape
    D = 2 if bidirectional else 1
    H = np.asarray(state_dict["weight_hh_l0"]).shape[1]
    lengths = np.full(N, T) if lengths is None else np.asarray(lengths)
    h0, c0 = _initial_states(cell, hx, num_layers * D, N, H)
    output = np.zeros((N, T, D * H))
    h_n = np.zeros((num_layers * D, N, H))
    c_n = np.zeros((num_layers * D, N, H))
    for n in range(N):
        L = int(lengths[n])
        layer_input = X[n, :L]
        for k in range(num_layers):
            outs = []
            for d in range(D):
                j = k * D + d
                o, h, c = _run_direction(cell, _weights(state_dict, k, d == 1), layer_input,
                                         h0[j, n], c0[j, n], d == 1, nonlinearity)
                outs.append(o)
                h_n[j, n], c_n[j, n] = h, c
            layer_input = np.concatenate(outs, axis=1)
        output[n, :L] = layer_input
    return output, h_n, (c_n if cell == "lstm" else None)


def _initial_states(cell, hx, S, N, H):
    """Split ``hx`` into float64 ``(h0, c0)`` arrays of shape (S, N, H), zeros if absent."""
    zeros = np.zeros((S, N, H))
    if hx is None:
        return zeros, zeros.copy()
    if cell == "lstm":
        h0, c0 = hx
        return np.asarray(h0, dtype=np.float64), np.asarray(c0, dtype=np.float64)
    return np.asarray(hx, dtype=np.float64), zeros
