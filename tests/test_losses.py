"""rnnumba.losses: values against direct formulas, gradients by central differences."""

import numpy as np
import pytest
from sklearn.neural_network._base import log_loss, squared_loss

from rnnumba.losses import log_softmax, softmax, softmax_cross_entropy, squared_error


def _numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("shape", [(5, 1), (5, 3), (4, 6, 2)])
def test_squared_error_value_and_grad(shape):
    rng = np.random.RandomState(0)
    pred, y = rng.randn(*shape), rng.randn(*shape)
    w = rng.rand(*shape[:-1])
    norm = 2.5
    loss, grad = squared_error(pred, y, w, norm)
    expected = np.sum(w * 0.5 * np.mean((pred - y) ** 2, axis=-1)) / norm
    assert loss == pytest.approx(expected, rel=1e-12)
    num = _numeric_grad(lambda p: squared_error(p, y, w, norm)[0], pred.copy())
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


def test_squared_error_matches_sklearn_mlp_unweighted():
    rng = np.random.RandomState(1)
    pred, y = rng.randn(7, 3), rng.randn(7, 3)
    loss, _ = squared_error(pred, y, np.ones(7), 7)
    assert loss == pytest.approx(squared_loss(y, pred), rel=1e-12)


@pytest.mark.parametrize("shape", [(6, 2), (6, 4), (3, 5, 3)])
def test_cross_entropy_value_and_grad(shape):
    rng = np.random.RandomState(2)
    logits = rng.randn(*shape) * 3
    labels = rng.randint(0, shape[-1], size=shape[:-1])
    w = rng.rand(*shape[:-1])
    loss, grad = softmax_cross_entropy(logits, labels, w, 1.7)
    p = softmax(logits)
    picked = np.take_along_axis(p, labels[..., None], -1)[..., 0]
    assert loss == pytest.approx(-np.sum(w * np.log(picked)) / 1.7, rel=1e-12)
    num = _numeric_grad(lambda z: softmax_cross_entropy(z, labels, w, 1.7)[0], logits.copy())
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)


def test_cross_entropy_matches_sklearn_log_loss():
    rng = np.random.RandomState(3)
    logits = rng.randn(8, 4)
    labels = rng.randint(0, 4, 8)
    loss, _ = softmax_cross_entropy(logits, labels, np.ones(8), 8)
    onehot = np.eye(4)[labels]
    assert loss == pytest.approx(log_loss(onehot, softmax(logits)), rel=1e-10)


def test_weights_equal_repetition():
    rng = np.random.RandomState(4)
    logits = rng.randn(5, 3)
    labels = rng.randint(0, 3, 5)
    w = np.array([0, 1, 2, 3, 1])
    loss_w, _ = softmax_cross_entropy(logits, labels, w.astype(float), w.sum())
    rep = np.repeat(np.arange(5), w)
    loss_r, _ = softmax_cross_entropy(logits[rep], labels[rep], np.ones(len(rep)), len(rep))
    assert loss_w == pytest.approx(loss_r, rel=1e-12)


def test_softmax_stability():
    z = np.array([[1000.0, 0.0, -1000.0]])
    assert np.isfinite(log_softmax(z)).all()
    np.testing.assert_allclose(softmax(z), [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(np.exp(log_softmax(z)), softmax(z))


def test_float32_preserved():
    pred = np.ones((3, 2), dtype=np.float32)
    _, g = squared_error(pred, np.zeros((3, 2)), np.ones(3), 3.0)
    assert g.dtype == np.float32
    _, g = softmax_cross_entropy(pred, np.zeros(3, dtype=np.int64), np.ones(3), 3.0)
    assert g.dtype == np.float32


def test_cross_entropy_extreme_logits_stay_finite():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    loss, grad = softmax_cross_entropy(logits, np.array([2, 1]), np.ones(2), 2.0)
    assert loss == pytest.approx((2000.0 + np.log(3.0)) / 2.0)
    assert np.isfinite(grad).all()
