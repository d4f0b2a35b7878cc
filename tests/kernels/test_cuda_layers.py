"""CUDA kernels of the dense head, pooling and losses against their CPU twins.

Run under Numba's simulator (tiny shapes)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim tests/kernels/test_cuda_layers.py

The launch constants are lowered (4x4 GEMM tiles, 8-thread elementwise blocks, 4-thread
reductions over at most 2 blocks) so that the tiny problems span several blocks and the
reductions' strided loops. Tests marked ``gpu`` run the same comparisons with the real
launch constants and larger shapes on a real device::

    python -m pytest -m gpu tests/kernels/test_cuda_layers.py
"""

import os

import numpy as np
import pytest

from rnnumba.kernels import modes
from rnnumba.kernels.cpu import layers as cpu_layers, losses as cpu_losses

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")

cudasim = pytest.mark.cudasim
dtypes = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
MODES = [modes.POOL_LAST, modes.POOL_MEAN, modes.POOL_MAX, modes.POOL_ATTENTION]
pool_modes = pytest.mark.parametrize("mode", MODES, ids=["last", "mean", "max", "attention"])
directions = pytest.mark.parametrize("directions", [1, 2], ids=["uni", "bi"])


def _tol(dtype):
    return (1e-12, 1e-13) if dtype == np.float64 else (2e-5, 2e-6)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cuda_kernels():
    """``rnnumba.kernels.cuda`` under the simulator, or a skip."""
    if not SIM:
        pytest.skip("simulator tests need NUMBA_ENABLE_CUDASIM=1 set before numba is imported")
    from numba import config
    if not config.ENABLE_CUDASIM:
        pytest.skip("numba was imported before NUMBA_ENABLE_CUDASIM=1 was set")
    import rnnumba.kernels.cuda as kernels
    return kernels


@pytest.fixture
def small_launches(cuda_kernels, monkeypatch):
    """Launch constants that make tiny problems span several blocks."""
    from rnnumba.kernels.cuda import _jit, _reduce
    monkeypatch.setattr(_jit, "GEMM_TILE", 4)
    monkeypatch.setattr(_jit, "ELEMENTWISE_BLOCK", 8)
    monkeypatch.setattr(_jit, "PERSISTENT_ROWS", 2)
    monkeypatch.setattr(_reduce, "REDUCE_BLOCK", 4)
    monkeypatch.setattr(_reduce, "REDUCE_MAX_BLOCKS", 2)
    return _jit


@pytest.fixture
def cuda_layers(cuda_kernels):
    from rnnumba.kernels.cuda import layers
    return layers


@pytest.fixture
def cuda_losses(cuda_kernels):
    from rnnumba.kernels.cuda import losses
    return losses


def _dev(*arrays):
    from numba import cuda
    return [cuda.to_device(a) for a in arrays]


def _host(*arrays):
    return [a.copy_to_host() for a in arrays]


# --------------------------------------------------------------------------- dense


def _dense_problem(dtype, rows=7, features=5, width=6, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in
            ((rows, features), (width, features), (width,), (rows, width), (width, features),
             (width,))]


@cudasim
@dtypes
def test_dense_matches_cpu(dtype, small_launches, cuda_layers):
    """7 rows, 5 inputs, 6 outputs: several 4x4 tiles, none of them full."""
    x, w, b, g, gw0, gb0 = _dense_problem(dtype)
    rtol, atol = _tol(dtype)
    want = {"out": np.empty((7, 6), dtype), "gw": gw0.copy(), "gb": gb0.copy(),
            "gx": np.empty_like(x)}
    cpu_layers.dense_forward(x, w, b, want["out"])
    cpu_layers.dense_backward(x, w, g, want["gw"], want["gb"], want["gx"])
    dx, dw, db, dg = _dev(x, w, b, g)
    out, gw, gb, gx = _dev(np.full((7, 6), np.nan, dtype), gw0, gb0,
                           np.full(x.shape, np.nan, dtype))
    cuda_layers.dense_forward(dx, dw, db, out)
    cuda_layers.dense_backward(dx, dw, dg, gw, gb, gx)
    got = dict(zip(("out", "gw", "gb", "gx"), _host(out, gw, gb, gx)))
    for key in want:
        assert got[key].dtype == dtype
        np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=atol, err_msg=key)
    gw2, gb2 = _dev(gw0, gb0)
    cuda_layers.dense_backward(dx, dw, dg, gw2, gb2, None)  # no input gradient
    np.testing.assert_array_equal(gw2.copy_to_host(), got["gw"])
    np.testing.assert_array_equal(gb2.copy_to_host(), got["gb"])


@cudasim
def test_dense_takes_host_arrays_and_empty_batches(small_launches, cuda_layers):
    x, w, b, g, gw0, gb0 = _dense_problem(np.float64, rows=3)
    out = np.empty((3, 6))
    cuda_layers.dense_forward(x, w, b, out)  # host arrays: copied in and out
    np.testing.assert_allclose(out, x @ w.T + b, rtol=1e-12)
    gw, gb = gw0.copy(), gb0.copy()
    cuda_layers.dense_backward(np.zeros((0, 5)), w, np.zeros((0, 6)), gw, gb,
                               np.zeros((0, 5)))
    np.testing.assert_array_equal(gw, gw0)
    np.testing.assert_array_equal(gb, gb0)


@cudasim
def test_dense_rejects_bad_shapes_and_dtypes(cuda_layers):
    x, w, b, g, gw, gb = _dense_problem(np.float64)
    for args, name in (((x, w[:, :4], b, g), "weight"),
                       ((x, w, b[:5], g), "bias"),
                       ((x, w, b, g.astype(np.float32)), "out"),
                       ((x.astype(np.int64), w, b, g), "x")):
        with pytest.raises(ValueError, match=name):
            cuda_layers.dense_forward(*args)
    with pytest.raises(ValueError, match="grad_x"):
        cuda_layers.dense_backward(x, w, g, gw, gb, np.zeros((7, 4)))
    with pytest.raises(ValueError, match="grad_bias"):
        cuda_layers.dense_backward(x, w, g, gw, gb.astype(np.float32), None)


# --------------------------------------------------------------------------- columns


@cudasim
@dtypes
def test_put_and_take_columns_match_cpu(dtype, small_launches, cuda_layers):
    rng = np.random.default_rng(3)
    src = rng.standard_normal((5, 3)).astype(dtype)
    base = rng.standard_normal((5, 8)).astype(dtype)
    expected = base.copy()
    cpu_layers.put_columns(src, expected, 4)
    d_dst, = _dev(base.copy())
    cuda_layers.put_columns(src, d_dst, 4)
    np.testing.assert_array_equal(d_dst.copy_to_host(), expected)

    taken = np.empty((5, 3), dtype=dtype)
    cpu_layers.take_columns(expected, 4, taken)
    np.testing.assert_array_equal(taken, src)
    d_taken, = _dev(np.zeros((5, 3), dtype=dtype))
    cuda_layers.take_columns(d_dst, 4, d_taken)
    np.testing.assert_array_equal(d_taken.copy_to_host(), src)


@cudasim
def test_columns_reject_blocks_that_do_not_fit(cuda_layers):
    src, dst = np.zeros((5, 3)), np.zeros((5, 8))
    with pytest.raises(ValueError, match="does not fit columns 6"):
        cuda_layers.put_columns(src, dst, 6)
    with pytest.raises(ValueError, match="does not fit"):
        cuda_layers.put_columns(src.astype(np.float32), dst, 0)
    with pytest.raises(ValueError, match="does not fit"):
        cuda_layers.take_columns(dst, 0, np.zeros((4, 3)))


# --------------------------------------------------------------------------- pooling


T, LENGTHS = 4, [4, 0, 2, 1, 3]


def _pool_problem(mode, directions, dtype, hidden=3, seed=0):
    rng = np.random.default_rng(seed)
    width = directions * hidden
    out = rng.standard_normal((T, len(LENGTHS), width)).astype(dtype)
    attention = (rng.standard_normal(width) if mode == modes.POOL_ATTENTION
                 else np.zeros(0)).astype(dtype)
    grad_features = rng.standard_normal((len(LENGTHS), width)).astype(dtype)
    grad_attention = (rng.standard_normal(attention.size)).astype(dtype)
    return out, np.array(LENGTHS, dtype=np.int64), attention, grad_features, grad_attention


def _run_pool(kernels, mode, directions, problem, to_dev, to_host):
    """Forward then backward; every output on the host. Unused step weights and argmax
    start as sentinels, compared too (the kernels leave them alone)."""
    out, lengths, attention, grad_features, grad_attention = problem
    steps, batch, width = out.shape
    dtype = out.dtype
    res = {"features": np.full((batch, width), np.nan, dtype),
           "weights": np.full((steps, batch), 7.0, dtype),
           "argmax": np.full((batch, width), 99, np.int64),
           "grad_out": np.full(out.shape, np.nan, dtype),
           "grad_attention": grad_attention.copy()}
    dev = {k: to_dev(v) for k, v in res.items()}
    args = [to_dev(a) for a in (out, lengths)] + [directions, to_dev(attention)]
    kernels.pool_forward(mode, *args, dev["features"], dev["weights"], dev["argmax"])
    kernels.pool_backward(mode, *args, dev["weights"], dev["argmax"], to_dev(grad_features),
                          dev["grad_out"], dev["grad_attention"])
    return {k: to_host(v) for k, v in dev.items()}


@cudasim
@dtypes
@directions
@pool_modes
def test_pooling_matches_cpu(mode, directions, dtype, small_launches, cuda_layers):
    """Every mode, both direction counts, ragged lengths with an empty row and a full one."""
    from numba import cuda
    problem = _pool_problem(mode, directions, dtype)
    want = _run_pool(cpu_layers, mode, directions, problem, np.copy, lambda a: a)
    got = _run_pool(cuda_layers, mode, directions, problem, cuda.to_device,
                    lambda a: a.copy_to_host())
    rtol, atol = _tol(dtype)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        if key == "argmax":
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        else:
            np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=atol, err_msg=key)
    assert np.all(np.isfinite(got["grad_out"]))  # written in full


@cudasim
@pytest.mark.parametrize("mode", [modes.POOL_MAX, modes.POOL_ATTENTION], ids=["max", "att"])
def test_pooling_is_deterministic(mode, small_launches, cuda_layers):
    problem = _pool_problem(mode, 2, np.float32, seed=3)
    runs = [_run_pool(cuda_layers, mode, 2, problem, np.copy, lambda a: a) for _ in range(2)]
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key], err_msg=key)


@cudasim
def test_pooling_accepts_placeholders(small_launches, cuda_layers):
    """Arrays a mode does not use may be empty placeholders."""
    out, lengths, _, grad_features, _ = _pool_problem(modes.POOL_MEAN, 2, np.float64)
    features = np.empty((5, 6))
    weights = np.empty((T, 5))
    no_attention, no_argmax = np.zeros(0), np.zeros((0, 0), np.int64)
    cuda_layers.pool_forward(modes.POOL_MEAN, out, lengths, 2, no_attention, features, weights,
                             no_argmax)
    want_f, want_w = np.empty((5, 6)), np.empty((T, 5))
    cpu_layers.pool_forward(modes.POOL_MEAN, out, lengths, 2, no_attention, want_f, want_w,
                            no_argmax)
    np.testing.assert_allclose(features, want_f, rtol=1e-12, atol=1e-13)
    argmax, no_weights = np.empty((5, 6), np.int64), np.zeros((0, 0))
    cuda_layers.pool_forward(modes.POOL_LAST, out, lengths, 2, no_attention, features,
                             no_weights, argmax)
    grad_out = np.empty(out.shape)
    cuda_layers.pool_backward(modes.POOL_LAST, out, lengths, 2, no_attention, no_weights,
                              argmax, grad_features, grad_out, no_attention)
    assert grad_out[0, 0, 3] == grad_features[0, 3] and grad_out[3, 0, 0] == grad_features[0, 0]


@cudasim
def test_pooling_rejects_bad_arguments(cuda_layers):
    out, lengths, attention, grad_features, grad_attention = _pool_problem(
        modes.POOL_ATTENTION, 2, np.float64)
    batch, width = grad_features.shape

    def forward(mode=modes.POOL_ATTENTION, **change):
        a = dict(out=out, lengths=lengths, directions=2, attention=attention,
                 features=np.empty((batch, width)), step_weights=np.empty((T, batch)),
                 argmax=np.empty((batch, width), np.int64))
        a.update(change)
        cuda_layers.pool_forward(mode, *a.values())

    forward()  # the valid call runs
    for change, name in ((dict(mode=9), "mode"), (dict(directions=3), "directions"),
                         (dict(directions=4), "directions"),
                         (dict(lengths=lengths.astype(np.int32)), "lengths"),
                         (dict(attention=attention[:5]), "attention"),
                         (dict(features=np.empty((batch, width), np.float32)), "features"),
                         (dict(step_weights=np.empty((T + 1, batch))), "step_weights"),
                         (dict(mode=modes.POOL_MAX, argmax=np.empty((batch, width))),
                          "argmax")):
        with pytest.raises(ValueError, match=name):
            forward(**change)
    weights, argmax = np.empty((T, batch)), np.empty((batch, width), np.int64)
    for bad, name in (((np.empty((T, batch, width - 1)), grad_attention), "grad_out"),
                      ((np.empty(out.shape), grad_attention[:2]), "grad_attention")):
        with pytest.raises(ValueError, match=name):
            cuda_layers.pool_backward(modes.POOL_ATTENTION, out, lengths, 2, attention,
                                      weights, argmax, grad_features, *bad)


# --------------------------------------------------------------------------- losses


def _loss_problem(dtype, rows=11, cols=5, seed=0):
    rng = np.random.default_rng(seed)
    pred = (3 * rng.standard_normal((rows, cols))).astype(dtype)
    pred[2, 1] = 60.0  # a probability that underflows in float32
    target = rng.standard_normal((rows, cols)).astype(dtype)
    target[4] = np.nan  # padding: weight 0
    labels = rng.integers(0, cols, rows).astype(np.int64)
    weights = rng.uniform(0.5, 2.0, rows)
    weights[[4, 7]] = 0.0
    return pred, target, labels, weights


def _run_loss(fn, pred, second, weights, to_dev, to_host):
    grad, loss = to_dev(np.full(pred.shape, np.nan, pred.dtype)), to_dev(np.full(1, np.nan))
    fn(to_dev(pred), to_dev(second), to_dev(weights), 3.5, grad, loss)
    return to_host(grad), to_host(loss)


@cudasim
@dtypes
@pytest.mark.parametrize("loss", ["squared_error", "softmax_cross_entropy"])
def test_losses_match_cpu(loss, dtype, small_launches, cuda_losses):
    """11 rows over 2 blocks of 4 reduction threads: the strided loop and the final sum."""
    from numba import cuda
    pred, target, labels, weights = _loss_problem(dtype)
    second = target if loss == "squared_error" else labels
    want = _run_loss(getattr(cpu_losses, loss), pred, second, weights, np.copy, lambda a: a)
    got = _run_loss(getattr(cuda_losses, loss), pred, second, weights, cuda.to_device,
                    lambda a: a.copy_to_host())
    rtol, atol = _tol(dtype)
    assert got[0].dtype == dtype
    np.testing.assert_allclose(got[0], want[0], rtol=rtol, atol=atol)
    assert np.isfinite(got[1][0])
    assert got[1][0] == pytest.approx(want[1][0], rel=1e-12 if dtype == np.float64 else 1e-6)
    assert not got[0][[4, 7]].any()


@cudasim
@pytest.mark.parametrize("loss", ["squared_error", "softmax_cross_entropy"])
def test_losses_are_deterministic_and_stay_on_the_device(loss, small_launches, cuda_losses,
                                                         monkeypatch):
    pred, target, labels, weights = _loss_problem(np.float32, seed=2)
    second = target if loss == "squared_error" else labels
    args = _dev(pred, second, weights)
    runs = []
    for _ in range(2):
        grad, value = _dev(np.zeros_like(pred), np.zeros(1))
        with monkeypatch.context() as patch:  # no host round trip inside the launcher
            patch.setattr(type(grad), "copy_to_host", _no_transfer)
            getattr(cuda_losses, loss)(*args[:2], args[2], 2.0, grad, value)
        runs.append(_host(grad, value))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def _no_transfer(*args, **kwargs):
    raise AssertionError("copied to the host")


@cudasim
def test_losses_take_host_arrays_and_empty_batches(small_launches, cuda_losses):
    pred, target, labels, weights = _loss_problem(np.float64)
    for fn, second in ((cuda_losses.squared_error, target),
                       (cuda_losses.softmax_cross_entropy, labels)):
        grad, loss = np.empty((0, 5)), np.full(1, np.nan)
        fn(pred[:0], second[:0], weights[:0], 1.0, grad, loss)
        assert loss[0] == 0.0


@cudasim
def test_losses_reject_bad_arguments(cuda_losses):
    pred, target, labels, weights = _loss_problem(np.float64)
    grad, loss = np.empty_like(pred), np.empty(1)
    se, ce = cuda_losses.squared_error, cuda_losses.softmax_cross_entropy
    for fn, args, name in (
            (se, (pred, target[:, :4], weights, 1.0, grad, loss), "target"),
            (se, (pred, target, weights.astype(np.float32), 1.0, grad, loss), "weights"),
            (se, (pred, target, weights, 1.0, grad.astype(np.float32), loss), "grad"),
            (se, (pred, target, weights, 1.0, grad, np.empty(2)), "loss"),
            (se, (pred, target, weights, 0.0, grad, loss), "normalizer"),
            (ce, (pred, labels.astype(np.int32), weights, 1.0, grad, loss), "labels"),
            (ce, (pred[:, :0], labels, weights, 1.0, grad[:, :0], loss), "class"),
            (ce, (pred[0], labels, weights, 1.0, grad, loss), "logits")):
        with pytest.raises(ValueError, match=name):
            fn(*args)


# --------------------------------------------------------------------------- real GPU


def _real_gpu_or_skip():
    if SIM:
        pytest.skip("gpu tests need a real CUDA device, not the simulator "
                    "(unset NUMBA_ENABLE_CUDASIM)")
    from rnnumba.backend import cuda_unavailable_reason
    reason = cuda_unavailable_reason()
    if reason:
        pytest.skip(f"no CUDA device: {reason}")


@pytest.mark.gpu
@dtypes
def test_gpu_layers_and_losses_match_cpu(dtype):
    """The real launch constants, shapes that span many blocks (GEMM tiles, reductions)."""
    _real_gpu_or_skip()
    from numba import cuda

    from rnnumba.kernels.cuda import layers, losses
    rng = np.random.default_rng(21)
    rtol, atol = (1e-10, 1e-11) if dtype == np.float64 else (1e-3, 1e-4)
    x, w, b, g, gw0, gb0 = _dense_problem(dtype, rows=3000, features=67, width=29)
    want_out, got_out = np.empty((3000, 29), dtype), cuda.device_array((3000, 29), dtype)
    cpu_layers.dense_forward(x, w, b, want_out)
    layers.dense_forward(*_dev(x, w, b), got_out)
    np.testing.assert_allclose(got_out.copy_to_host(), want_out, rtol=rtol, atol=atol)
    want = [gw0.copy(), gb0.copy(), np.empty_like(x)]
    got = _dev(gw0, gb0, np.empty_like(x))
    cpu_layers.dense_backward(x, w, g, *want)
    layers.dense_backward(*_dev(x, w, g), *got)
    for a, e in zip(_host(*got), want):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=max(atol, rtol * 30))
    steps, batch, hidden = 41, 300, 24
    lengths = rng.integers(0, steps + 1, batch).astype(np.int64)
    for mode in MODES:
        out = rng.standard_normal((steps, batch, 2 * hidden)).astype(dtype)
        problem = (out, lengths, rng.standard_normal(2 * hidden).astype(dtype),
                   rng.standard_normal((batch, 2 * hidden)).astype(dtype),
                   np.zeros(2 * hidden, dtype))
        want = _run_pool(cpu_layers, mode, 2, problem, np.copy, lambda a: a)
        got = _run_pool(layers, mode, 2, problem, cuda.to_device, lambda a: a.copy_to_host())
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=atol,
                                       err_msg=f"{mode} {key}")
    pred, target, labels, weights = _loss_problem(dtype, rows=20000, cols=37)
    for name, second in (("squared_error", target), ("softmax_cross_entropy", labels)):
        want = _run_loss(getattr(cpu_losses, name), pred, second, weights, np.copy,
                         lambda a: a)
        got = _run_loss(getattr(losses, name), pred, second, weights, cuda.to_device,
                        lambda a: a.copy_to_host())
        np.testing.assert_allclose(got[0], want[0], rtol=rtol, atol=atol, err_msg=name)
        assert got[1][0] == pytest.approx(want[1][0], rel=1e-10 if dtype == np.float64
                                          else 1e-5)
