"""Tests for :mod:`rnnumba.kernels.cpu._state`: the helpers shared by the CPU time loops."""

import inspect

import numpy as np
import pytest

from rnnumba import Recurrent
from rnnumba.kernels.cpu import _state, gru, lstm, rnn
from reference import reference_forward

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
LENGTHS = np.array([6, 1, 3, 2, 6])


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step_product_is_the_matrix_product(transposed, dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 7)).astype(dtype)
    b = rng.standard_normal((7, 12)).astype(dtype)
    out = np.full((5, 12), np.nan, dtype=dtype)
    work = _state.optional_workspace(transposed, 12, 5, out)
    assert work.shape == ((12, 5) if transposed else (0, 0))
    _state.step_product(a, b, np.ascontiguousarray(b.T), out, work)
    np.testing.assert_allclose(out, a @ b, rtol=1e-5 if dtype == "float32" else 1e-12)


def test_copies_and_shortest():
    src = np.arange(12.0).reshape(4, 3)
    dst = np.zeros_like(src)
    _state.copy_rows(dst, src, 1, 3)
    np.testing.assert_array_equal(dst, [[0, 0, 0], [3, 4, 5], [6, 7, 8], [0, 0, 0]])
    row = np.zeros(3)
    _state.copy_vector(row, src[3])
    np.testing.assert_array_equal(row, src[3])
    assert _state.shortest(np.array([4, 2, 7], dtype=np.int64)) == 2


@_state.kernel
def _write_through_unmanaged(array, row, value):
    view = _state.unmanaged(array)
    target = view[row]
    for j in range(target.shape[0]):
        target[j] = value
    return view.shape[0], view.shape[1], view[row, 0]


@_state.kernel
def _layout_kept(array):
    return _state.unmanaged(array).copy()  # never hand an unmanaged array back to Python


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_unmanaged_views_the_same_memory(dtype):
    array = np.zeros((4, 3), dtype=dtype)
    assert _write_through_unmanaged(array, 2, 7) == (4, 3, 7)
    np.testing.assert_array_equal(array, [[0] * 3, [0] * 3, [7] * 3, [0] * 3])


def test_unmanaged_returns_a_strided_array_as_it_is():
    base = np.arange(24.0).reshape(4, 6)
    strided = base[:, ::2]
    np.testing.assert_array_equal(_layout_kept(strided), strided)
    np.testing.assert_array_equal(_layout_kept(base), base)
    assert _layout_kept(np.empty((0, 0, 0))).shape == (0, 0, 0)


def test_time_major_view_finds_the_batch_major_array_behind_a_view():
    time_major = np.arange(24.0).reshape(2, 3, 4)
    base, batch_major = _state.time_major_view(time_major)
    assert base is time_major and not batch_major
    stored = np.arange(24.0).reshape(3, 2, 4)  # (N, T, K)
    base, batch_major = _state.time_major_view(stored.transpose(1, 0, 2))
    assert batch_major and base.shape == stored.shape and base.flags.c_contiguous
    assert np.shares_memory(base, stored)  # the array itself, not a copy
    odd = time_major[:, :, ::2]  # neither layout: copied
    base, batch_major = _state.time_major_view(odd)
    assert not batch_major and base.flags.c_contiguous and not np.shares_memory(base, odd)
    np.testing.assert_array_equal(base, odd)


@pytest.mark.parametrize("cell, nonlinearity", CELLS, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
def test_transposed_step_products_give_the_same_network(cell, nonlinearity, monkeypatch):
    """Large hidden sizes compute the per-step products transposed; force that path on a
    small network and compare with the direct one and with the NumPy reference."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((5, 6, 3))
    G = rng.standard_normal((5, 6, 8))
    results, flags = [], []

    def spy(original):
        def run_over_rows(row_kernel, loop, *args):
            names = list(inspect.signature(row_kernel.py_func).parameters)
            flags.append(args[names.index("transposed")])
            return original(row_kernel, loop, *args)
        return run_over_rows

    for module in (rnn, lstm, gru):
        monkeypatch.setattr(module, "run_over_rows", spy(module.run_over_rows))
    for threshold in (10**9, 1):
        monkeypatch.setattr(_state, "TRANSPOSED_MIN_HIDDEN", threshold)
        net = Recurrent(cell=cell, input_size=3, hidden_size=4, num_layers=2, bidirectional=True,
                        nonlinearity=nonlinearity, dtype="float64", random_state=0)
        output, _ = net.forward(X, lengths=LENGTHS)
        results.append((net, output, net.backward(G)))
    (net, direct, grads), (_, transposed, grads_t) = results
    half = len(flags) // 2
    assert flags[:half] == [False] * half and flags[half:] == [True] * half
    expected, _, _ = reference_forward(cell, net.state_dict(), X, lengths=LENGTHS, num_layers=2,
                                       bidirectional=True, nonlinearity=nonlinearity)
    np.testing.assert_allclose(transposed, expected, atol=1e-12)
    np.testing.assert_allclose(transposed, direct, atol=1e-13)
    for name in grads:
        np.testing.assert_allclose(grads_t[name], grads[name], atol=1e-12, err_msg=name)
