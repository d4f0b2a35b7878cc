"""rnnumba.heads: the dense head on a pooled summary or on every step, gradients by central
differences through the backend's kernels (CPU), initialisation and pickling."""

import pickle

import numpy as np
import pytest

from rnnumba.backend import get_backend
from rnnumba.heads import SequenceHead, StepHead
from rnnumba.losses import softmax_cross_entropy

CPU = get_backend("cpu")


class _Workspace:
    def empty(self, name, shape, dtype):
        return np.empty(shape, dtype=dtype)


def _loss(head, out, lengths, labels, weights):
    pred = head.forward(CPU, out, lengths, _Workspace())
    if head.per_step:
        return softmax_cross_entropy(pred, labels, weights, 7.0)
    return softmax_cross_entropy(pred, labels, weights, 7.0)


def _numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    flat, out = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        out[i] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention", "last+max",
                                     "mean+attention+max"])
@pytest.mark.parametrize("directions", [1, 2])
def test_sequence_head_gradients_match_finite_differences(pooling, directions):
    rng = np.random.RandomState(5)
    steps, n_seq, hidden = 4, 5, 3
    head = SequenceHead(directions * hidden, 3, directions, pooling=pooling,
                        random_state=rng)
    if pooling == "attention":
        head.params("host")["attention"][...] = rng.randn(directions * hidden)
    out = rng.randn(steps, n_seq, directions * hidden)
    lengths = np.array([4, 1, 3, 2, 4], dtype=np.int64)
    labels = rng.randint(0, 3, n_seq)
    weights = rng.rand(n_seq) + 0.5
    _, grad_pred = _loss(head, out, lengths, labels, weights)
    head.flat_grads[...] = 0.0
    grad_out = head.backward(CPU, grad_pred, _Workspace()).copy()
    analytic = head.flat_grads.copy()

    def value():
        return _loss(head, out, lengths, labels, weights)[0]

    np.testing.assert_allclose(analytic, _numeric_grad(value, head.flat_params), rtol=1e-6,
                               atol=1e-9)
    expected = _numeric_grad(value, out)
    np.testing.assert_allclose(grad_out, expected, rtol=1e-6, atol=1e-9)


def test_step_head_gradients_match_finite_differences():
    rng = np.random.RandomState(6)
    head = StepHead(4, 3, random_state=rng)
    out = rng.randn(5, 2, 4)
    labels = rng.randint(0, 3, (5, 2))
    weights = (rng.rand(5, 2) > 0.3).astype(float)
    _, grad_pred = _loss(head, out, None, labels, weights)
    head.flat_grads[...] = 0.0
    grad_out = head.backward(CPU, grad_pred, _Workspace()).copy()
    analytic = head.flat_grads.copy()

    def value():
        return _loss(head, out, None, labels, weights)[0]

    np.testing.assert_allclose(analytic, _numeric_grad(value, head.flat_params), rtol=1e-6,
                               atol=1e-9)
    np.testing.assert_allclose(grad_out, _numeric_grad(value, out), rtol=1e-6, atol=1e-9)


def test_dense_layer_is_torch_linear_and_initialised_as_the_mlp():
    rng = np.random.RandomState(6)
    head = StepHead(3, 2, random_state=rng)
    params = head.params("host")
    assert params["weight"].shape == (2, 3) and params["bias"].shape == (2,)
    bound = np.sqrt(6 / 5)
    assert np.abs(params["weight"]).max() <= bound and (params["bias"] == 0).all()
    out = rng.randn(5, 2, 3)
    pred = head.forward(CPU, out, None, _Workspace())
    np.testing.assert_allclose(pred, out @ params["weight"].T + params["bias"], rtol=1e-12)
    assert head.weight_mask().sum() == 6


def test_views_survive_pickle():
    head = SequenceHead(3, 2, 1, pooling="attention", random_state=np.random.RandomState(0))
    clone = pickle.loads(pickle.dumps(head))
    clone.flat_params[0] = 42.0
    assert clone.params("host")["weight"][0, 0] == 42.0
    np.testing.assert_array_equal(clone.weight_mask(), head.weight_mask())


@pytest.mark.parametrize("pooling", ["median", "last+last", "", "max+"])
def test_unknown_pooling_is_rejected(pooling):
    with pytest.raises(ValueError, match="pooling must be one of"):
        SequenceHead(3, 2, 1, pooling=pooling)


def test_joined_poolings_sit_side_by_side():
    rng = np.random.RandomState(2)
    out = rng.randn(4, 3, 2)
    lengths = np.array([4, 2, 3], dtype=np.int64)
    joined = SequenceHead(2, 1, 1, pooling="last+max")
    joined = joined.summarize(CPU, out, lengths, _Workspace())
    for k, mode in enumerate(("last", "max")):
        alone = SequenceHead(2, 1, 1, pooling=mode).summarize(CPU, out, lengths, _Workspace())
        np.testing.assert_array_equal(joined[:, 2 * k:2 * k + 2], alone)
