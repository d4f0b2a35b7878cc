"""The CPU kernels of the learning parts (``rnnumba.kernels.cpu.layers``, ``.losses``,
``.optim``) against NumPy references and central finite differences in float64.

The references of the losses and of the optimizer updates are the NumPy implementations
that :mod:`rnnumba.losses` and :mod:`rnnumba.optim` had before they moved onto these
kernels, copied verbatim below: the kernels must give the same values (the updates and the
squared-error gradient bit for bit).
"""

import numpy as np
import pytest

from rnnumba.kernels import modes
from rnnumba.kernels.cpu import layers, losses, optim

dtypes = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
MODES = [modes.POOL_LAST, modes.POOL_MEAN, modes.POOL_MAX, modes.POOL_ATTENTION]
MODE_IDS = ["last", "mean", "max", "attention"]
pool_modes = pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
directions = pytest.mark.parametrize("directions", [1, 2], ids=["uni", "bi"])

# T = 4 steps; rows of every kind: full length, empty, ragged, one step.
T, LENGTHS = 4, [4, 0, 2, 1, 3]


# --------------------------------------------------------------------------- host oracles
# Verbatim from rnnumba/losses.py and rnnumba/optim.py before the kernels (git history).


def _expand(weights, ndim):
    return weights.reshape(weights.shape + (1,) * (ndim - weights.ndim))


def host_squared_error(y_pred, y_true, weights, normalizer):
    n_outputs = y_pred.shape[-1]
    diff = y_pred - y_true
    w = _expand(weights, diff.ndim)
    per = 0.5 * np.sum(diff * diff, axis=-1) / n_outputs
    loss = float(np.sum(weights * per) / normalizer)
    grad = (w / (n_outputs * normalizer)) * diff
    return loss, grad.astype(y_pred.dtype, copy=False)


def host_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def host_softmax_cross_entropy(logits, labels, weights, normalizer):
    n_classes = logits.shape[-1]
    z = logits.reshape(-1, n_classes)
    rows = np.arange(z.shape[0])
    flat_labels = labels.reshape(-1)
    w = weights.reshape(-1)
    grad = z - z.max(axis=1, keepdims=True)
    np.exp(grad, out=grad)
    total = grad.sum(axis=1)
    grad /= total[:, None]                          # softmax
    picked = grad[rows, flat_labels]                # p[label]
    with np.errstate(divide="ignore"):
        logp_picked = np.log(picked)
    # log p[label] computed stably where p underflows to 0
    small = picked < 1e-300
    if small.any():
        stable = host_log_softmax(z[small])
        logp_picked[small] = stable[np.arange(stable.shape[0]), flat_labels[small]]
    loss = float(-np.dot(w, logp_picked) / normalizer) if w.size else 0.0
    grad[rows, flat_labels] -= 1.0
    grad *= (w / normalizer)[:, None]
    grad = grad.reshape(logits.shape)
    return loss, grad.astype(logits.dtype, copy=False)


def host_global_norm(grads):
    total = 0.0
    for g in grads:
        total += float(np.einsum("i,i->", g, g, dtype=np.float64))
    return float(np.sqrt(total))


def host_clip_grad_norm(grads, max_norm):
    norm = host_global_norm(grads)
    if max_norm is not None and np.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for g in grads:
            g *= scale
    return norm


def host_sgd_update(p, g, v, lr, mu, nesterov):
    """``SGD._update`` for one buffer."""
    v *= mu
    v -= lr * g
    if nesterov:
        p += (mu * v - lr * g).astype(p.dtype, copy=False)
    else:
        p += v.astype(p.dtype, copy=False)


def host_adam_update(p, g, m, v, t, learning_rate, b1, b2, epsilon):
    """``Adam._update`` for one buffer, step ``t`` already counted."""
    step = learning_rate * np.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
    m *= b1
    m += (1.0 - b1) * g
    v *= b2
    v += (1.0 - b2) * np.square(g, dtype=np.float64)
    update = m / (np.sqrt(v) + epsilon)
    update *= step
    p -= update.astype(p.dtype, copy=False)


def test_mode_constants():
    assert (modes.POOL_LAST, modes.POOL_MEAN, modes.POOL_MAX, modes.POOL_ATTENTION) == (
        0, 1, 2, 3)
    for name in ("POOL_LAST", "POOL_MEAN", "POOL_MAX", "POOL_ATTENTION"):
        assert getattr(layers, name) == getattr(modes, name)
    assert sorted(modes.POOL_MODES.values()) == MODES


# --------------------------------------------------------------------------- dense


def _dense_problem(dtype, rows=7, features=5, width=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in
            ((rows, features), (width, features), (width,), (rows, width))]


@dtypes
def test_dense_forward_matches_numpy(dtype):
    x, w, b, _ = _dense_problem(dtype)
    out = np.full((x.shape[0], w.shape[0]), np.nan, dtype)
    layers.dense_forward(x, w, b, out)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out, x.astype(np.float64) @ w.T.astype(np.float64) + b,
                               rtol=tol, atol=tol)


@dtypes
def test_dense_backward_adds_and_writes(dtype):
    x, w, b, g = _dense_problem(dtype)
    rng = np.random.default_rng(1)
    gw0, gb0 = rng.standard_normal(w.shape).astype(dtype), rng.standard_normal(b.shape)
    gw, gb = gw0.copy(), gb0.astype(dtype)
    gx = np.full(x.shape, np.nan, dtype)
    layers.dense_backward(x, w, g, gw, gb, gx)
    f = np.float64
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(gw, gw0 + g.T.astype(f) @ x.astype(f), rtol=tol, atol=tol)
    np.testing.assert_allclose(gb, gb0.astype(dtype) + g.astype(f).sum(0), rtol=tol, atol=tol)
    np.testing.assert_allclose(gx, g.astype(f) @ w.astype(f), rtol=tol, atol=tol)
    gw2, gb2 = gw0.copy(), gb0.astype(dtype)
    layers.dense_backward(x, w, g, gw2, gb2, None)  # no input gradient
    np.testing.assert_array_equal(gw2, gw)
    np.testing.assert_array_equal(gb2, gb)


def _finite_differences(f, array, eps=1e-6):
    """Central differences of the scalar ``f()`` with respect to every element of
    ``array`` (perturbed in place)."""
    grad = np.zeros(array.shape)
    flat, out = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        plus = f()
        flat[i] = keep - eps
        minus = f()
        flat[i] = keep
        out[i] = (plus - minus) / (2 * eps)
    return grad


def test_dense_gradients_match_finite_differences():
    x, w, b, g = _dense_problem(np.float64, rows=4, features=3, width=2)
    out = np.empty((4, 2))

    def objective():
        layers.dense_forward(x, w, b, out)
        return float(np.sum(out * g))

    gw, gb, gx = np.zeros_like(w), np.zeros_like(b), np.zeros_like(x)
    layers.dense_backward(x, w, g, gw, gb, gx)
    for got, array in ((gx, x), (gw, w), (gb, b)):
        np.testing.assert_allclose(got, _finite_differences(objective, array), rtol=1e-7,
                                   atol=1e-8)


def test_dense_handles_empty_batches():
    x, w, b = np.zeros((0, 3)), np.ones((2, 3)), np.ones(2)
    out = np.zeros((0, 2))
    layers.dense_forward(x, w, b, out)
    gw, gb = np.ones((2, 3)), np.ones(2)
    layers.dense_backward(x, w, out, gw, gb, np.zeros((0, 3)))
    np.testing.assert_array_equal(gw, 1.0)
    np.testing.assert_array_equal(gb, 1.0)


# --------------------------------------------------------------------------- pooling


def reference_pool(mode, out, lengths, directions, attention):
    """Pooling written directly from its definition (float64)."""
    out = out.astype(np.float64)
    steps, batch, width = out.shape
    hidden = width // directions
    features = np.zeros((batch, width))
    weights = np.zeros((steps, batch))
    argmax = np.full((batch, width), -1)
    for n, length in enumerate(lengths):
        if length == 0:
            continue
        seq = out[:length, n]
        if mode == modes.POOL_LAST:
            argmax[n, :hidden] = length - 1
            argmax[n, hidden:] = 0
            features[n] = seq[argmax[n], np.arange(width)]
        elif mode == modes.POOL_MEAN:
            features[n] = seq.mean(axis=0)
            weights[:length, n] = 1.0 / length
        elif mode == modes.POOL_MAX:
            argmax[n] = seq.argmax(axis=0)
            features[n] = seq.max(axis=0)
        else:
            scores = seq @ attention.astype(np.float64)
            a = np.exp(scores - scores.max())
            a /= a.sum()
            weights[:length, n] = a
            features[n] = a @ seq
    return features, weights, argmax


def _pool_problem(mode, directions, dtype, hidden=2, seed=0):
    rng = np.random.default_rng(seed)
    width = directions * hidden
    out = rng.standard_normal((T, len(LENGTHS), width)).astype(dtype)
    attention = (rng.standard_normal(width) if mode == modes.POOL_ATTENTION
                 else np.zeros(0)).astype(dtype)
    return out, np.array(LENGTHS, dtype=np.int64), attention


def _pool(mode, out, lengths, directions, attention):
    steps, batch, width = out.shape
    features = np.full((batch, width), np.nan, out.dtype)
    weights = np.full((steps, batch), np.nan, out.dtype)
    argmax = np.full((batch, width), 99, np.int64)
    layers.pool_forward(mode, out, lengths, directions, attention, features, weights, argmax)
    return features, weights, argmax


@dtypes
@directions
@pool_modes
def test_pool_forward_matches_reference(mode, directions, dtype):
    out, lengths, attention = _pool_problem(mode, directions, dtype)
    features, weights, argmax = _pool(mode, out, lengths, directions, attention)
    want_f, want_w, want_a = reference_pool(mode, out, lengths, directions, attention)
    tol = 1e-13 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(features, want_f, rtol=tol, atol=tol)
    if mode in (modes.POOL_MEAN, modes.POOL_ATTENTION):
        np.testing.assert_allclose(weights, want_w, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(argmax, want_a)
    assert features.dtype == dtype and weights.dtype == dtype


def test_pool_max_first_maximum_wins():
    out = np.array([[[1.0]], [[3.0]], [[3.0]], [[2.0]]])
    features, _, argmax = _pool(modes.POOL_MAX, out, np.array([4]), 1, np.zeros(0))
    assert features[0, 0] == 3.0 and argmax[0, 0] == 1


def test_pool_attention_is_stable_for_large_scores():
    out = np.array([[[1000.0]], [[999.0]], [[-1000.0]]])
    features, weights, _ = _pool(modes.POOL_ATTENTION, out, np.array([3]), 1, np.ones(1))
    assert np.all(np.isfinite(weights)) and np.all(np.isfinite(features))
    np.testing.assert_allclose(weights[:, 0], [1 / (1 + np.exp(-1)), 1 / (1 + np.e), 0.0])


def _pool_backward(mode, out, lengths, directions, attention, grad_features, grad_attention):
    features, weights, argmax = _pool(mode, out, lengths, directions, attention)
    grad_out = np.full(out.shape, np.nan, out.dtype)
    layers.pool_backward(mode, out, lengths, directions, attention, weights, argmax,
                         grad_features, grad_out, grad_attention)
    return grad_out


@directions
@pool_modes
def test_pool_gradients_match_finite_differences(mode, directions):
    """Every mode, both direction counts, ragged lengths with an empty row and full rows:
    the gradients of ``sum(features * G)`` with respect to ``out`` and ``attention``."""
    out, lengths, attention = _pool_problem(mode, directions, np.float64)
    G = np.random.default_rng(5).standard_normal((len(LENGTHS), out.shape[2]))

    def objective():
        return float(np.sum(_pool(mode, out, lengths, directions, attention)[0] * G))

    start = np.linspace(-1, 1, attention.size)  # grad_attention is added into
    grad_attention = start.copy()
    grad_out = _pool_backward(mode, out, lengths, directions, attention, G, grad_attention)
    assert np.all(np.isfinite(grad_out))  # written in full
    np.testing.assert_allclose(grad_out, _finite_differences(objective, out), rtol=1e-7,
                               atol=1e-8)
    for t in range(T):  # no gradient past a row's end
        assert not np.any(grad_out[t, lengths <= t])
    if mode == modes.POOL_ATTENTION:
        np.testing.assert_allclose(grad_attention - start,
                                   _finite_differences(objective, attention), rtol=1e-7,
                                   atol=1e-8)


@pool_modes
def test_pool_backward_is_deterministic_and_float32_close(mode):
    out, lengths, attention = _pool_problem(mode, 2, np.float64)
    G = np.random.default_rng(6).standard_normal((len(LENGTHS), out.shape[2]))
    ga64 = np.zeros(attention.size)
    want = _pool_backward(mode, out, lengths, 2, attention, G, ga64)
    runs = []
    for _ in range(2):
        ga = np.zeros(attention.size, np.float32)
        runs.append((_pool_backward(mode, out.astype(np.float32), lengths, 2,
                                    attention.astype(np.float32), G.astype(np.float32), ga),
                     ga))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][0].dtype == np.float32
    np.testing.assert_allclose(runs[0][0], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(runs[0][1], ga64, rtol=1e-5, atol=1e-5)


def test_pool_rejects_unknown_mode_and_directions():
    out, lengths, attention = _pool_problem(modes.POOL_MEAN, 2, np.float64)
    with pytest.raises(ValueError, match="mode"):
        _pool(7, out, lengths, 2, attention)
    with pytest.raises(ValueError, match="directions"):
        _pool(modes.POOL_MEAN, out, lengths, 3, attention)


# --------------------------------------------------------------------------- losses


def _loss_problem(dtype, rows=9, cols=4, seed=0):
    rng = np.random.default_rng(seed)
    pred = (3 * rng.standard_normal((rows, cols))).astype(dtype)
    target = rng.standard_normal((rows, cols)).astype(dtype)
    labels = rng.integers(0, cols, rows).astype(np.int64)
    weights = rng.uniform(0.5, 2.0, rows)
    weights[[1, 4]] = 0.0
    return pred, target, labels, weights


@dtypes
def test_squared_error_matches_host(dtype):
    pred, target, _, weights = _loss_problem(dtype)
    grad, loss = np.full(pred.shape, np.nan, dtype), np.full(1, np.nan)
    losses.squared_error(pred, target, weights, 3.5, grad, loss)
    want_loss, want_grad = host_squared_error(pred, target, weights, 3.5)
    assert grad.dtype == dtype
    np.testing.assert_array_equal(grad, want_grad)  # the same float64 products, cast
    assert loss[0] == pytest.approx(want_loss, rel=1e-12 if dtype == np.float64 else 1e-6)


@dtypes
def test_softmax_cross_entropy_matches_host(dtype):
    logits, _, labels, weights = _loss_problem(dtype)
    grad, loss = np.full(logits.shape, np.nan, dtype), np.full(1, np.nan)
    losses.softmax_cross_entropy(logits, labels, weights, 3.5, grad, loss)
    want_loss, want_grad = host_softmax_cross_entropy(logits, labels, weights, 3.5)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, want_grad, rtol=tol, atol=tol)
    assert loss[0] == pytest.approx(want_loss, rel=tol)


def test_softmax_cross_entropy_is_stable_when_probabilities_underflow():
    logits = np.array([[0.0, -1000.0, 1000.0], [5.0, 1.0, 2.0]])
    labels, weights = np.array([1, 0], dtype=np.int64), np.ones(2)
    grad, loss = np.empty_like(logits), np.empty(1)
    losses.softmax_cross_entropy(logits, labels, weights, 2.0, grad, loss)
    want_loss, want_grad = host_softmax_cross_entropy(logits, labels, weights, 2.0)
    assert np.isfinite(loss[0]) and loss[0] == pytest.approx(want_loss, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)


def test_losses_ignore_rows_of_weight_zero():
    """Padding rows (weight 0) may hold anything, NaN targets included."""
    pred, target, labels, weights = _loss_problem(np.float64)
    target[1] = np.nan
    pred[4] = np.inf
    for fn, second in ((losses.squared_error, target), (losses.softmax_cross_entropy, labels)):
        grad, loss = np.full(pred.shape, np.nan), np.empty(1)
        fn(pred, second, weights, 2.0, grad, loss)
        assert np.isfinite(loss[0]) and np.all(np.isfinite(grad))
        assert not grad[[1, 4]].any()


# --------------------------------------------------------------------------- optim


def _flat(dtype, size=23, seed=0):
    rng = np.random.default_rng(seed)
    params = rng.standard_normal(size).astype(dtype)
    grads = [rng.standard_normal(size).astype(dtype) for _ in range(3)]
    return params, grads


@dtypes
@pytest.mark.parametrize("nesterov", [True, False], ids=["nesterov", "plain"])
def test_sgd_step_is_bitwise_the_host_update(nesterov, dtype):
    params, grads = _flat(dtype)
    want, want_v = params.copy(), np.zeros(params.size)
    mine, velocity = params.copy(), np.zeros(params.size)
    for g in grads:
        host_sgd_update(want, g, want_v, 0.1, 0.8, nesterov)
        optim.sgd_step(mine, g, velocity, 0.1, 0.8, nesterov)
    assert mine.dtype == dtype
    np.testing.assert_array_equal(mine, want)
    np.testing.assert_array_equal(velocity, want_v)


@dtypes
def test_adam_step_is_bitwise_the_host_update(dtype):
    params, grads = _flat(dtype)
    want, want_m, want_v = params.copy(), np.zeros(params.size), np.zeros(params.size)
    mine, m, v = params.copy(), np.zeros(params.size), np.zeros(params.size)
    for t, g in enumerate(grads, start=1):
        host_adam_update(want, g, want_m, want_v, t, 0.01, 0.8, 0.99, 1e-7)
        optim.adam_step(mine, g, m, v, t, 0.01, 0.8, 0.99, 1e-7)
    assert mine.dtype == dtype
    np.testing.assert_array_equal(mine, want)
    np.testing.assert_array_equal(m, want_m)
    np.testing.assert_array_equal(v, want_v)


@dtypes
def test_add_l2_matches_numpy(dtype):
    params, (grads, *_) = _flat(dtype)
    mask = (np.arange(params.size) % 3 != 0).astype(dtype)
    stats = np.array([1.5, 0.0, 0.0, 0.0])
    got = grads.copy()
    optim.add_l2(params, got, mask, 0.25, 0.125, stats)
    pm = params * mask
    np.testing.assert_array_equal(got, grads + pm * dtype(0.25))
    assert stats[0] == pytest.approx(1.5 + 0.125 * np.sum(pm.astype(np.float64) ** 2),
                                     rel=1e-14)
    assert got.dtype == dtype and stats[1:].tolist() == [0.0, 0.0, 0.0]


@dtypes
@pytest.mark.parametrize("max_norm", [0.0, 1.0, 1e6], ids=["measure", "clip", "no-clip"])
def test_clip_grad_norm_is_bitwise_the_host_clip(max_norm, dtype):
    _, (grads, *_) = _flat(dtype)
    want = grads.copy()
    host_norm = host_clip_grad_norm([want], max_norm or None)
    stats = np.zeros(4)
    optim.clip_grad_norm(grads, max_norm, stats)
    assert stats[1] == host_norm
    np.testing.assert_array_equal(grads, want)
    if max_norm == 1.0:
        assert np.linalg.norm(grads.astype(np.float64)) == pytest.approx(1.0, rel=1e-6)


def test_clip_grad_norm_leaves_non_finite_gradients():
    grads = np.array([1.0, np.inf, 2.0])
    stats = np.zeros(4)
    optim.clip_grad_norm(grads, 1.0, stats)
    assert stats[1] == np.inf
    np.testing.assert_array_equal(grads, [1.0, np.inf, 2.0])


@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
def test_check_finite(bad):
    params = np.arange(5, dtype=np.float32)
    if bad is not None:
        params[3] = bad
    stats = np.full(4, 7.0)
    optim.check_finite(params, stats)
    assert stats[2] == (1.0 if bad is None else 0.0)
    assert stats[[0, 1, 3]].tolist() == [7.0, 7.0, 7.0]
    optim.check_finite(np.zeros(0), stats)
    assert stats[2] == 1.0


def test_accumulate_copy_fill():
    a, b = np.arange(4.0), np.full(4, 0.5)
    optim.accumulate(a, b)
    np.testing.assert_array_equal(a, [0.5, 1.5, 2.5, 3.5])
    optim.copy(b, a)
    np.testing.assert_array_equal(b, a)
    assert b is not a
    optim.fill(a, 2.0)
    np.testing.assert_array_equal(a, 2.0)
