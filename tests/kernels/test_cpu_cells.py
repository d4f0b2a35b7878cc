"""Tests for the CPU cell modules (``kernels/cpu/{rnn,lstm,gru}.py``) and ``common`` at the
kernel contract: the projection and the gate gradients may live in the gate columns of the
cache, and the output and input gradients may be views of batch-major arrays."""

import inspect
import platform

import numpy as np
import pytest

from rnnumba.kernels.cpu import CELLS, common

T, N, I, H = 5, 4, 3, 6
LENGTHS = np.array([5, 1, 3, 4], dtype=np.int64)


def _layer(cell, reverse, over_cache, batch_major=False):
    """Both phases of one layer and direction; the projection and the gate gradients go
    through the cache's gate columns when ``over_cache``, else through their own arrays;
    ``grad_out`` and ``grad_x`` are time-major views of batch-major arrays when
    ``batch_major``."""
    mod = CELLS[cell]
    G, K = mod.GATES, mod.cache_width(H)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, N, I))
    w_ih, w_hh = rng.standard_normal((G * H, I)) * 0.5, rng.standard_normal((G * H, H)) * 0.5
    b_ih, b_hh = rng.standard_normal(G * H) * 0.1, rng.standard_normal(G * H) * 0.1
    h0, c0 = rng.standard_normal((N, H)), rng.standard_normal((N, H))
    g_out, g_h = rng.standard_normal((T, N, H)), rng.standard_normal((N, H))
    g_c = rng.standard_normal((N, H))
    if cell != "lstm":
        c0 = g_c = np.zeros((0, 0))
    out, cache = np.zeros((T, N, H)), np.full((T, N, K), np.nan)
    h_n, c_n = np.zeros((N, H)), np.zeros_like(c0)
    proj = cache[:, :, :G * H] if over_cache else np.empty((T, N, G * H))
    common.project_input(x, w_ih, b_ih, proj)
    mod.forward_sequence(proj, w_hh, b_hh, h0, c0, LENGTHS, reverse, 0, out, 0, cache, h_n, c_n)
    d_ih = cache[:, :, :G * H] if over_cache else np.empty((T, N, G * H))
    d_hh = d_ih
    if cell == "gru":  # with the gates spent, the n gate's recurrent gradient goes over hn
        d_hh = cache[:, :, G * H:] if over_cache else np.empty((T, N, G * H))
    grad_h0, grad_c0 = np.empty((N, H)), np.empty_like(c0)
    if batch_major:
        g_out = np.ascontiguousarray(g_out.transpose(1, 0, 2)).transpose(1, 0, 2)
    mod.backward_sequence(w_hh, b_hh, h0, c0, LENGTHS, reverse, 0, out, 0, cache, g_out, g_h,
                          g_c, d_ih, d_hh, grad_h0, grad_c0)
    grad_x = np.zeros((N, T, I)).transpose(1, 0, 2) if batch_major else np.zeros_like(x)
    grads = [np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros_like(b_ih), np.zeros_like(b_hh),
             grad_x]
    common.weight_gradients(x, out, 0, h0, LENGTHS, reverse, d_ih, d_hh, w_ih, *grads)
    return [out, h_n, c_n, grad_h0, grad_c0, *grads]


NAMES = ["out", "h_n", "c_n", "grad_h0", "grad_c0", "grad_w_ih", "grad_w_hh", "grad_b_ih",
         "grad_b_hh", "grad_x"]


def _spy(monkeypatch, mod, flag):
    """Record the value of the row kernels' argument ``flag`` at each call."""
    seen = []
    original = mod.run_over_rows

    def spy(row_kernel, loop, *args):
        names = list(inspect.signature(row_kernel.py_func).parameters)
        if flag in names:
            seen.append(args[names.index(flag)])
        return original(row_kernel, loop, *args)

    monkeypatch.setattr(mod, "run_over_rows", spy)
    return seen


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_projection_and_gate_gradients_may_live_in_the_cache(cell, reverse, monkeypatch):
    flags = _spy(monkeypatch, CELLS[cell], "over_cache")
    separate = _layer(cell, reverse, over_cache=False)
    assert flags == [False, False]  # forward, backward
    in_cache = _layer(cell, reverse, over_cache=True)
    assert flags[2:] == [True, True]  # the in-place kernels ran
    for name, want, got in zip(NAMES, separate, in_cache):
        assert np.all(np.isfinite(got)), name
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13, err_msg=name)
    assert np.any(separate[5]) and np.any(separate[6])  # gradients were actually computed


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradients_may_be_views_of_batch_major_arrays(cell, reverse, monkeypatch):
    flags = _spy(monkeypatch, CELLS[cell], "batch_major")
    time_major = _layer(cell, reverse, over_cache=False)
    assert flags == [False]
    batch_major = _layer(cell, reverse, over_cache=False, batch_major=True)
    assert flags[1:] == [True]  # the kernel read the batch-major array itself, not a copy
    assert batch_major[-1].base is not None and not batch_major[-1].flags.c_contiguous
    for name, want, got in zip(NAMES, time_major, batch_major):
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert np.any(time_major[-1]) and np.any(time_major[3])


def _reference_weight_gradients(x, out, h0, lengths, reverse, d_ih, d_hh, w_ih):
    """NumPy reference: each active step's gate gradients times the state it started from."""
    steps, batch, _ = x.shape
    h_prev = np.zeros_like(out)
    for n in range(batch):
        for t in range(lengths[n]):
            first = t == (lengths[n] - 1 if reverse else 0)
            h_prev[t, n] = h0[n] if first else out[t + 1 if reverse else t - 1, n]
    return (np.einsum("tng,tni->gi", d_ih, x), np.einsum("tng,tnh->gh", d_hh, h_prev),
            d_ih.sum(axis=(0, 1)), d_hh.sum(axis=(0, 1)), d_ih @ w_ih)


@pytest.mark.parametrize("narrow", [False, True], ids=["full-d_hh", "n-gate-d_hh"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("path", ["compiled", "compiled-prange", "numpy-chunked-split",
                                  "strided-columns"])
def test_weight_gradients_match_the_numpy_reference(reverse, path, narrow, monkeypatch):
    """The compiled kernel of small phases, in one call and split in a prange (one block
    straddling the first column of a narrow ``d_hh``); the NumPy products in chunks of gate
    columns and time steps over Python threads; and gate gradients whose columns are not
    contiguous, which BLAS cannot read in place (NumPy then copies them). ``d_hh`` whole or,
    as the GRU's spent cache gives it, its last gate only."""
    from threadpoolctl import threadpool_limits

    from rnnumba.kernels.cpu import _threads
    if path == "compiled-prange":
        if not _threads.prange_loops():
            if platform.machine() in ("x86_64", "AMD64"):  # tbb is a dependency there
                pytest.fail("Numba's TBB threading layer does not start")
            pytest.skip("Numba has no TBB threading layer here")
        monkeypatch.setattr(_threads, "PRANGE_GEMM_MIN_BLOCK_MACS", 1)
    if path == "numpy-chunked-split":
        monkeypatch.setattr(common, "_GATE_COLUMNS", 5)  # the default column block
        monkeypatch.setattr(common, "_INPUT_GRAD_ELEMENTS", 2 * N * I)  # two steps at a time
        monkeypatch.setattr(_threads, "GEMM_MIN_BLOCK_MACS", 1)
    compiled = []
    original = common._compiled_gradients
    monkeypatch.setattr(common, "_compiled_gradients",
                        lambda *args: compiled.append(True) or original(*args))
    rng = np.random.default_rng(7)
    G = 3 * H
    lengths = np.array([5, 0, 2, 4], dtype=np.int64)
    active = (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
    x, w_ih = rng.standard_normal((T, N, I)), rng.standard_normal((G, I))
    out = rng.standard_normal((T, N, H)) * active  # zero past each row's end, as the kernels
    h0 = rng.standard_normal((N, H))
    d_ih = rng.standard_normal((T, N, G)) * active
    d_hh = rng.standard_normal((T, N, G)) * active
    if narrow:
        d_hh[:, :, :G - H] = d_ih[:, :, :G - H]
    grads = [np.full((G, I), 1.0), np.full((G, H), 2.0), np.full(G, 3.0), np.full(G, 4.0),
             np.full((N, T, I), 5.0).transpose(1, 0, 2)]  # added into, as the contract says
    given = d_hh[:, :, G - H:].copy() if narrow else d_hh
    given_ih = d_ih
    if path == "strided-columns":
        given_ih = np.repeat(d_ih, 2, axis=2)[:, :, ::2]
        given = np.repeat(given, 2, axis=2)[:, :, ::2]
    with threadpool_limits(limits=3, user_api="blas"):
        common.weight_gradients(x, out, 0, h0, lengths, reverse, given_ih, given, w_ih, *grads)
    assert compiled == ([True] if path.startswith("compiled") else [])
    want = _reference_weight_gradients(x, out, h0, lengths, reverse, d_ih, d_hh, w_ih)
    for name, got, expected, start in zip(NAMES[5:], grads, want, (1.0, 2.0, 3.0, 4.0, 5.0)):
        np.testing.assert_allclose(got, expected + start, rtol=1e-12, atol=1e-12, err_msg=name)


def test_gru_with_gates_spent_needs_its_n_gate_gradient_in_the_cache():
    mod = CELLS["gru"]
    K = mod.cache_width(H)
    cache = np.zeros((T, N, K))
    z = np.zeros((N, H))
    with pytest.raises(ValueError, match=r"cache\[:, :, 3\*H:\]"):
        mod.backward_sequence(np.zeros((3 * H, H)), np.zeros(3 * H), z, np.zeros((0, 0)), LENGTHS,
                              False, 0, np.zeros((T, N, H)), 0, cache, np.zeros((T, N, H)), z,
                              np.zeros((0, 0)), cache[:, :, :3 * H], np.zeros((T, N, 3 * H)),
                              np.zeros((N, H)), np.zeros((0, 0)))


def test_project_input_through_whole_rows_of_the_cache():
    """The bias goes in through the cache's whole rows only where they stay inside it."""
    rng = np.random.default_rng(9)
    x, w, b = rng.standard_normal((T, N, I)), rng.standard_normal((8, I)), rng.standard_normal(8)
    cache = np.full((T, N, 11), 7.0)
    assert common._whole_rows(cache[:, :, :8]).shape == (T * N, 11)
    assert common._whole_rows(cache[:, :, 3:]) is None  # would reach past the cache's end
    assert common._whole_rows(cache.transpose(1, 0, 2)[:, :, :8]) is None
    for proj in (cache[:, :, :8], np.empty((T, N, 8)), np.empty((T, 2 * N, 8))[:, ::2]):
        common.project_input(x, w, b, proj)
        np.testing.assert_allclose(proj, x @ w.T + b, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(cache[:, :, 8:], 7.0)  # the other columns are untouched


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("col", [0, H], ids=["first-direction", "second-direction"])
def test_rnn_projection_may_live_in_its_output_columns(reverse, col, monkeypatch):
    mod = CELLS["rnn"]
    flags = _spy(monkeypatch, mod, "over_out")
    rng = np.random.default_rng(4)
    x, w_ih = rng.standard_normal((T, N, I)), rng.standard_normal((H, I))
    w_hh = rng.standard_normal((H, H)) * 0.5
    b_ih, b_hh = rng.standard_normal(H), rng.standard_normal(H)
    h0 = rng.standard_normal((N, H))
    results = []
    for in_place in (False, True):
        out = np.full((T, N, 2 * H), 3.0)  # both directions' columns; the other one stays
        proj = out[:, :, col:col + H] if in_place else np.empty((T, N, H))
        common.project_input(x, w_ih, b_ih, proj)
        h_n = np.empty((N, H))
        mod.forward_sequence(proj, w_hh, b_hh, h0, np.zeros((0, 0)), LENGTHS, reverse, 0, out,
                             col, np.empty((T, N, 0)), h_n, np.zeros((0, 0)))
        results.append((out, h_n))
    assert flags == [False, True]
    (want_out, want_h), (got_out, got_h) = results
    np.testing.assert_array_equal(got_out, want_out)
    np.testing.assert_array_equal(got_h, want_h)
    other = slice(H, 2 * H) if col == 0 else slice(0, H)
    np.testing.assert_array_equal(got_out[:, :, other], 3.0)
    assert not np.any(got_out[LENGTHS[1]:, 1, col:col + H])  # zero past a row's end
