"""Tests for the CPU cell modules (``kernels/cpu/{lstm,gru}.py``) at the kernel contract:
the projection and the gate gradients may live in the gate columns of the cache."""

import inspect

import numpy as np
import pytest

from rnnumba.kernels.cpu import CELLS, common

T, N, I, H = 5, 4, 3, 6
LENGTHS = np.array([5, 1, 3, 4], dtype=np.int64)


def _layer(cell, reverse, over_cache):
    """Both phases of one layer and direction; the projection and the gate gradients go
    through the cache's gate columns when ``over_cache``, else through their own arrays."""
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
    d_hh = np.empty((T, N, G * H)) if cell == "gru" else d_ih
    grad_h0, grad_c0 = np.empty((N, H)), np.empty_like(c0)
    mod.backward_sequence(w_hh, b_hh, h0, c0, LENGTHS, reverse, 0, out, 0, cache, g_out, g_h,
                          g_c, d_ih, d_hh, grad_h0, grad_c0)
    grads = [np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros_like(b_ih), np.zeros_like(b_hh),
             np.zeros_like(x)]
    common.weight_gradients(x, out, 0, h0, LENGTHS, reverse, d_ih, d_hh, w_ih, *grads)
    return [out, h_n, c_n, grad_h0, grad_c0, *grads]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_projection_and_gate_gradients_may_live_in_the_cache(cell, reverse, monkeypatch):
    mod = CELLS[cell]
    flags = []
    original = mod.run_over_rows

    def spy(row_kernel, batch, step_macs, *args):
        names = list(inspect.signature(row_kernel.py_func).parameters)
        flags.append(args[names.index("over_cache")])
        return original(row_kernel, batch, step_macs, *args)

    monkeypatch.setattr(mod, "run_over_rows", spy)
    separate = _layer(cell, reverse, over_cache=False)
    assert flags == [False, False]  # forward, backward
    in_cache = _layer(cell, reverse, over_cache=True)
    assert flags[2:] == [True, True]  # the in-place kernels ran
    names = ["out", "h_n", "c_n", "grad_h0", "grad_c0", "grad_w_ih", "grad_w_hh", "grad_b_ih",
             "grad_b_hh", "grad_x"]
    for name, want, got in zip(names, separate, in_cache):
        assert np.all(np.isfinite(got)), name
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13, err_msg=name)
    assert np.any(separate[5]) and np.any(separate[6])  # gradients were actually computed
